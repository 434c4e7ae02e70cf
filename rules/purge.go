package rules

import (
	"context"
	"errors"
	"fmt"
	"time"

	"meshbox/stream"
)

// PurgeResult counts what one Purge removed.
type PurgeResult struct {
	Items  int
	Groups int
	Nodes  int
}

// Purge ends expired groups and lapsed nodes (with their dissolve and leave items), deletes
// items older than the event TTL (and, near the log's size budget, the oldest ones), and
// forgets groups that ended over a TTL ago. On a full log the expiry cannot be written (it
// appends items); the deletion runs all the same, as it is what makes room.
func (e *Engine) Purge(ctx context.Context) (PurgeResult, error) {
	start := time.Now()
	var res PurgeResult
	if err := e.do(ctx, func(t *tx) error { e.expire(t, &res); return nil }); err != nil {
		if !errors.Is(err, ErrStorageFull) {
			return res, fmt.Errorf("expire: %w", err)
		}
		res.Groups, res.Nodes = 0, 0 // nothing of it was stored; the next pass retries
	}
	purged, err := e.store.Purge(ctx, e.now().Add(-e.opts.EventTTL))
	res.Items = purged.Items
	if purged.Through > 0 {
		e.hooks.OnPurge(purged.Through)
	}
	if err != nil {
		return res, fmt.Errorf("purge items: %w", err)
	}
	err = e.do(ctx, func(t *tx) error {
		cutoff := t.now.Add(-e.opts.EventTTL)
		t.each(func(g *groupState) {
			if !g.endedAt.IsZero() && g.endedAt.Before(cutoff) {
				t.forget(g.ID)
			}
		})
		return nil
	})
	if err != nil && !errors.Is(err, ErrStorageFull) {
		return res, fmt.Errorf("forget ended groups: %w", err)
	}
	e.obs.ObservePurge(res.Items, res.Groups, res.Nodes, time.Since(start))
	return res, nil
}

func (e *Engine) expire(t *tx, res *PurgeResult) {
	var ended, lapsed []*groupState
	t.each(func(g *groupState) {
		if !g.endedAt.IsZero() {
			return
		}
		if e.live(g, g.ID, t.now) != nil {
			ended = append(ended, g)
		} else {
			lapsed = append(lapsed, g)
		}
	})
	for _, g := range ended {
		e.dissolve(t, g, stream.ReasonExpired)
		res.Groups++
	}
	for _, g := range lapsed {
		for _, n := range g.nodes {
			if !t.now.After(n.ExpiresAt) {
				continue
			}
			if e.present(g.ID, n) {
				// A node that keeps a stream open is present: move its expiry on.
				t.touch(t.edit(g), n.ID)
				continue
			}
			if n.Host {
				continue // the host's lapse is the group's, handled above
			}
			e.removeNode(t, g, n.ID, stream.ReasonExpired)
			res.Nodes++
		}
	}
}

// wakePurge asks the purge loop for a pass now, without waiting for it.
func (e *Engine) wakePurge() {
	select {
	case e.purgeNow <- struct{}{}:
	default: // a pass is already asked for
	}
}

// RunPurge purges every interval, and at once when a write finds the log full (also at start,
// if the log starts full), until ctx ends.
func (e *Engine) RunPurge(ctx context.Context, every time.Duration) {
	tick := time.NewTicker(every)
	defer tick.Stop()
	failing := false
	if err := e.store.Ping(ctx); errors.Is(err, ErrStorageFull) {
		e.wakePurge()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-e.purgeNow:
		}
		if e.follower != nil {
			// Presence is the cluster's: a node active here keeps its record alive for the
			// instance that runs the expiry.
			if err := e.keepActive(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("keep active nodes alive", "err", err)
			}
		}
		if l, ok := e.store.(stream.Leaser); ok {
			// One instance of a cluster expires and purges; the others stand by, and one of
			// them takes over within three intervals of the holder's end.
			held, err := l.Lease(ctx, "purge", 3*every)
			if err != nil && ctx.Err() == nil {
				e.log.Warn("purge lease", "err", err)
			}
			if !held {
				continue
			}
		}
		res, err := e.Purge(ctx)
		if err != nil {
			// Logged when the purge starts failing, not on every pass: a full disk retries
			// every interval, and its state changes are the log's to report.
			if ctx.Err() == nil && !failing {
				e.log.Error("purge fails; retried every interval", "err", err)
			}
			failing = ctx.Err() == nil
			continue
		}
		if failing {
			e.log.Info("purge succeeds again")
			failing = false
		}
		if res.Items+res.Groups+res.Nodes > 0 {
			e.log.Debug("purged", "items", res.Items, "groups", res.Groups, "nodes", res.Nodes)
		}
	}
}

// keepActive stores the activity of nodes that are alive here but whose stored record would
// soon lapse (a stream open on this instance, or requests that only moved the expiry in
// memory), so that the instance running the expiry sees them alive too. A node is written at
// most about once per half of its TTL.
func (e *Engine) keepActive(ctx context.Context) error {
	return e.do(ctx, func(t *tx) error {
		var due []*groupState
		t.each(func(g *groupState) {
			if e.live(g, g.ID, t.now) == nil {
				due = append(due, g)
			}
		})
		for _, g := range due {
			for _, n := range g.nodes {
				half := e.ttl(n.Host) / 2
				active := e.present(g.ID, n)
				if n.storedExp.Sub(t.now) > half || !active && !n.ExpiresAt.After(n.storedExp) {
					continue
				}
				d := t.edit(g)
				if active {
					t.touch(d, n.ID)
				}
				c := d.node(n.ID)
				t.putNode(c)
				if c.Host {
					t.putGroup(d.groupState)
				}
			}
		}
		return nil
	})
}
