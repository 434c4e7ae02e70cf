package rules

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"meshbox/stream"
)

// Several instances over one shared log (a stream.Follower) work like this. The writer
// goroutine stays the only one that changes the state: it also applies what the follower
// delivers, in log order, so the state and the watermark only ever move forward through the
// log. A batch is built on the state at position e.pos and handed to the log with the groups
// and domains it was built on; the log refuses it (stream.ErrConflict) if another instance
// changed one of them since, and the writer then catches up and runs the batch's requests
// again on the fresh state. A batch the log accepted is applied once the follower delivered
// everything before it: the other instances' messages first, then the batch itself (its own
// messages, delivered too, are skipped: they are the batch).

// maxConflictRetries bounds how often one batch is run again after conflicts, so a group
// that others change all the time cannot hold a writer forever.
const maxConflictRetries = 16

// catchUp applies what the follower delivers until it delivered position target. With
// skipOwn, this instance's own messages are skipped (they are the batch being committed);
// without, they are applied like any other (a batch whose Append failed after a part of it
// was stored). It returns false if the follower stopped first (the engine is closing).
//
// It waits as long as the follower takes (a stream electing a new leader after a NATS node
// died can hold it back for many seconds on a busy machine), saying so every CatchUpTimeout:
// going on without it would apply this instance's batch before other instances' items that
// precede it in the log, and readers here, already past them, would never get those.
func (e *Engine) catchUp(target int64, skipOwn bool) bool {
	var pending []stream.Entry
	if e.entries == nil {
		return false
	}
	slow := time.NewTicker(e.opts.CatchUpTimeout)
	defer slow.Stop()
	for e.pos < target {
		var en stream.Entry
		ok := false
		select {
		case en, ok = <-e.entries:
			if !ok {
				e.entries = nil // the engine is closing
			}
		case <-slow.C:
			e.log.Error("the log's follower is behind; writes wait for it", "position", e.pos, "target", target)
			continue
		}
		if !ok {
			e.applyEntries(pending)
			return false
		}
		e.pos = max(e.pos, en.Seq)
		if skipOwn && en.Own {
			continue
		}
		if pending = append(pending, en); len(pending) == maxBatchOps {
			e.applyEntries(pending)
			pending = pending[:0]
		}
	}
	e.applyEntries(pending)
	return true
}

// followed applies en and whatever else the follower has ready, as one step.
func (e *Engine) followed(en stream.Entry) {
	ens := []stream.Entry{en}
	for len(ens) < maxBatchOps {
		select {
		case next, ok := <-e.entries:
			if !ok {
				e.entries = nil
				e.applyEntries(ens)
				return
			}
			ens = append(ens, next)
			continue
		default:
		}
		break
	}
	e.applyEntries(ens)
}

// catchUpNow catches up with everything the log holds now (after a conflict, or a batch that
// failed with a part stored). It fails if the log cannot tell its position.
func (e *Engine) catchUpNow(skipOwn bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.CatchUpTimeout)
	defer cancel()
	pos, err := e.follower.Position(ctx)
	if err != nil {
		return fmt.Errorf("catch up: %w", err)
	}
	if !e.catchUp(pos, skipOwn) {
		return fmt.Errorf("catch up: %w", ErrClosed)
	}
	return nil
}

// applyEntries applies other instances' messages to the state, moves the watermark past
// their items, and hands the items to the live readers, all in log order.
func (e *Engine) applyEntries(ens []stream.Entry) {
	if len(ens) == 0 {
		return
	}
	e.chargeOthers(ens)
	t := e.newTx()
	var items []stream.Item
	var purged int64
	for _, en := range ens {
		switch {
		case len(en.Items) > 0:
			for _, it := range en.Items {
				it = it.Slim()
				items = append(items, it)
				if it.Kind == stream.KindDissolve {
					if g := t.group(it.Group); g != nil {
						t.edit(g).endCursor = it.Cursor
					}
				}
			}
		case en.Change != nil:
			e.applyChange(t, *en.Change)
		case en.Purged > 0:
			purged = max(purged, en.Purged)
		}
	}
	var through int64
	if n := len(items); n > 0 {
		through = items[n-1].Cursor
	}
	e.swapIn(t.groups, through)
	e.pos = max(e.pos, ens[len(ens)-1].Seq)
	e.reached(ens[len(ens)-1].Seq)
	if len(items) > 0 {
		e.hooks.OnCommit(items)
	}
	if purged > 0 {
		e.hooks.OnPurge(purged)
	}
}

// chargeOthers charges the publishes and data changes other instances committed to their
// nodes' rates, so a node that spreads its requests over several instances still gets one
// node's rate in all: each instance refuses it once the stream shows it used its budget
// anywhere (a moment late: what the follower has not delivered yet is not counted yet).
// One publish's items are consecutive and share their node, kind and time: they are charged
// once, as the request was, also when the follower hands them over in two parts.
func (e *Engine) chargeOthers(ens []stream.Entry) {
	if !e.rate.Enabled() && !e.byteRate.Enabled() {
		return
	}
	now := e.now()
	last := e.charged
	for _, en := range ens {
		if len(en.Items) == 0 || en.Own {
			last = nil
			continue
		}
		for i := range en.Items {
			it := &en.Items[i]
			if it.Kind != stream.KindEvent && it.Kind != stream.KindData {
				last = nil
				continue
			}
			// Bytes are charged item by item: the encoding is close enough to what the node sent.
			e.byteRate.ChargeN(it.Group+"/"+it.Node, now, len(it.JSON))
			if last != nil && last.Group == it.Group && last.Node == it.Node && last.Kind == it.Kind && last.At.Equal(it.At) {
				continue
			}
			e.rate.Charge(it.Group+"/"+it.Node, now)
			last = it
		}
	}
	e.charged = last
}

