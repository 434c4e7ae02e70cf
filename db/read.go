package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"
)

// Group returns a live group.
func (s *Store) Group(gid string) (Group, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, err := s.live(gid, s.now())
	if err != nil {
		return Group{}, err
	}
	return g.snapshot(), nil
}

// Node returns a member of a live group.
func (s *Store) Node(gid, nid string) (Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, err := s.live(gid, s.now())
	if err != nil {
		return Node{}, err
	}
	n, err := s.liveNode(g, nid, s.now())
	if err != nil {
		return Node{}, err
	}
	return n.snapshot(), nil
}

// FindNode returns a member with this id in any live group (Mesh v2 looks nodes up by id alone).
func (s *Store) FindNode(nid string) (Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	var found *nodeState
	for _, g := range s.groups {
		if _, err := s.live(g.ID, now); err != nil {
			continue
		}
		if n, err := s.liveNode(g, nid, now); err == nil && (found == nil || n.JoinedAt.After(found.JoinedAt)) {
			found = n
		}
	}
	if found == nil {
		return Node{}, fmt.Errorf("node %s: %w", nid, ErrNodeNotFound)
	}
	return found.snapshot(), nil
}

// Nodes returns the live members of a live group, oldest first.
func (s *Store) Nodes(gid string) ([]Node, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	g, err := s.live(gid, now)
	if err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(g.nodes))
	for _, n := range g.nodes {
		if _, err := s.liveNode(g, n.ID, now); err == nil {
			out = append(out, n.snapshot())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].JoinedAt.Before(out[j].JoinedAt) || out[i].JoinedAt.Equal(out[j].JoinedAt) && out[i].ID < out[j].ID
	})
	return out, nil
}

// Groups returns the live groups of a domain ("" for every domain), oldest first.
func (s *Store) Groups(domain string) []Group {
	return s.filterGroups(func(g *groupState) bool { return domain == "" || g.Domain == domain }, 0)
}

// SearchGroups returns live groups whose name starts with prefix, at most limit (0: no limit).
func (s *Store) SearchGroups(prefix string, limit int) []Group {
	return s.filterGroups(func(g *groupState) bool { return strings.HasPrefix(g.Name, prefix) }, limit)
}

func (s *Store) filterGroups(keep func(*groupState) bool, limit int) []Group {
	s.mu.RLock()
	defer s.mu.RUnlock()
	now := s.now()
	var out []Group
	for _, g := range s.groups {
		if _, err := s.live(g.ID, now); err == nil && keep(g) {
			out = append(out, g.snapshot())
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].CreatedAt.Before(out[j].CreatedAt) || out[i].CreatedAt.Equal(out[j].CreatedAt) && out[i].ID < out[j].ID
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// Snapshot reads a live group with its nodes and their data, and the cursor the snapshot is
// at, in one read transaction: applying every item after Cursor gives the current state.
func (s *Store) Snapshot(ctx context.Context, gid string) (Snapshot, error) {
	g, err := s.Group(gid)
	if err != nil {
		return Snapshot{}, err
	}
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
	}
	defer tx.Rollback()
	snap := Snapshot{Group: g, Nodes: []Node{}}
	var seq sql.NullInt64
	// The first read fixes the transaction's view, so the cursor and the rows agree.
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'items'`).Scan(&seq); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
	}
	snap.Cursor = seq.Int64
	var ended int64
	if err := tx.QueryRowContext(ctx, `SELECT ended_at FROM groups WHERE id = ?`, gid).Scan(&ended); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return Snapshot{}, fmt.Errorf("group %s: %w", gid, ErrGroupNotFound)
		}
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
	}
	if ended != 0 {
		return Snapshot{}, fmt.Errorf("group %s was dissolved: %w", gid, ErrGroupEnded)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id, name, joined_at, last_seen, expires_at, data, data_at FROM nodes WHERE group_id = ? ORDER BY joined_at, id`, gid)
	if err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
	}
	defer rows.Close()
	for rows.Next() {
		n := Node{Group: gid}
		var joined, seen, expires, dataAt int64
		var data string
		if err := rows.Scan(&n.ID, &n.Name, &joined, &seen, &expires, &data, &dataAt); err != nil {
			return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
		}
		n.JoinedAt, n.LastSeen, n.ExpiresAt, n.DataAt = fromMillis(joined), fromMillis(seen), fromMillis(expires), fromMillis(dataAt)
		if n.Data, err = decodeData(data); err != nil {
			return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
		}
		n.Host = n.ID == g.Host
		// Activity is tracked in memory; the row only has the last explicit heartbeat.
		if live, err := s.Node(gid, n.ID); err == nil {
			n.LastSeen, n.ExpiresAt = live.LastSeen, live.ExpiresAt
		}
		n.JoinedAt, n.LastSeen, n.ExpiresAt, n.DataAt = ms(n.JoinedAt), ms(n.LastSeen), ms(n.ExpiresAt), ms(n.DataAt)
		snap.Nodes = append(snap.Nodes, n)
	}
	if err := rows.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("snapshot %s: %w", gid, err)
	}
	snap.Group.Nodes = len(snap.Nodes)
	return snap, nil
}

