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
//
// An instance holds and follows only the groups its clients use. The follower delivers every
// state change of every group (records, purge marks: the rules' limits need them, and they
// grow with groups and nodes, not with items), but items only of the groups this instance
// wants: those a reader here follows (Follow, until Unfollow: the hub's tails) and those it
// wrote or read within FollowIdle. Wanting a group makes the follower start again after a
// marker (stream.Entry.Followed): everything of the group stored before it is covered by its
// Through, so the watermark moves there and readers read those items from the log; every item
// after it comes through the follower. A batch that appends items to a group not followed yet
// follows it first and waits for its marker, since catchUp waits for the batch's own messages.
// Other instances' items of groups not followed here are never applied: their rate charges
// (chargeOthers) count only from the marker on, so a node gets at most one burst more per
// instance it starts writing through.

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
	return e.catchUpUntil(func() bool { return e.pos >= target }, skipOwn, "position", target)
}

// catchUpUntil applies what the follower delivers until done holds (checked after every
// marker and once the position moved), as catchUp; what and at say what it waits for.
func (e *Engine) catchUpUntil(done func() bool, skipOwn bool, what string, at any) bool {
	var pending []stream.Entry
	if e.entries == nil {
		return false
	}
	slow := time.NewTicker(e.opts.CatchUpTimeout)
	defer slow.Stop()
	for !done() {
		var en stream.Entry
		ok := false
		select {
		case en, ok = <-e.entries:
			if !ok {
				e.entries = nil // the engine is closing
			}
		case <-slow.C:
			e.log.Error("the log's follower is behind; writes wait for it", "position", e.pos, what, at)
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
		// A marker is applied at once: it may be what done waits for.
		if pending = append(pending, en); len(pending) == maxBatchOps || en.Followed != "" {
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
	var purged, through int64
	var followed []stream.Entry
	for _, en := range ens {
		through = max(through, en.Through)
		switch {
		case en.Followed != "":
			// Everything of the group before the marker is in the log (through Through); an
			// ended group's last item may be among it.
			if g := t.group(en.Followed); g != nil && !g.endedAt.IsZero() && g.endCursor < en.LastItem {
				t.edit(g).endCursor = en.LastItem
			}
			followed = append(followed, en)
		case len(en.Items) > 0 || en.Decode != nil:
			for _, it := range e.entryItems(en) {
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
	if n := len(items); n > 0 {
		through = max(through, items[n-1].Cursor)
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
	e.markFollowed(followed)
}

// entryItems returns an entry's items, decoding this instance's own (stream.Entry.Decode);
// one that cannot be decoded is logged and passed, as the follower does with others'.
func (e *Engine) entryItems(en stream.Entry) []stream.Item {
	if en.Decode == nil {
		return en.Items
	}
	items, err := en.Decode()
	if err != nil {
		e.log.Error("shared log: unreadable message of this instance", "seq", en.Seq, "err", err)
	}
	return items
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
	t.batch.Base = t.base
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

// interest is why this instance follows a group's items on a shared log.
type interest struct {
	// readers counts the Follow calls not yet matched by Unfollow (the hub's tails).
	readers int
	// usedAt is when this instance last wrote or read the group.
	usedAt time.Time
	// ready is closed once the follower's marker for the group was applied; through is the
	// marker's Through, set before.
	ready   chan struct{}
	through int64
}

func (i *interest) followed() bool {
	select {
	case <-i.ready:
		return true
	default:
		return false
	}
}

// want returns the group's interest, made (and the group wanted of the follower) if it has
// none, with readers added and, when use is set, used now. e.imu is held.
func (e *Engine) want(gid string, readers int, use bool) *interest {
	i := e.interest[gid]
	if i == nil {
		i = &interest{ready: make(chan struct{})}
		e.interest[gid] = i
		e.follower.Want(gid, true)
	}
	i.readers += readers
	if use {
		i.usedAt = e.now()
	}
	return i
}

// Follow makes this instance apply group gid's items, and hand them to OnCommit, until a
// matching Unfollow, and returns once it does (the hub calls it before it creates the group's
// tail, Unfollow when it drops it). Every item of the group up to the cursor returned is
// committed and readable with ReadAfter; every item after it will be handed to OnCommit. An
// engine over a log of its own applies every group: Follow returns 0 at once. It fails when
// ctx ends first, or the engine closes; then no Unfollow is due.
func (e *Engine) Follow(ctx context.Context, gid string) (int64, error) {
	if e.follower == nil {
		return 0, nil
	}
	e.imu.Lock()
	i := e.want(gid, 1, false)
	e.imu.Unlock()
	if err := e.awaitFollowed(ctx, gid, i); err != nil {
		e.Unfollow(gid)
		return 0, err
	}
	return i.through, nil
}

// Unfollow ends what one Follow of group gid started. The group's items are followed on while
// another reader follows it, and for FollowIdle after this instance last wrote or read it.
func (e *Engine) Unfollow(gid string) {
	if e.follower == nil {
		return
	}
	e.imu.Lock()
	if i := e.interest[gid]; i != nil && i.readers > 0 {
		i.readers--
	}
	e.imu.Unlock()
}

// use records a read of group gid and returns once its items are followed, so a read of the
// log knows the group's newest item (a lagging replica cannot make it serve less).
func (e *Engine) use(ctx context.Context, gid string) error {
	if e.follower == nil {
		return nil
	}
	e.imu.Lock()
	i := e.want(gid, 0, true)
	e.imu.Unlock()
	return e.awaitFollowed(ctx, gid, i)
}

func (e *Engine) awaitFollowed(ctx context.Context, gid string, i *interest) error {
	select {
	case <-i.ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("follow group %s: %w", gid, ctx.Err())
	case <-e.stop:
		return fmt.Errorf("follow group %s: %w", gid, ErrClosed)
	}
}

// Followed is how many groups' items this instance follows (every group's, over a log of its
// own: then it reports -1).
func (e *Engine) Followed() int {
	if e.follower == nil {
		return -1
	}
	e.imu.Lock()
	defer e.imu.Unlock()
	return len(e.interest)
}

// followWrites follows the groups the batch appends items to, and catches up with the
// follower until their markers are applied: the batch's commit waits for its own messages
// (catchUp), which the follower delivers only for groups it follows. It reports false if the
// follower stopped first. The batch stays built on t.base: the log refuses it if what was
// applied meanwhile changed a group it was built on.
func (e *Engine) followWrites(t *tx) bool {
	var waiting []*interest
	e.imu.Lock()
	last := ""
	for _, it := range t.batch.Items {
		if it.Group == last {
			continue // a batch's items come in runs of one group
		}
		last = it.Group
		if i := e.want(it.Group, 0, true); !i.followed() {
			waiting = append(waiting, i)
		}
	}
	e.imu.Unlock()
	for _, i := range waiting {
		if !e.catchUpUntil(i.followed, false, "waiting for", "a group's marker") {
			return false
		}
	}
	return true
}

// markFollowed makes the groups whose markers were applied followed: their Follow calls
// return.
func (e *Engine) markFollowed(markers []stream.Entry) {
	if len(markers) == 0 {
		return
	}
	e.imu.Lock()
	defer e.imu.Unlock()
	for _, en := range markers {
		// A marker answers the group's newest interest: one is dropped only once followed,
		// and the follower marks each group it adds once.
		if i := e.interest[en.Followed]; i != nil && !i.followed() {
			i.through = en.Through
			close(i.ready)
		}
	}
}

// sweepInterest stops following the groups nobody here reads or used within FollowIdle.
func (e *Engine) sweepInterest() {
	cutoff := e.now().Add(-e.opts.FollowIdle)
	e.imu.Lock()
	defer e.imu.Unlock()
	for gid, i := range e.interest {
		if i.readers == 0 && i.followed() && i.usedAt.Before(cutoff) {
			delete(e.interest, gid)
			e.follower.Want(gid, false)
		}
	}
}

// SyncGroup makes this instance's watermark a fair "now" for a new reader of group gid: when
// it does not follow the group's items yet, its watermark moved last with the last message its
// follower delivered, which may be long past (the group's items since then were not
// delivered), so it syncs with the shared log first. When it follows the group, or over a log
// of its own, it returns at once.
func (e *Engine) SyncGroup(ctx context.Context, gid string) error {
	if e.follower == nil {
		return nil
	}
	e.imu.Lock()
	i := e.interest[gid]
	followed := i != nil && i.followed()
	e.imu.Unlock()
	if followed {
		return nil
	}
	return e.Sync(ctx)
}