// applyChange applies one record written by another instance: records are whole images, so
// applying one again (or one this instance already has) changes nothing.
func (e *Engine) applyChange(t *tx, c stream.Change) {
	switch c.Kind {
	case stream.PutGroup:
		r := c.Group
		g := t.group(r.ID)
		if g == nil {
			ng := &groupState{Group: Group{
				ID: r.ID, Domain: r.Domain, Name: r.Name, Host: r.Host, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
				HostSeenAt: r.HostSeenAt, UseWebSocket: r.UseWebSocket, MeshV2: r.MeshV2,
			}, endedAt: r.EndedAt, endReason: r.EndReason, nodes: map[string]*nodeState{}}
			if !ng.endedAt.IsZero() {
				ng.former = map[string]*nodeState{}
			}
			t.create(ng)
			return
		}
		d := t.edit(g)
		d.Name, d.Host, d.ExpiresAt, d.UseWebSocket, d.MeshV2 = r.Name, r.Host, r.ExpiresAt, r.UseWebSocket, r.MeshV2
		d.HostSeenAt = maxTime(d.HostSeenAt, r.HostSeenAt)
		if !r.EndedAt.IsZero() && d.endedAt.IsZero() {
			d.endedAt, d.endReason = r.EndedAt, r.EndReason
			d.endMembers()
		}
	case stream.DeleteGroup:
		t.groups[c.Group.ID] = nil
	case stream.PutNode:
		r := c.Node
		g := t.group(r.Group)
		if g == nil {
			return
		}
		d := t.edit(g)
		n := &nodeState{Node: Node{
			ID: r.ID, Group: r.Group, Name: r.Name, JoinedAt: r.JoinedAt, LastSeen: r.LastSeen,
			ExpiresAt: r.ExpiresAt, Data: r.Data, DataAt: r.DataAt, Host: r.ID == d.Host, MeshV2: r.MeshV2,
		}, tokenHash: r.TokenHash, storedExp: r.ExpiresAt}
		if old := d.nodes[r.ID]; old != nil {
			// Activity seen here (a stream open on this instance) is not in the record, nor
			// the client that joined it here.
			n.LastSeen, n.ExpiresAt = maxTime(n.LastSeen, old.LastSeen), maxTime(n.ExpiresAt, old.ExpiresAt)
			n.client = old.client
		}
		if !d.endedAt.IsZero() {
			d.former = maps.Clone(d.former)
			d.former[r.ID] = n
			return
		}
		d.dropMember(r.ID)
		d.addMember(n)
	case stream.DeleteNode:
		g := t.group(c.Node.Group)
		if g == nil || g.nodes[c.Node.ID] == nil {
			return
		}
		t.edit(g).dropMember(c.Node.ID)
	}
}

// guard names what the batch was built on, for a shared log to check.
func (e *Engine) guard(t *tx) {
	t.batch.Base = e.pos
	t.batch.Groups = slices.Sorted(maps.Keys(t.groups))
	t.batch.Domains = t.domains
}

// isConflict tells whether a batch failed because others changed what it was built on.
func isConflict(err error) bool { return errors.Is(err, stream.ErrConflict) }

// reached tells Sync's waiters that the state reflects the log up to position p.
func (e *Engine) reached(p int64) {
	e.appliedMu.Lock()
	if p > e.applied {
		e.applied = p
		close(e.appliedCh)
		e.appliedCh = make(chan struct{})
	}
	e.appliedMu.Unlock()
}

// Sync waits until this instance applied everything the shared log held when Sync was called,
// so what a client just did through another instance is seen here too. On a log of its own
// it returns at once.
func (e *Engine) Sync(ctx context.Context) error {
	if e.follower == nil {
		return nil
	}
	p, err := e.follower.Position(ctx)
	if err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	for {
		e.appliedMu.Lock()
		done, ch := e.applied >= p, e.appliedCh
		e.appliedMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("sync: %w", ctx.Err())
		}
	}
}

// unknown tells whether err says a group or node is not known here: on a shared log, perhaps
// only not yet (another instance just created it), which Sync settles.
func unknown(err error) bool {
	return errors.Is(err, ErrGroupNotFound) || errors.Is(err, ErrNodeNotFound)
}

// syncTimeout bounds the Sync behind a request about a group or node not known here.
const syncTimeout = 5 * time.Second

// syncUnknown syncs after an error about something not known here, and reports whether the
// request is worth running again.
func (e *Engine) syncUnknown(ctx context.Context, err error) bool {
	if e.follower == nil || !unknown(err) {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	if serr := e.Sync(ctx); serr != nil {
		e.log.Warn("sync with the shared log", "err", serr)
		return false
	}
	return true
}
