package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// purgeBatch bounds how many items one purge transaction deletes, so writers queued behind it
// wait for a few milliseconds at most.
const purgeBatch = 2000

// PurgeResult counts what one Purge removed.
type PurgeResult struct {
	Items  int
	Groups int
	Nodes  int
}

// Purge ends expired groups and lapsed nodes (with their dissolve and leave items), deletes
// items older than the event TTL in small batches, and forgets groups that ended over a TTL ago.
func (s *Store) Purge(ctx context.Context) (PurgeResult, error) {
	start := time.Now()
	var res PurgeResult
	err := s.do(ctx, func(t *txn) error { return s.expire(t, &res) })
	if err != nil {
		return res, fmt.Errorf("expire: %w", err)
	}
	for {
		n := 0
		err := s.do(ctx, func(t *txn) error {
			var err error
			n, err = s.purgeItems(t)
			return err
		})
		if err != nil {
			return res, fmt.Errorf("purge items: %w", err)
		}
		res.Items += n
		if n < purgeBatch || ctx.Err() != nil {
			break
		}
	}
	err = s.do(ctx, func(t *txn) error {
		cutoff := t.now.Add(-s.opts.EventTTL)
		var gone []string
		for id, g := range s.groups {
			if !g.endedAt.IsZero() && g.endedAt.Before(cutoff) {
				gone = append(gone, id)
			}
		}
		if len(gone) == 0 {
			return nil
		}
		if err := t.exec(t.ctx, `DELETE FROM groups WHERE ended_at > 0 AND ended_at < ?`, cutoff.UnixMilli()); err != nil {
			return err
		}
		s.mu.Lock()
		for _, id := range gone {
			delete(s.groups, id)
		}
		s.mu.Unlock()
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("forget ended groups: %w", err)
	}
	s.obs.ObservePurge(res.Items, res.Groups, res.Nodes, time.Since(start))
	return res, nil
}

func (s *Store) expire(t *txn, res *PurgeResult) error {
	now := t.now
	for _, g := range s.groups {
		if !g.endedAt.IsZero() {
			continue
		}
		if _, err := s.live(g.ID, now); err != nil {
			if err := s.dissolve(t, g, ReasonExpired); err != nil {
				return err
			}
			res.Groups++
			continue
		}
		for _, n := range g.nodes {
			if !now.After(n.ExpiresAt) {
				continue
			}
			if s.hooks.Active(g.ID, n.ID) {
				// A node that keeps a stream open is present: move its expiry on.
				s.touch(g, n, now)
				continue
			}
			if n.Host {
				continue // the host's lapse is the group's, handled above
			}
			if err := s.removeNode(t, g, n, ReasonExpired); err != nil {
				return err
			}
			res.Nodes++
		}
	}
	return nil
}

func (s *Store) purgeItems(t *txn) (int, error) {
	cutoff := t.now.Add(-s.opts.EventTTL).UnixMilli()
	var through sql.NullInt64
	var n int
	// Item times never decrease in cursor order, so the old items are a prefix of the table.
	err := s.wconn.QueryRowContext(t.ctx, `SELECT max(cursor), count(*) FROM (SELECT cursor, at FROM items ORDER BY cursor LIMIT ?) WHERE at < ?`, purgeBatch, cutoff).Scan(&through, &n)
	if err != nil {
		t.err = fatalError{fmt.Errorf("find old items: %w", err)}
		return 0, t.err
	}
	if n == 0 {
		return 0, nil
	}
	perGroup, err := s.newestPerGroup(t, through.Int64)
	if err != nil {
		return 0, err
	}
	if err := t.exec(t.ctx, `DELETE FROM items WHERE cursor <= ?`, through.Int64); err != nil {
		return 0, err
	}
	for gid, c := range perGroup {
		if err := t.exec(t.ctx, `UPDATE groups SET purged_through = ? WHERE id = ?`, c, gid); err != nil {
			return 0, err
		}
	}
	if err := t.exec(t.ctx, `INSERT INTO meta(key, value) VALUES('purged_through', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, through.Int64); err != nil {
		return 0, err
	}
	s.mu.Lock()
	s.purgedThrough = through.Int64
	for gid, c := range perGroup {
		if g := s.groups[gid]; g != nil {
			g.purged = c
		}
	}
	s.mu.Unlock()
	t.purged = through.Int64
	return n, nil
}

// RunPurge purges every interval until ctx ends.
func (s *Store) RunPurge(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			res, err := s.Purge(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Error("purge", "err", err)
				}
				continue
			}
			if res.Items+res.Groups+res.Nodes > 0 {
				s.log.Debug("purged", "items", res.Items, "groups", res.Groups, "nodes", res.Nodes)
			}
		}
	}
}

// newestPerGroup returns, per group, its newest item at or below through.
func (s *Store) newestPerGroup(t *txn, through int64) (map[string]int64, error) {
	rows, err := s.wconn.QueryContext(t.ctx, `SELECT group_id, max(cursor) FROM items WHERE cursor <= ? GROUP BY group_id`, through)
	if err != nil {
		t.err = fatalError{fmt.Errorf("group purge marks: %w", err)}
		return nil, t.err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var gid string
		var c int64
		if err := rows.Scan(&gid, &c); err != nil {
			t.err = fatalError{fmt.Errorf("group purge marks: %w", err)}
			return nil, t.err
		}
		out[gid] = c
	}
	if err := rows.Err(); err != nil {
		t.err = fatalError{fmt.Errorf("group purge marks: %w", err)}
		return nil, t.err
	}
	return out, nil
}