// ReadAfter reads up to limit items of a group with cursor > since, in cursor order, stopping
// early once MaxReadBytes of items are read.
// truncated reports that items after since may have been purged: the reader must take a new
// snapshot. It is meant for readers behind the in-memory tail; package hub serves the rest.
func (s *Store) ReadAfter(ctx context.Context, gid string, since int64, limit int) (items []Item, truncated bool, err error) {
	rows, err := s.readAfter.QueryContext(ctx, gid, since, limit)
	if err != nil {
		return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
	}
	defer rows.Close()
	size := 0
	for size < s.opts.MaxReadBytes && rows.Next() {
		var body []byte
		if err := rows.Scan(&body); err != nil {
			return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
		}
		size += len(body)
		it, err := DecodeItem(body)
		if err != nil {
			return nil, false, err
		}
		it.Group = gid
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
	}
	// Read the purge marks after the items: a purge that ran meanwhile then shows as truncated.
	s.mu.RLock()
	if g := s.groups[gid]; g != nil {
		// Only a reader behind the group's own newest purged item has missed something.
		truncated = since < g.purged
	} else {
		truncated = since < s.purgedThrough
	}
	s.mu.RUnlock()
	return items, truncated, nil
}

// CursorAt returns the cursor a reader should resume from to get the group's items stamped
// after t: the cursor just before the first such item, or the newest cursor when there is none.
func (s *Store) CursorAt(ctx context.Context, gid string, t time.Time) (int64, error) {
	last := s.LastCursor()
	var c sql.NullInt64
	err := s.read.QueryRowContext(ctx, `SELECT min(cursor) FROM items WHERE group_id = ? AND at > ?`, gid, t.UnixMilli()).Scan(&c)
	if err != nil {
		return 0, fmt.Errorf("cursor at %s: %w", t.Format(TimeLayout), err)
	}
	if !c.Valid {
		return last, nil
	}
	return c.Int64 - 1, nil
}

// Stats are figures about the store for metrics and the dashboard.
type Stats struct {
	Groups        int           `json:"groups"`
	Nodes         int           `json:"nodes"`
	Cursor        int64         `json:"cursor"`
	PurgedThrough int64         `json:"purgedThrough"`
	RetainedItems int64         `json:"retainedItems"`
	OldestItemAge time.Duration `json:"oldestItemAgeNs"`
	DBBytes       int64         `json:"dbBytes"`
	WALBytes      int64         `json:"walBytes"`
	QueueDepth    int           `json:"queueDepth"`
}

// Stats reads the store's current figures.
func (s *Store) Stats(ctx context.Context) Stats {
	st := Stats{Cursor: s.LastCursor(), QueueDepth: len(s.ops)}
	s.mu.RLock()
	now := s.now()
	for _, g := range s.groups {
		if _, err := s.live(g.ID, now); err == nil {
			st.Groups++
			st.Nodes += len(g.nodes)
		}
	}
	st.PurgedThrough = s.purgedThrough
	s.mu.RUnlock()
	var oldest sql.NullInt64
	var first sql.NullInt64
	if err := s.read.QueryRowContext(ctx, `SELECT cursor, at FROM items ORDER BY cursor LIMIT 1`).Scan(&first, &oldest); err == nil && oldest.Valid {
		st.OldestItemAge = now.Sub(fromMillis(oldest.Int64))
		// Cursors are dense apart from rolled-back batches, so this is exact or a slight overcount.
		st.RetainedItems = st.Cursor - first.Int64 + 1
	}
	if fi, err := os.Stat(s.path); err == nil {
		st.DBBytes = fi.Size()
	}
	if fi, err := os.Stat(s.path + "-wal"); err == nil {
		st.WALBytes = fi.Size()
	}
	return st
}

// Over reports whether a reader at cursor since has seen the end of group gid: the group was
// dissolved and its dissolve item is at or before since. A group that expired but whose
// dissolve item the purge has not yet appended is not over: its readers wait for that item.
func (s *Store) Over(gid string, since int64) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.groups[gid]
	return g != nil && !g.endedAt.IsZero() && since >= g.endCursor && since <= s.committed.Load()
}
