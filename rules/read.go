package rules

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"meshbox/stream"
)

// Authenticate returns the node a token belongs to (without its data), provided it is a
// live member of group gid.
func (e *Engine) Authenticate(gid, token string) (Node, error) {
	n, known, err := e.authenticate(gid, token)
	if err != nil && !known && e.syncUnknown(context.Background(), ErrNodeNotFound) {
		// The node may have joined through another instance a moment ago.
		n, _, err = e.authenticate(gid, token)
	}
	return n, err
}

// authenticate is Authenticate on the state as it is; known tells that the group and the
// token's node are known here (so a failure is not for want of news from other instances).
func (e *Engine) authenticate(gid, token string) (Node, bool, error) {
	nid, hash, ok := splitToken(token)
	e.mu.RLock()
	defer e.mu.RUnlock()
	g := e.groups[gid]
	if err := e.live(g, gid, e.now()); err != nil {
		return Node{}, g != nil, err
	}
	if !ok {
		return Node{}, true, ErrUnauthorized
	}
	n := g.nodes[nid]
	if n == nil || !tokenMatches(n.tokenHash, hash) {
		return Node{}, n != nil || g.former[nid] != nil, ErrUnauthorized
	}
	// Every request authenticates: no copy of the node's data, which the caller never needs.
	return Node{ID: n.ID, Group: n.Group, Name: n.Name, Host: n.Host}, true, nil
}

// AuthenticateReader is Authenticate for readers: the members of a group that ended (and is
// not yet forgotten) may still read its final items. ended tells that the group is over.
func (e *Engine) AuthenticateReader(gid, token string) (n Node, ended bool, err error) {
	n, err = e.Authenticate(gid, token)
	if !errors.Is(err, ErrGroupEnded) {
		return n, false, err
	}
	nid, hash, ok := splitToken(token)
	e.mu.RLock()
	defer e.mu.RUnlock()
	g := e.groups[gid]
	if g == nil || !ok {
		return Node{}, true, ErrUnauthorized
	}
	if m := g.former[nid]; m != nil && tokenMatches(m.tokenHash, hash) {
		return Node{ID: nid, Group: gid, Name: m.Name, Host: nid == g.Host}, true, nil
	}
	if m := g.nodes[nid]; m != nil && tokenMatches(m.tokenHash, hash) {
		// Expired but not yet purged: the purge will append its dissolve item.
		return Node{ID: m.ID, Group: m.Group, Name: m.Name, Host: m.Host}, true, nil
	}
	return Node{}, true, ErrUnauthorized
}

// Group returns a live group.
func (e *Engine) Group(gid string) (Group, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	g := e.groups[gid]
	if err := e.live(g, gid, e.now()); err != nil {
		return Group{}, err
	}
	return g.snapshot(), nil
}

// Node returns a member of a live group.
func (e *Engine) Node(gid, nid string) (Node, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	now := e.now()
	g := e.groups[gid]
	if err := e.live(g, gid, now); err != nil {
		return Node{}, err
	}
	n, err := e.liveNode(g, nid, now)
	if err != nil {
		return Node{}, err
	}
	return n.snapshot(), nil
}

// FindMeshV2Node returns a Mesh v2 member with this id in any live group (Mesh v2 looks nodes
// up by id alone); the newest membership wins.
func (e *Engine) FindMeshV2Node(nid string) (Node, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	now := e.now()
	var found *nodeState
	for _, g := range e.groups {
		if e.live(g, g.ID, now) != nil {
			continue
		}
		if n, err := e.liveNode(g, nid, now); err == nil && n.MeshV2 && (found == nil || n.JoinedAt.After(found.JoinedAt)) {
			found = n
		}
	}
	if found == nil {
		return Node{}, fmt.Errorf("node %s: %w", nid, ErrNodeNotFound)
	}
	return found.snapshot(), nil
}

// Nodes returns the live members of a live group: the host, then the others oldest first.
func (e *Engine) Nodes(gid string) ([]Node, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.nodesLocked(gid, e.now())
}

func (e *Engine) nodesLocked(gid string, now time.Time) ([]Node, error) {
	g := e.groups[gid]
	if err := e.live(g, gid, now); err != nil {
		return nil, err
	}
	out := make([]Node, 0, len(g.nodes))
	for _, n := range g.nodes {
		if _, err := e.liveNode(g, n.ID, now); err == nil {
			out = append(out, n.snapshot())
		}
	}
	// The host first (it joined first; join times share a millisecond often), then by join.
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Host != b.Host {
			return a.Host
		}
		return a.JoinedAt.Before(b.JoinedAt) || a.JoinedAt.Equal(b.JoinedAt) && a.ID < b.ID
	})
	return out, nil
}

// Groups returns the live groups of a domain ("" for every domain), oldest first.
func (e *Engine) Groups(domain string) []Group {
	return e.filterGroups(func(g *groupState) bool { return domain == "" || g.Domain == domain }, 0)
}

