// Package rules holds meshbox's group rules: domains, groups, nodes, tokens, lifetimes, limits
// and input validation, the same for every entrance (native API, WebSocket, Mesh v2,
// dashboard). It keeps the live state in memory above a stream.Log and changes it only after
// the log committed: one writer goroutine runs concurrent requests against the state as the
// batch before them left it (group commit), hands the batch to the log, and on success applies
// it to memory, moves the watermark and wakes readers. A failed batch changes nothing.
package rules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"meshbox/ratelimit"
	"meshbox/stream"
)

// Limits bound what one client may ask for. Every entrance gets them from here.
type Limits struct {
	MaxNodesPerGroup    int
	MaxGroupsPerDomain  int
	MaxDataKeys         int
	MaxDataKeyBytes     int
	MaxDataValueBytes   int
	MaxPayloadBytes     int
	MaxEventsPerPublish int
	// PublishRate is publishes and data changes per node per second, burst twice that
	// (0: unlimited).
	PublishRate float64
	// NodeByteRate is the bytes of events and data (payloads, names, keys and values) one
	// node may store per second, with a burst of NodeByteBurstSeconds of it (0: unlimited):
	// beside the publish rate, it bounds what one node can make the log hold.
	NodeByteRate float64
	// MaxGroups bounds the live groups of the whole server, MaxGroupsPerClient those created
	// by one client (in every domain together), and GroupCreateRate how many groups one client
	// may create per second, after a burst of GroupCreateBurst (0: unlimited). The client is
	// the one named with WithClient; creations without one are bounded by MaxGroups only.
	MaxGroups          int
	MaxGroupsPerClient int
	GroupCreateRate    float64
	GroupCreateBurst   int
	// Fair shares of one client address (WithClient), so one laptop cannot take what the
	// class shares (0: no share). MaxGroupsPerClientDomain bounds the live groups one client
	// created in one domain, MaxNodesPerClientGroup the members it joined (host included) to
	// one group, and MaxNodesPerClient the members it joined in all groups together. Refused
	// with ErrClientShare. The client of a group or node is kept in memory only: after a
	// restart, and for what other instances of a shared log served, they count for nobody.
	MaxGroupsPerClientDomain int
	MaxNodesPerClientGroup   int
	MaxNodesPerClient        int
	// MaxReadBytes bounds the encoded items one read from the log returns (at least one
	// item), so a reader far behind never pulls thousands of large payloads at once.
	MaxReadBytes int
}

// Options configure an Engine.
type Options struct {
	EventTTL         time.Duration
	MaxGroupLifetime time.Duration
	HostTTL          time.Duration
	MemberTTL        time.Duration
	Limits           Limits
	// MaxBatchItems and MaxBatchBytes bound one commit: once a batch holds this many items
	// or payload bytes, the requests still queued go into the next one.
	MaxBatchItems int
	MaxBatchBytes int
	Logger        *slog.Logger
	Observer      Observer
	// Now returns the current time; tests may replace it.
	Now func() time.Time
	// CatchUpTimeout bounds how long the writer waits for a shared log to tell its position,
	// and how often it logs that its follower is behind (default 10 s).
	CatchUpTimeout time.Duration
	// FollowIdle is how long, over a shared log, a group's items are still followed after this
	// instance last wrote or read it when no reader here follows it (default 2 min; see
	// follow.go).
	FollowIdle time.Duration
}

// Observer receives the rules' measurements; package metrics implements it.
type Observer interface {
	ObserveCommit(ops, items int, d time.Duration)
	ObserveAppended(kind string, n int)
	ObservePurge(items, groups, nodes int, d time.Duration)
}

// Hooks connect the engine to the live readers once they exist.
type Hooks struct {
	// OnCommit receives every committed batch of items in cursor order, after the watermark
	// moved past them and before any writer is acknowledged. It must not block.
	OnCommit func(items []stream.Item)
	// Active reports whether a node has a stream open, which counts as activity.
	Active func(group, node string) bool
	// OnPurge is told that every item up to a cursor was deleted, so in-memory copies can go
	// too and readers behind it learn of the truncation.
	OnPurge func(through int64)
}

// maxBatchOps bounds the requests of one group-commit transaction, so a flood of writers
// cannot make one commit, and so every acknowledgement, wait for long.
const maxBatchOps = 512

// maxCommitYields bounds how often the writer yields to let ops join a batch before it
// commits, and busyGap is the pause between batches under which the writer counts as busy
// (see runBatch).
const (
	maxCommitYields = 4
	busyGap         = time.Millisecond
)

type noopObserver struct{}

func (noopObserver) ObserveCommit(int, int, time.Duration)     {}
func (noopObserver) ObserveAppended(string, int)               {}
func (noopObserver) ObservePurge(int, int, int, time.Duration) {}

func (o *Options) defaults() {
	if o.EventTTL <= 0 {
		o.EventTTL = 10 * time.Minute
	}
	if o.MaxGroupLifetime <= 0 {
		o.MaxGroupLifetime = 6 * time.Hour
	}
	if o.HostTTL <= 0 {
		o.HostTTL = 150 * time.Second
	}
	if o.MemberTTL <= 0 {
		o.MemberTTL = 600 * time.Second
	}
	l := &o.Limits
	for _, d := range []struct {
		v   *int
		def int
	}{
		{&l.MaxNodesPerGroup, 250}, {&l.MaxGroupsPerDomain, 200}, {&l.MaxDataKeys, 100},
		{&l.MaxDataKeyBytes, 128}, {&l.MaxDataValueBytes, 4096}, {&l.MaxPayloadBytes, 16 << 10},
		{&l.MaxEventsPerPublish, 1000}, {&l.MaxReadBytes, 256 << 10},
		{&l.MaxGroups, 2000}, {&l.MaxGroupsPerClient, 100}, {&l.GroupCreateBurst, 60},
		{&o.MaxBatchItems, 8192}, {&o.MaxBatchBytes, 8 << 20},
	} {
		if *d.v <= 0 {
			*d.v = d.def
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = noopObserver{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.CatchUpTimeout <= 0 {
		o.CatchUpTimeout = 10 * time.Second
	}
	if o.FollowIdle <= 0 {
		o.FollowIdle = 2 * time.Minute
	}
}

// Engine applies the group rules over a log.
type Engine struct {
	opts  Options
	log   *slog.Logger
	obs   Observer
	now   func() time.Time
	store stream.Log
	rate  *ratelimit.Keyed
	// byteRate is each node's bytes per second (shares.go).
	byteRate *ratelimit.Keyed
	// charged is the last item chargeOthers charged a node for (the writer's only), so a
	// publish whose items the follower delivers in two parts is charged once.
	charged *stream.Item
	// createRate charges group creations to their client.
	createRate *ratelimit.Keyed

	ops chan *op
	// lastOps is how many ops the previous batch held and lastEnd when it was answered; only
	// the writer goroutine uses them.
	lastOps int
	lastEnd time.Time
	// purgeNow asks the purge loop for a pass at once: a write found the log full, and only
	// the purge makes room.
	purgeNow chan struct{}
	stop     chan struct{}
	stopped  chan struct{}
	hooks    Hooks
	started  bool
	start    sync.Once
	close    sync.Once
	closeMu  sync.RWMutex
	closed   bool

	// mu guards groups: the committed state. Only the writer goroutine replaces entries, and
	// only after a commit; a group or node value, once published here, is never changed (the
	// writer edits copies), so readers may keep what they read.
	mu     sync.RWMutex
	groups map[string]*groupState
	// watermark is the newest cursor whose item is committed and whose state is applied: the
	// upper bound of every read, whatever the transport.
	watermark atomic.Int64
	// members counts the members each client joined in every group of the committed state
	// (the sum of the groups' clients), kept as groups are swapped in, so a join need not
	// visit every group to know a client's share. Only the writer goroutine uses it.
	members map[string]int

	// On a shared log (see follow.go): follower is the log as a stream.Follower, entries what
	// it delivers, pos the log position the state reflects (all three the writer's own), and
	// stopFollow stops the follower once the writer is done.
	follower   stream.Follower
	entries    <-chan stream.Entry
	pos        int64
	stopFollow context.CancelFunc
	// applied is the log position the published state reflects (appliedMu guards it), and
	// appliedCh is closed, and replaced, whenever it moves: Sync waits on it.
	appliedMu sync.Mutex
	applied   int64
	appliedCh chan struct{}
	// interest holds the groups whose items this instance follows on a shared log, and why
	// (follow.go); imu guards it.
	imu      sync.Mutex
	interest map[string]*interest
}

type groupState struct {
	Group
	// client created the group (WithClient); kept in memory only, so after a restart the
	// groups that survived count for nobody.
	client string
	// clients counts the members in nodes by the client that joined them (WithClient; those
	// without one, or loaded from the log, are not counted). Like nodes it is replaced, never
	// changed in place, once published.
	clients   map[string]int
	endedAt   time.Time
	endReason string
	// endCursor is the dissolve item's cursor.
	endCursor int64
	nodes     map[string]*nodeState
	// former holds the members at the dissolve, so their streams can still read the final
	// items (their records stay in the log until the group is forgotten).
	former map[string]*nodeState
}

type nodeState struct {
	Node
	// client joined the node (WithClient), "" when unknown; in memory only, as a group's.
	client    string
	tokenHash []byte
	// storedExp is the expiry in the node's stored record (activity may have moved
	// ExpiresAt on since, in memory only).
	storedExp time.Time
}

// New loads the state from the log. Call Start to begin accepting writes.
func New(ctx context.Context, store stream.Log, opts Options) (*Engine, error) {
	opts.defaults()
	st, err := store.Load(ctx)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	e := &Engine{
		opts: opts, log: opts.Logger, obs: opts.Observer, now: opts.Now, store: store,
		rate:       ratelimit.New(opts.Limits.PublishRate, int(2*opts.Limits.PublishRate)),
		createRate: ratelimit.New(opts.Limits.GroupCreateRate, opts.Limits.GroupCreateBurst),
		byteRate:   ratelimit.New(opts.Limits.NodeByteRate, int(NodeByteBurstSeconds*opts.Limits.NodeByteRate)),
		ops:        make(chan *op, 4096), purgeNow: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{}),
		groups:    make(map[string]*groupState, len(st.Groups)),
		members:   map[string]int{},
		appliedCh: make(chan struct{}),
		interest:  map[string]*interest{},
	}
	now := e.now()
	for _, r := range st.Groups {
		g := &groupState{Group: Group{
			ID: r.ID, Domain: r.Domain, Name: r.Name, Host: r.Host, CreatedAt: r.CreatedAt, ExpiresAt: r.ExpiresAt,
			// Clients could not send heartbeats while meshbox was down: give them a fresh period.
			HostSeenAt: maxTime(r.HostSeenAt, now), UseWebSocket: r.UseWebSocket, MeshV2: r.MeshV2,
		}, endedAt: r.EndedAt, endReason: r.EndReason, nodes: map[string]*nodeState{}}
		if !g.endedAt.IsZero() {
			g.endCursor = r.LastCursor
			g.former = map[string]*nodeState{}
		}
		e.groups[g.ID] = g
	}
	for _, r := range st.Nodes {
		g := e.groups[r.Group]
		if g == nil {
			continue
		}
		n := &nodeState{Node: Node{
			ID: r.ID, Group: r.Group, Name: r.Name, JoinedAt: r.JoinedAt, LastSeen: r.LastSeen,
			ExpiresAt: r.ExpiresAt, Data: r.Data, DataAt: r.DataAt, Host: r.ID == g.Host, MeshV2: r.MeshV2,
		}, tokenHash: r.TokenHash, storedExp: r.ExpiresAt}
		if g.former != nil {
			g.former[n.ID] = n
			continue
		}
		// Clients could not reach meshbox while it was down: give them a fresh period.
		n.ExpiresAt = maxTime(n.ExpiresAt, now.Add(e.ttl(n.Host)))
		g.nodes[n.ID] = n
	}
	for _, g := range e.groups {
		g.Nodes = len(g.nodes)
	}
	e.watermark.Store(st.Watermark)
	if f, ok := store.(stream.Follower); ok {
		e.follower, e.pos, e.applied = f, st.Position, st.Position
	}
	return e, nil
}

// Start starts the writer goroutine with the hooks to the live readers.
func (e *Engine) Start(h Hooks) {
	e.start.Do(func() {
		if h.OnCommit == nil {
			h.OnCommit = func([]stream.Item) {}
		}
		if h.Active == nil {
			h.Active = func(string, string) bool { return false }
		}
		if h.OnPurge == nil {
			h.OnPurge = func(int64) {}
		}
		e.hooks = h
		e.started = true
		e.stopFollow = func() {}
		if e.follower != nil {
			ctx, cancel := context.WithCancel(context.Background())
			e.entries, e.stopFollow = e.follower.Follow(ctx), cancel
		}
		go e.writeLoop()
	})
}

// Close finishes queued writes and stops the writer. It does not close the log.
func (e *Engine) Close() error {
	e.close.Do(func() {
		e.start.Do(func() {}) // an engine closed before Start never gets a writer
		e.closeMu.Lock()
		e.closed = true
		e.closeMu.Unlock()
		close(e.stop)
		if e.started {
			<-e.stopped
			e.stopFollow()
		}
	})
	return nil
}

// Watermark is the newest cursor readers may see: committed, with its state applied.
func (e *Engine) Watermark() int64 { return e.watermark.Load() }

// LastCursor is Watermark, for readers that think in cursors.
func (e *Engine) LastCursor() int64 { return e.watermark.Load() }

// Log is the log under the rules.
func (e *Engine) Log() stream.Log { return e.store }

// ttl is how long a node lives without activity: the host's lapse ends the group.
func (e *Engine) ttl(host bool) time.Duration {
	if host {
		return e.opts.HostTTL
	}
	return e.opts.MemberTTL
}

// op is one write request: fn runs on the writer against the batch's state.
type op struct {
	fn   func(t *tx) error
	err  error
	done chan error
}

// do runs fn in the writer's next batch and returns once that batch committed (nil, or fn's
// own error) or failed (the commit's error).
func (e *Engine) do(ctx context.Context, fn func(t *tx) error) error {
	err := e.doOnce(ctx, fn)
	if e.syncUnknown(ctx, err) {
		// The group or node may have been created through another instance a moment ago.
		err = e.doOnce(ctx, fn)
	}
	return err
}

func (e *Engine) doOnce(ctx context.Context, fn func(t *tx) error) error {
	o := &op{fn: fn, done: make(chan error, 1)}
	// The read lock keeps Close from stopping the writer between the check and the send, so
	// every queued op is run by the writer's final drain.
	e.closeMu.RLock()
	if e.closed {
		e.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case e.ops <- o:
		e.closeMu.RUnlock()
	case <-ctx.Done():
		e.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the op will run: wait for its outcome even if the caller gives up, so an
	// acknowledged write is never reported as failed and vice versa.
	return <-o.done
}

func (e *Engine) writeLoop() {
	defer close(e.stopped)
	batch := make([]*op, 0, maxBatchOps)
	var sweep <-chan time.Time // nil, never ready, unless the log is shared
	if e.follower != nil {
		tick := time.NewTicker(max(e.opts.FollowIdle/4, time.Millisecond))
		defer tick.Stop()
		sweep = tick.C
	}
	for {
		select {
		case <-sweep:
			e.sweepInterest()
		case o := <-e.ops:
			batch = e.runBatch(batch[:0], o)
		case en, ok := <-e.entries: // nil, never ready, unless the log is shared
			if !ok {
				e.entries = nil
				continue
			}
			e.followed(en)
		case <-e.stop:
			for {
				select {
				case o := <-e.ops:
					batch = e.runBatch(batch[:0], o)
				default:
					return
				}
			}
		}
	}
}

// runBatch runs first and whatever else is queued, within the batch bounds, as one commit.
func (e *Engine) runBatch(batch []*op, first *op) []*op {
	start := time.Now()
	defer func() { e.lastEnd = time.Now() }()
	t := e.newTx()
	run := func(o *op) {
		o.err = e.runOp(o, t)
		batch = append(batch, o)
	}
	run(first)
	// Group commit: once the queue is empty, yield the processor so that requests already
	// being decoded on other goroutines can join this batch before it commits. A commit costs
	// far more than an op, so under load batches grow and storage gets nearly free per
	// request. Only under load — the previous batch had company, or this op came right after
	// it: a lone writer's op (one publisher, ops far apart) would wait behind whatever else is
	// runnable, such as readers' flushes, for nobody. Yield again only while yielding brought
	// more ops.
	yields, yieldedAt := 0, 0
	if e.lastOps < 2 && start.Sub(e.lastEnd) > busyGap {
		yields = maxCommitYields
	}
fill:
	for t.fatal == nil && len(batch) < maxBatchOps && len(t.batch.Items) < e.opts.MaxBatchItems && t.bytes < e.opts.MaxBatchBytes {
		select {
		case o := <-e.ops:
			run(o)
		default:
			if yields >= maxCommitYields || (yields > 0 && len(batch) == yieldedAt) {
				break fill
			}
			yieldedAt = len(batch)
			yields++
			runtime.Gosched()
		}
	}
	e.lastOps = len(batch)
	err := e.commit(t)
	for attempt := 1; isConflict(err) && attempt <= maxConflictRetries; attempt++ {
		// Another instance changed what the batch was built on: catch up and run the same
		// requests again on the fresh state. Nothing of the batch was stored.
		if err = e.catchUpNow(false); err != nil {
			break
		}
		t = e.newTx()
		for _, o := range batch {
			o.err = e.runOp(o, t)
		}
		err = e.commit(t)
	}
	if err != nil {
		// Memory is as it was: the batch's edits were made on copies that are now dropped.
		if errors.Is(err, ErrStorageFull) {
			// The log reports the full state once when it begins; every writer is told.
			e.log.Debug("write batch refused: storage full", "ops", len(batch), "items", len(t.batch.Items))
			e.wakePurge()
		} else {
			e.log.Error("write batch failed", "ops", len(batch), "items", len(t.batch.Items), "err", err)
		}
		if e.follower != nil && t.batch.Last > 0 {
			// A part of the batch was stored after all: take it in as the log has it.
			if cerr := e.catchUpNow(false); cerr != nil {
				e.log.Error("catch up after a failed batch", "err", cerr)
			}
		}
		for _, o := range batch {
			if o.err == nil {
				o.err = fmt.Errorf("write failed, nothing was saved: %w", err)
			}
			o.done <- o.err
		}
		return batch
	}
	e.apply(t)
	if e.follower != nil {
		e.reached(e.pos)
	}
	items := t.batch.Items
	if len(items) > 0 {
		e.hooks.OnCommit(items)
		// Items of one kind come in runs (a publish's events): report each run, no map.
		for i := 0; i < len(items); {
			j := i + 1
			for j < len(items) && items[j].Kind == items[i].Kind {
				j++
			}
			e.obs.ObserveAppended(items[i].Kind, j-i)
			i = j
		}
	}
	e.obs.ObserveCommit(len(batch), len(items), time.Since(start))
	for _, o := range batch {
		o.done <- o.err
	}
	return batch
}

// commit hands the batch to the log (when it holds anything to store). On a shared log it
// names what the batch was built on, and once the log accepted it, applies everything the
// other instances committed before it, so the batch is applied in log order.
func (e *Engine) commit(t *tx) error {
	if t.fatal != nil {
		return t.fatal
	}
	if len(t.batch.Items) == 0 && len(t.batch.Changes) == 0 {
		return nil
	}
	if e.follower != nil {
		// The batch's items must come back through the follower (see catchUp below): their
		// groups are followed first.
		if !e.followWrites(t) {
			return fmt.Errorf("follow the batch's groups: %w", ErrClosed)
		}
		e.guard(t)
		t.groupItems()
	}
	if err := e.store.Append(context.Background(), &t.batch); err != nil {
		return err
	}
	if p, ok := e.store.(stream.PurgeAsker); ok && p.PurgeDue() {
		// Past the purge's high-water mark: make room now, from the groups holding the most,
		// rather than at the next tick, so a flood never takes the box to full.
		e.wakePurge()
	}
	if e.follower != nil {
		e.catchUp(t.batch.Last, true)
	}
	return nil
}

// runOp runs one op, turning a panic into a failure of the batch so a bug in one request never
// takes the writer, and with it the server, down.
func (e *Engine) runOp(o *op, t *tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
			if t.fatal == nil {
				t.fatal = err
			}
		}
	}()
	return o.fn(t)
}

// apply makes a committed batch visible: its groups replace the old ones and the watermark
// moves, under one lock, so no reader sees state and cursor disagree.
func (e *Engine) apply(t *tx) {
	for _, g := range t.groups {
		if g != nil && g.endItem > 0 {
			g.endCursor = t.cursor(g.endItem)
			g.endItem = 0
		}
	}
	var through int64
	if n := len(t.batch.Items); n > 0 {
		through = t.batch.Items[n-1].Cursor
	}
	e.swapIn(t.groups, through)
	for _, f := range t.after {
		f()
	}
}

// swapIn makes a batch's groups the committed ones (nil: forgotten) and moves the watermark to
// through (never back), under one lock, so no reader sees state and cursor disagree.
func (e *Engine) swapIn(groups map[string]*draft, through int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, g := range groups {
		var now map[string]int
		if g != nil {
			now = g.clients
		}
		if old := e.groups[id]; old != nil {
			e.countMembers(old.clients, -1)
		}
		e.countMembers(now, 1)
		if g == nil {
			delete(e.groups, id)
			continue
		}
		e.groups[id] = g.groupState
	}
	if through > 0 {
		e.watermark.Store(max(e.watermark.Load(), through))
	}
}

// countMembers adds a group's members per client, times sign, to the server's count.
func (e *Engine) countMembers(clients map[string]int, sign int) {
	for c, n := range clients {
		if e.members[c] += sign * n; e.members[c] <= 0 {
			delete(e.members, c)
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// ms is t as clients see it: UTC, millisecond precision.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond).UTC()
}