// SearchGroups returns live groups whose name starts with prefix, at most limit (0: no limit).
func (e *Engine) SearchGroups(prefix string, limit int) []Group {
	return e.filterGroups(func(g *groupState) bool { return strings.HasPrefix(g.Name, prefix) }, limit)
}

func (e *Engine) filterGroups(keep func(*groupState) bool, limit int) []Group {
	e.mu.RLock()
	defer e.mu.RUnlock()
	now := e.now()
	var out []Group
	for _, g := range e.groups {
		if e.live(g, g.ID, now) == nil && keep(g) {
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

// Snapshot returns a live group with its nodes and their data, and the cursor it is at:
// applying every item after Cursor gives the current state. State and cursor are read under
// one lock, which commits take to apply both.
func (e *Engine) Snapshot(ctx context.Context, gid string) (Snapshot, error) {
	if err := e.SyncGroup(ctx, gid); err != nil {
		return Snapshot{}, err
	}
	e.mu.RLock()
	defer e.mu.RUnlock()
	now := e.now()
	nodes, err := e.nodesLocked(gid, now)
	if err != nil {
		return Snapshot{}, err
	}
	snap := Snapshot{Group: e.groups[gid].snapshot(), Nodes: nodes, Cursor: e.watermark.Load()}
	snap.Group.Nodes = len(nodes)
	return snap, nil
}

// ReadAfter reads up to limit committed items of a group after since from the log. It is meant
// for readers behind the in-memory tail; package hub serves the rest. Over a shared log it
// follows the group first (a read is a use, see Follow), so it never serves less than the
// log holds.
func (e *Engine) ReadAfter(ctx context.Context, gid string, since int64, limit int) ([]stream.Item, bool, error) {
	if err := e.use(ctx, gid); err != nil {
		return nil, false, err
	}
	return e.store.ReadAfter(ctx, gid, since, e.Watermark(), limit, e.opts.Limits.MaxReadBytes)
}

// CursorAt returns the cursor a reader should resume from to get the group's items stamped
// after t: the cursor just before the first such item, or the watermark when there is none.
func (e *Engine) CursorAt(ctx context.Context, gid string, t time.Time) (int64, error) {
	return e.store.CursorAt(ctx, gid, t, e.Watermark())
}

// Over reports whether a reader at cursor since has seen the end of group gid: the group was
// dissolved and its dissolve item is at or before since. A group that expired but whose
// dissolve item the purge has not yet appended is not over: its readers wait for that item.
func (e *Engine) Over(gid string, since int64) bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	g := e.groups[gid]
	return g != nil && !g.endedAt.IsZero() && since >= g.endCursor && since <= e.watermark.Load()
}

// Ping checks that the log accepts writes.
func (e *Engine) Ping(ctx context.Context) error { return e.store.Ping(ctx) }

// Storage is the log's storage state: ok, under pressure, full or recovering, and since when.
// A log that does not track one is always ok.
func (e *Engine) Storage() stream.StorageStatus {
	if r, ok := e.store.(stream.StorageReporter); ok {
		return r.Storage()
	}
	return stream.StorageStatus{State: stream.StorageOK}
}

// Stats reads the current figures.
func (e *Engine) Stats(ctx context.Context) Stats {
	st := Stats{Cursor: e.Watermark(), QueueDepth: len(e.ops), FollowedGroups: e.Followed()}
	e.mu.RLock()
	now := e.now()
	for _, g := range e.groups {
		if e.live(g, g.ID, now) == nil {
			st.Groups++
			st.Nodes += len(g.nodes)
		}
	}
	e.mu.RUnlock()
	ls := e.store.Stats(ctx)
	st.PurgedThrough, st.RetainedItems, st.DBBytes, st.WALBytes = ls.PurgedThrough, ls.RetainedItems, ls.Bytes, ls.WALBytes
	st.Storage = e.Storage()
	if !ls.OldestItemAt.IsZero() {
		st.OldestItemAge = now.Sub(ls.OldestItemAt)
	}
	return st
}

// MeshV2Member checks that Mesh v2 may act in group gid, and for node nid when it is not
// empty: the group is open to Mesh v2 and the node joined through it. The protocol has no
// per-node credential, so this is what keeps Mesh v2 callers away from native groups and
// token-holding nodes. Both flags are fixed when a group or node is created, so checking
// before the write cannot race with it.
func (e *Engine) MeshV2Member(gid, nid string) error {
	e.mu.RLock()
	defer e.mu.RUnlock()
	g := e.groups[gid]
	if g == nil {
		return fmt.Errorf("group %s: %w", gid, ErrGroupNotFound)
	}
	if !g.MeshV2 {
		return fmt.Errorf("group %s is not open to Mesh v2: %w", gid, ErrUnauthorized)
	}
	if nid == "" {
		return nil
	}
	n := g.nodes[nid]
	if n == nil {
		n = g.former[nid]
	}
	if n != nil && !n.MeshV2 {
		return fmt.Errorf("node %s of group %s holds a token: %w", nid, gid, ErrUnauthorized)
	}
	return nil
}
