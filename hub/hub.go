// Package hub serves committed stream items to live readers. It keeps a bounded in-memory tail
// of recent items per group with a wake-up signal, falls back to the store for readers behind
// the tail, and tracks which nodes have a stream open (presence). Readers hold only a cursor, so
// a slow reader costs no memory and never slows the others.
//
// A store shared with other instances applies only the groups followed here: a group's tail
// follows its group (Store.Follow) before its first reader reads, and lets it go (Unfollow)
// when the tail is dropped. The global feed (the dashboard's) holds the items this instance
// applied: those of the groups its clients use.
package hub

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"meshbox/rules"
	"meshbox/stream"
)

// Store is what the hub needs of the rules: the watermark, reads (bounded by it) for readers
// behind the tail, and following a group (rules.Engine.Follow): once Follow returned cursor c,
// every item of the group after c is handed to Publish, and those up to c are in the store.
type Store interface {
	ReadAfter(ctx context.Context, gid string, since int64, limit int) ([]stream.Item, bool, error)
	LastCursor() int64
	Follow(ctx context.Context, gid string) (int64, error)
	Unfollow(gid string)
}

// Options configure a Hub.
type Options struct {
	// TailItems and TailBytes bound the items kept in memory per group.
	TailItems int
	TailBytes int
	// GlobalItems and GlobalBytes bound the feed of all groups' items (for the dashboard).
	GlobalItems int
	GlobalBytes int
	// IdleTail is how long a group's tail is kept after its last reader left.
	IdleTail time.Duration
	// ActiveGrace is how long a node still counts as present after its last stream ended: a
	// long-poll reader has no request open between two polls, yet it is not silent.
	ActiveGrace time.Duration
	// Now returns the current time; tests may replace it.
	Now func() time.Time
	// MaxBatchBytes bounds the encoded items one read returns (at least one item), so a
	// reader far behind holds a bounded frame rather than thousands of large payloads.
	MaxBatchBytes int
	// FollowTimeout bounds how long a new reader of a group waits for the store to follow it
	// (default 10 s); a reader whose group could not be followed fails its reads.
	FollowTimeout time.Duration
}

// Hub fans committed items out to readers.
//
// Every long-poll request opens and closes a reader, so opening and closing take no lock
// shared by all groups for writing: the maps of groups are read under read locks, and each
// group's readers, presence and links have a lock of their own.
type Hub struct {
	store Store
	opts  Options

	// mu guards groups: Lock to add or drop a tail, RLock to use one (a tail has locks of its
	// own). Publish holds RLock, so a tail is never created in the middle of a batch.
	mu     sync.RWMutex
	groups map[string]*tail
	last   atomic.Int64 // the newest cursor handed to the hub; written by Publish only
	global *tail
	// epoch is the monotonic reference of the long-poll answer times kept in linkStats.
	epoch time.Time

	// pmu guards presence the same way: Lock to add or drop a group's entry, RLock to use one.
	pmu      sync.RWMutex
	presence map[string]*presence

	// wakes holds *[]func() buffers for Publish's wake-ups, returned once they ran: a group
	// of 1,000 readers would otherwise cost a 16 KiB slice per commit.
	wakes sync.Pool
}

// presence is one group's readers by node: which node has which streams open, when a node's
// last stream ended (for ActiveGrace), and each node's round-trip window (link.go), kept while
// the node is present and for ActiveGrace after.
type presence struct {
	mu         sync.Mutex
	open       map[string]int        // node → open streams
	transports map[nodeTransport]int // node and transport → open streams
	left       map[string]time.Time  // node → when its last stream ended
	links      map[string]*linkStats // node → window
}

// nodeTransport keys a node's streams over one transport. Entries are deleted when their
// count drops to zero and added again on the next poll, which a map does without allocating.
type nodeTransport struct{ node, transport string }

func newPresence() *presence {
	return &presence{open: map[string]int{}, transports: map[nodeTransport]int{},
		left: map[string]time.Time{}, links: map[string]*linkStats{}}
}

// empty reports whether p holds nothing worth keeping; p.mu is held.
func (p *presence) empty() bool {
	return len(p.open) == 0 && len(p.left) == 0 && len(p.links) == 0
}

// tail holds a group's most recent items. Readers take no lock: they load the tail's view,
// which nobody changes once it is stored; an append or a trim stores a new one. Items are never
// changed once appended, so readers may keep the slices a view gave them.
type tail struct {
	// mu serialises appends and trims (Lock) and guards wake; a waiter reads the view and
	// wake together under RLock, so it never misses the append that would wake it.
	mu sync.RWMutex
	v  atomic.Pointer[view]
	// bytes is the items' stream.Item.Size, total their encodings' lengths since the tail
	// was made (view.ends); mu guards both.
	bytes int
	total int64
	maxB  int
	// wake is made when a reader first waits (Wait, WaitAll) and closed and replaced by every
	// append from then on: the long-poll requests waiting on a group share one channel, and
	// appends to a group nobody ever waited on allocate nothing for it.
	wake chan struct{}
	max  int

	// subs counts the open readers, idleAt is when the count last dropped to zero (unix
	// nanoseconds). Subscribe adds under Hub.mu's read lock, so Run (which drops a tail with
	// none under the write lock) never drops a tail being subscribed to.
	subs   atomic.Int64
	idleAt atomic.Int64
	// smu guards notify, notifySubs and turn: the callbacks of readers that want a call
	// rather than a channel (WebSocket connections, which then need no goroutine while idle;
	// SSE streams' signals). A slice, with each Sub's index in it (Sub.notifyAt), so that
	// Publish copies the callbacks in one move rather than walking a map per reader, and
	// Close still removes one in constant time.
	smu        sync.Mutex
	notify     []func()
	notifySubs []*Sub // notifySubs[i] registered notify[i]
	// turn rotates where the wake-ups of each append start, so no reader is always the last
	// of a wave (a map's iteration order did that by chance).
	turn int
	// followed tells that the store follows the group for this tail (one Follow, undone by
	// Unfollow when the tail is dropped). It is set under Hub.mu's write lock.
	followed atomic.Bool
}

// view is what a tail holds at one moment. Every reader of a group reads every batch, so what
// a read needs besides the items is kept here once rather than worked out per reader: where
// each item's encoding ends (for MaxBatchBytes) and where the leave items are (for Batch.Gone).
type view struct {
	start int64 // every item of the group with cursor > start is in items
	// items are slim (stream.Item.Slim): a payload is held once, in the item's JSON.
	items []stream.Item
	// ends[i] is the length of every encoding appended to the tail through items[i]'s.
	ends []int64
	// leaves are the leave items among items, in cursor order: a node's reader must stop at
	// its own leave, and with them at hand a reader looks at the few in the range it reads,
	// not at every item of every batch.
	leaves []leave
}

// leave is a leave item the tail holds: where, whose, and why.
type leave struct {
	cursor int64
	node   string
	reason string
}

// leaveReason is a leave item's reason; an item from before reasons were recorded was a removal.
func leaveReason(it stream.Item) string {
	if it.Reason == "" {
		return stream.ReasonRemoved
	}
	return it.Reason
}

// New returns a hub whose tails start at the store's newest cursor. Connect Publish to the
// store's commit hook before the store starts writing.
func New(store Store, opts Options) *Hub {
	if opts.TailItems <= 0 {
		opts.TailItems = 4096
	}
	if opts.TailBytes <= 0 {
		opts.TailBytes = 2 << 20
	}
	if opts.GlobalItems <= 0 {
		opts.GlobalItems = 500
	}
	if opts.GlobalBytes <= 0 {
		opts.GlobalBytes = 1 << 20
	}
	if opts.IdleTail <= 0 {
		opts.IdleTail = 2 * time.Minute
	}
	if opts.ActiveGrace <= 0 {
		opts.ActiveGrace = 5 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = 256 << 10
	}
	if opts.FollowTimeout <= 0 {
		opts.FollowTimeout = 10 * time.Second
	}
	last := store.LastCursor()
	h := &Hub{
		store: store, opts: opts, groups: map[string]*tail{}, epoch: time.Now(),
		global:   newTail(last, opts.GlobalItems, opts.GlobalBytes),
		presence: map[string]*presence{},
	}
	h.last.Store(last)
	return h
}

func newTail(start int64, max, maxBytes int) *tail {
	t := &tail{max: max, maxB: maxBytes}
	t.v.Store(&view{start: start})
	return t
}

func (t *tail) append(items []stream.Item) {
	t.mu.Lock()
	v := *t.v.Load()
	for _, it := range items {
		it = it.Slim()
		t.total += int64(len(it.JSON))
		// Appending never changes what a reader's slice of the old view holds: a slice of
		// it ends where the old view ended.
		v.items = append(v.items, it)
		v.ends = append(v.ends, t.total)
		t.bytes += it.Size()
		if it.Kind == stream.KindLeave {
			v.leaves = append(v.leaves, leave{cursor: it.Cursor, node: it.Node, reason: leaveReason(it)})
		}
	}
	if len(v.items) > t.max || t.bytes > t.maxB {
		// Trim to three quarters of both bounds at once so trimming is rare; readers behind
		// go to the store.
		drop, bytes := 0, t.bytes
		for drop < len(v.items) && (len(v.items)-drop > t.max*3/4 || bytes > t.maxB*3/4) {
			bytes -= v.items[drop].Size()
			drop++
		}
		v.trim(drop, v.items[drop-1].Cursor)
		t.bytes = bytes
	}
	t.v.Store(&v)
	if t.wake != nil {
		close(t.wake)
		// The readers it woke are likely to wait again at once: have their channel ready,
		// so they need no write lock to make it.
		t.wake = make(chan struct{})
	}
	t.mu.Unlock()
}

// trim drops the first n items (and their leaves) and moves start to start. What is left is
// copied, so the memory of the dropped items is freed once no reader holds them.
func (v *view) trim(n int, start int64) {
	v.start = start
	v.items = append([]stream.Item(nil), v.items[n:]...)
	v.ends = append([]int64(nil), v.ends[n:]...)
	if k := sort.Search(len(v.leaves), func(k int) bool { return v.leaves[k].cursor > start }); k > 0 {
		v.leaves = append([]leave(nil), v.leaves[k:]...)
	}
}

// after returns up to limit items with cursor > since, and whether since is inside the tail.
func (t *tail) after(since int64, limit int) (items []stream.Item, inside bool) {
	return t.v.Load().after(since, limit, 0)
}

// after returns up to limit items with cursor > since whose encodings fit in maxBytes (at least
// one; no bound when maxBytes is 0), and whether since is inside the view.
func (v *view) after(since int64, limit, maxBytes int) (items []stream.Item, inside bool) {
	if since < v.start {
		return nil, false
	}
	i := v.index(since)
	end := min(len(v.items), i+limit)
	if maxBytes > 0 && end > i+1 {
		// The encodings of items[i:j] are ends[j-1]-base long.
		base := v.ends[i] - int64(len(v.items[i].JSON))
		if v.ends[end-1]-base > int64(maxBytes) {
			end = i + sort.Search(end-i, func(k int) bool { return v.ends[i+k]-base > int64(maxBytes) })
			end = max(end, i+1)
		}
	}
	return v.items[i:end:end], true
}

// index returns the index of the first item with cursor > since.
func (v *view) index(since int64) int {
	return sort.Search(len(v.items), func(i int) bool { return v.items[i].Cursor > since })
}

// leaveOf returns the cursor and reason of node's leave item among the view's items with
// cursor in (since, through], if there is one.
func (v *view) leaveOf(node string, since, through int64) (cursor int64, reason string, ok bool) {
	n := len(v.leaves)
	if n == 0 || v.leaves[n-1].cursor <= since {
		return 0, "", false // the usual case: no leave in the range, nothing to look at
	}
	for k := sort.Search(n, func(k int) bool { return v.leaves[k].cursor > since }); k < n && v.leaves[k].cursor <= through; k++ {
		if v.leaves[k].node == node {
			return v.leaves[k].cursor, v.leaves[k].reason, true
		}
	}
	return 0, "", false
}

// through returns the last up to limit items with cursor <= through, in cursor order.
func (t *tail) through(through int64, limit int) []stream.Item {
	v := t.v.Load()
	j := v.index(through)
	i := max(0, j-max(0, limit))
	return v.items[i:j:j]
}

// wakeAfter returns nil when there is something to read after since (an item, or since is
// behind the tail), otherwise the channel the next append closes.
func (t *tail) wakeAfter(since int64) <-chan struct{} {
	t.mu.RLock()
	ready := t.v.Load().ready(since)
	wake := t.wake
	t.mu.RUnlock()
	if ready {
		return nil
	}
	if wake != nil {
		return wake
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.v.Load().ready(since) {
		return nil
	}
	if t.wake == nil {
		t.wake = make(chan struct{})
	}
	return t.wake
}

// ready reports whether a reader at since has something to read: an item, or the store.
func (v *view) ready(since int64) bool {
	return since < v.start || (len(v.items) > 0 && v.items[len(v.items)-1].Cursor > since)
}

// head returns the cursor of the last item, or start when there is none.
func (v *view) head() int64 {
	if n := len(v.items); n > 0 {
		return v.items[n-1].Cursor
	}
	return v.start
}

// Publish hands a committed batch (in cursor order) to the readers. It never blocks on readers.
// One goroutine calls it (the rules' writer), batch after batch.
func (h *Hub) Publish(items []stream.Item) {
	if len(items) == 0 {
		return
	}
	wp, _ := h.wakes.Get().(*[]func())
	if wp == nil {
		wp = new([]func())
	}
	wake := (*wp)[:0]
	h.mu.RLock()
	// Items of one group are contiguous runs in most batches; append each run at once.
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].Group == items[i].Group {
			j++
		}
		if t := h.groups[items[i].Group]; t != nil {
			t.append(items[i:j:j])
			wake = t.wakeups(wake)
		}
		i = j
	}
	h.global.append(items)
	h.last.Store(items[len(items)-1].Cursor)
	h.mu.RUnlock()
	*wp = wake
	if len(wake) == 0 {
		h.wakes.Put(wp)
		return
	}
	// The items are in the tails already, so every read from now on finds them; the
	// wake-ups, one per reader, run off the writer so its next commit need not wait.
	go func() {
		for _, fn := range wake {
			fn()
		}
		clear(wake) // the buffer must not keep closed readers alive
		h.wakes.Put(wp)
	}()
}

// wakeups appends the readers' callbacks to wake, starting one further on each time.
func (t *tail) wakeups(wake []func()) []func() {
	t.smu.Lock()
	defer t.smu.Unlock()
	n := len(t.notify)
	if n == 0 {
		return wake
	}
	t.turn = (t.turn + 1) % n
	wake = slices.Grow(wake, n)
	wake = append(wake, t.notify[t.turn:]...)
	return append(wake, t.notify[:t.turn]...)
}

// Purged drops every in-memory item up to through, which the store has deleted: a reader
// whose cursor is older must go to the store and learn of the truncation there, exactly as if
// the tail had never held them.
func (h *Hub) Purged(through int64) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, t := range h.groups {
		t.dropThrough(through)
	}
	h.global.dropThrough(through)
}

func (t *tail) dropThrough(through int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dropLocked(through)
}

// dropLocked drops the items up to through and moves the start there, if it is ahead of the
// start; it reports whether it did. t.mu must be held.
func (t *tail) dropLocked(through int64) bool {
	v := *t.v.Load()
	if through <= v.start {
		return false
	}
	i := v.index(through)
	for _, it := range v.items[:i] {
		t.bytes -= it.Size()
	}
	v.trim(i, through)
	t.v.Store(&v)
	return true
}

// Batch is what one read returns.
type Batch struct {
	Items []stream.Item
	// Next is the cursor to read after next time.
	Next int64
	// Truncated reports that items after the cursor were purged: take a fresh snapshot.
	Truncated bool
	// Ended reports that the batch holds the group's dissolve item: the stream is over.
	Ended bool
	// Gone is the reason (removed, expired, left) of the reader's own node's leave item when
	// the batch holds it: the batch ends with that item, and the reader reads nothing after
	// it. Every transport ends its connection on it, so a node removed from its group stops
	// reading at once, whichever instance removed it (a followed leave comes through Publish
	// like any other item).
	Gone string
}

// Sub is one reader of one group: a stream, or one long-poll request. While it is open the
// node counts as present.
type Sub struct {
	h        *Hub
	t        *tail
	p        *presence
	link     *linkStats  // the node's round-trip window (nil for readers that are not a node)
	notified atomic.Bool // Notify was called
	// notifyAt is the index of the Sub's callback in its tail's notify, -1 when it has none
	// there; t.smu guards it.
	notifyAt  int
	group     string
	node      string
	transport string
	// owner is the node whose leave item ends the reader: the node itself, or the node a
	// reader that is not one was attributed to (EndAtLeaveOf).
	owner string
	// gone is the owner's leave, once a read reached it: later reads after it return nothing.
	gone atomic.Pointer[leaveMark]
	// unfollowed is why the store could not follow the group when the reader opened: its
	// reads fail with it (its client comes back, and the next reader tries again).
	unfollowed error

	closeOnce sync.Once
	sigOnce   sync.Once
	sig       chan struct{}
}

// Subscribe opens a reader of group gid for node nid over a transport. The first reader of a
// group the store does not follow yet waits until it does (a shared store's follower starts
// again: milliseconds), at most FollowTimeout.
func (h *Hub) Subscribe(gid, nid, transport string) *Sub {
	t := h.tailOf(gid)
	t.subs.Add(1)
	h.mu.RUnlock()
	var unfollowed error
	if !t.followed.Load() {
		unfollowed = h.follow(t, gid)
	}
	p := h.presenceOf(gid)
	p.mu.Lock()
	p.open[nid]++
	p.transports[nodeTransport{nid, transport}]++
	var link *linkStats
	if nid != "" {
		// The node's window stays while it is present (Run forgets only absent nodes), so
		// the reader may use it without the lock (Answered, PollGap).
		link = p.statsLocked(nid)
	}
	p.mu.Unlock()
	h.pmu.RUnlock()
	return &Sub{h: h, t: t, p: p, link: link, group: gid, node: nid, transport: transport, owner: nid, unfollowed: unfollowed, notifyAt: -1}
}

// follow has the store follow the tail's group, and moves the tail's start to the cursor
// Follow returned: items up to it never came through Publish (the store did not follow the
// group), so readers before it read them from the store. Readers opening at once may each
// call Follow; the first to finish keeps its follow, the others undo theirs. The caller
// counts among the tail's readers, so the tail is not dropped meanwhile.
func (h *Hub) follow(t *tail, gid string) error {
	ctx, cancel := context.WithTimeout(context.Background(), h.opts.FollowTimeout)
	defer cancel()
	from, err := h.store.Follow(ctx, gid)
	if err != nil {
		return fmt.Errorf("follow group %s: %w", gid, err)
	}
	h.mu.Lock()
	first := !t.followed.Load()
	if first {
		t.raiseStart(from)
		t.followed.Store(true)
	}
	h.mu.Unlock()
	if !first {
		h.store.Unfollow(gid)
	}
	return nil
}

// raiseStart moves the tail's start up to from (never back), dropping the items up to it, and
// wakes its waiters: those behind the new start read from the store.
func (t *tail) raiseStart(from int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.dropLocked(from) {
		return
	}
	if t.wake != nil {
		close(t.wake)
		t.wake = make(chan struct{})
	}
}

// leaveMark is where and why a reader's node left its group.
type leaveMark struct {
	cursor int64
	reason string
}

// EndAtLeaveOf makes node nid's leave item end the reader (see Batch.Gone), for a reader that
// is not a node's own but was attributed to one (a Mesh v2 subscription, which names no
// node). It does not make the reader count for nid's presence. Call it before the first Read.
func (s *Sub) EndAtLeaveOf(nid string) { s.owner = nid }

// tailOf returns the group's tail, created, with h.mu read-locked: the caller unlocks it once
// it counted itself as the tail's reader, so Run cannot drop the tail in between.
func (h *Hub) tailOf(gid string) *tail {
	h.mu.RLock()
	if t := h.groups[gid]; t != nil {
		return t
	}
	h.mu.RUnlock()
	h.mu.Lock()
	t := h.groups[gid]
	if t == nil {
		t = newTail(h.last.Load(), h.opts.TailItems, h.opts.TailBytes)
		h.groups[gid] = t
	}
	h.mu.Unlock()
	// Run drops only tails nobody reads, after IdleTail: this one is new, so it is still
	// there once read-locked again (and if it was dropped after all, take the new one).
	h.mu.RLock()
	if t2 := h.groups[gid]; t2 != nil {
		return t2
	}
	h.mu.RUnlock()
	return h.tailOf(gid)
}

// presenceOf returns the group's presence, created, with h.pmu read-locked (see tailOf).
func (h *Hub) presenceOf(gid string) *presence {
	h.pmu.RLock()
	if p := h.presence[gid]; p != nil {
		return p
	}
	h.pmu.RUnlock()
	h.pmu.Lock()
	if h.presence[gid] == nil {
		h.presence[gid] = newPresence()
	}
	h.pmu.Unlock()
	return h.presenceOf(gid)
}

// lookup returns the group's presence, or nil; its lock is held on return when it is not nil.
func (h *Hub) lookup(gid string) *presence {
	h.pmu.RLock()
	defer h.pmu.RUnlock()
	p := h.presence[gid]
	if p != nil {
		p.mu.Lock()
	}
	return p
}

// Notify has fn called after every append to the group's tail, until Close. fn runs on the
// hub's fan-out goroutine, so it must return at once (start a goroutine, set a flag). A Sub has
// one notification: Notify or Signal, not both.
func (s *Sub) Notify(fn func()) {
	t := s.t
	t.smu.Lock()
	defer t.smu.Unlock()
	s.notified.Store(true)
	if s.notifyAt >= 0 {
		t.notify[s.notifyAt] = fn
		return
	}
	s.notifyAt = len(t.notify)
	t.notify = append(t.notify, fn)
	t.notifySubs = append(t.notifySubs, s)
}

// unnotify removes the Sub's callback: the last one takes its place; t.smu is held.
func (s *Sub) unnotify() {
	t := s.t
	last := len(t.notify) - 1
	moved := t.notifySubs[last]
	t.notify[s.notifyAt], t.notifySubs[s.notifyAt] = t.notify[last], moved
	moved.notifyAt = s.notifyAt
	t.notify[last], t.notifySubs[last] = nil, nil
	t.notify, t.notifySubs = t.notify[:last], t.notifySubs[:last]
	s.notifyAt = -1
}

// Close ends the reader. It takes only the group's own locks: the Sub holds its tail and its
// presence, which are not dropped while it is open.
func (s *Sub) Close() {
	s.closeOnce.Do(func() {
		t := s.t
		if s.notified.Load() {
			t.smu.Lock()
			if s.notifyAt >= 0 {
				s.unnotify()
			}
			t.smu.Unlock()
		}
		if t.subs.Add(-1) == 0 {
			t.idleAt.Store(time.Now().UnixNano())
		}
		p := s.p
		p.mu.Lock()
		k := nodeTransport{s.node, s.transport}
		if p.transports[k]--; p.transports[k] <= 0 {
			delete(p.transports, k)
		}
		if p.open[s.node]--; p.open[s.node] <= 0 {
			delete(p.open, s.node)
			p.left[s.node] = s.h.opts.Now()
		}
		p.mu.Unlock()
	})
}

// Read returns up to limit items after since without waiting: from memory when since is inside
// the tail, otherwise from the store.
func (s *Sub) Read(ctx context.Context, since int64, limit int) (Batch, error) {
	if s.unfollowed != nil {
		return Batch{}, s.unfollowed
	}
	if since > s.h.store.LastCursor() {
		return Batch{}, fmt.Errorf("cursor %d: %w", since, rules.ErrCursorAhead)
	}
	b := Batch{Next: since}
	if g := s.gone.Load(); g != nil && since >= g.cursor {
		b.Gone = g.reason // nothing after its own leave, ever
		return b, nil
	}
	v := s.t.v.Load()
	items, inside := v.after(since, limit, s.h.opts.MaxBatchBytes)
	if !inside {
		last := s.h.store.LastCursor()
		var err error
		items, b.Truncated, err = s.h.store.ReadAfter(ctx, s.group, since, limit)
		if err != nil {
			return Batch{}, err
		}
		if len(items) == 0 {
			// Nothing of the group exists in (since, last]: skip ahead, so a reader told of
			// truncation is not told again.
			b.Next = max(since, last)
		}
		items = capBytes(items, s.h.opts.MaxBatchBytes)
	}
	b.Items = items
	if s.owner != "" && len(items) > 0 {
		if inside {
			b.Items, b.Gone = s.untilLeaveIn(v, since, items)
		} else {
			b.Items, b.Gone = s.untilLeave(items)
		}
	}
	items = b.Items
	if n := len(items); n > 0 {
		b.Next = items[n-1].Cursor
		b.Ended = items[n-1].Kind == stream.KindDissolve
	}
	return b, nil
}

// untilLeave cuts items after the owner's leave item, if they hold it, and returns its reason.
// It looks at every item: for items read from the store, which the tail's leaves do not cover.
func (s *Sub) untilLeave(items []stream.Item) ([]stream.Item, string) {
	for i, it := range items {
		if it.Kind == stream.KindLeave && it.Node == s.owner {
			return s.cut(items, i, leaveReason(it))
		}
	}
	return items, ""
}

// untilLeaveIn is untilLeave for items read from view v after since: it looks at the view's
// leaves in the range read, and at the items only when one of them is the owner's.
func (s *Sub) untilLeaveIn(v *view, since int64, items []stream.Item) ([]stream.Item, string) {
	cursor, reason, ok := v.leaveOf(s.owner, since, items[len(items)-1].Cursor)
	if !ok {
		return items, ""
	}
	i := sort.Search(len(items), func(i int) bool { return items[i].Cursor >= cursor })
	return s.cut(items, i, reason)
}

// cut ends items with the owner's leave item, items[i], and remembers it, so that no later
// read goes past it.
func (s *Sub) cut(items []stream.Item, i int, reason string) ([]stream.Item, string) {
	s.gone.Store(&leaveMark{cursor: items[i].Cursor, reason: reason})
	return items[: i+1 : i+1], reason
}

// Head returns the cursor of the group's last item handed to readers (the tail's start when it
// holds none): a reader whose cursor reached it has everything committed so far.
func (s *Sub) Head() int64 { return s.t.v.Load().head() }

// capBytes keeps the longest prefix of items whose encodings fit in max bytes (at least one).
func capBytes(items []stream.Item, max int) []stream.Item {
	n := 0
	for i, it := range items {
		n += len(it.JSON)
		if n > max && i > 0 {
			return items[:i:i]
		}
	}
	return items
}

// Wait blocks until an item after since is committed, or ctx ends. The readers waiting on a
// group share one channel, closed by the next append, so a wait costs the writer nothing per
// reader.
func (s *Sub) Wait(ctx context.Context, since int64) error {
	for {
		wake := s.t.wakeAfter(since)
		if wake == nil {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitFor is Wait for at most d, without a context of its own (a long-poll waits once per
// request): it reports whether an item after since came; false when d passed or ctx ended.
func (s *Sub) WaitFor(ctx context.Context, since int64, d time.Duration) bool {
	wake := s.t.wakeAfter(since)
	if wake == nil {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-wake:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
		if wake = s.t.wakeAfter(since); wake == nil {
			return true
		}
	}
}

// Signal returns a channel that gets a value after appends to the group's tail (several
// appends may give one value). Waiting on it costs the writer nothing: the hub's fan-out
// goroutine sends it. Read after receiving: the signal carries no items.
func (s *Sub) Signal() <-chan struct{} {
	s.sigOnce.Do(func() {
		s.sig = make(chan struct{}, 1)
		s.Notify(func() {
			select {
			case s.sig <- struct{}{}:
			default:
			}
		})
	})
	return s.sig
}

// ReadAll returns up to limit items of every group after since from the bounded global feed;
// truncated reports that older items were dropped from it. The dashboard uses it.
func (h *Hub) ReadAll(since int64, limit int) (items []stream.Item, next int64, truncated bool) {
	items, inside := h.global.after(since, limit)
	if !inside {
		items, _ = h.global.after(h.global.startCursor(), limit)
		truncated = true
	}
	next = since
	if len(items) > 0 {
		next = items[len(items)-1].Cursor
	}
	return items, next, truncated
}

// ReadAllThrough returns the newest items of every group with cursor <= through still in the
// bounded global feed, at most limit, in cursor order: what a dashboard opened mid-lesson shows
// of the activity before it (the live feed after through follows with ReadAll). The slice is
// shared with the feed and must not be changed.
func (h *Hub) ReadAllThrough(through int64, limit int) []stream.Item {
	return h.global.through(through, limit)
}

// WaitAll blocks until the global feed has an item after since, or ctx ends.
func (h *Hub) WaitAll(ctx context.Context, since int64) error {
	for {
		wake := h.global.wakeAfter(since)
		if wake == nil {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (t *tail) startCursor() int64 { return t.v.Load().start }

// Active reports whether a node has a stream open, or had one within ActiveGrace; the rules
// count that as activity.
func (h *Hub) Active(gid, nid string) bool {
	p := h.lookup(gid)
	if p == nil {
		return false
	}
	defer p.mu.Unlock()
	if p.open[nid] > 0 {
		return true
	}
	at, ok := p.left[nid]
	return ok && h.opts.Now().Sub(at) < h.opts.ActiveGrace
}

// Transports returns the transports each node of a group has open.
func (h *Hub) Transports(gid string) map[string][]string {
	out := map[string][]string{}
	p := h.lookup(gid)
	if p == nil {
		return out
	}
	for k := range p.transports {
		if k.node == "" {
			continue // readers that are not a node (Mesh v2 subscriptions)
		}
		out[k.node] = append(out[k.node], k.transport)
	}
	p.mu.Unlock()
	for _, tr := range out {
		sort.Strings(tr)
	}
	return out
}

// Run drops the tails of groups nobody has read for a while, and forgets nodes a grace period
// after their last stream ended, until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	tick := time.NewTicker(h.opts.IdleTail / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			h.pmu.Lock()
			for gid, p := range h.presence {
				p.mu.Lock()
				for nid, at := range p.left {
					if h.opts.Now().Sub(at) >= h.opts.ActiveGrace {
						delete(p.left, nid)
						if p.open[nid] == 0 {
							delete(p.links, nid)
						}
					}
				}
				if p.empty() {
					delete(h.presence, gid)
				}
				p.mu.Unlock()
			}
			h.pmu.Unlock()
			var unfollow []string
			h.mu.Lock()
			for gid, t := range h.groups {
				if t.subs.Load() == 0 && now.Sub(time.Unix(0, t.idleAt.Load())) > h.opts.IdleTail {
					delete(h.groups, gid)
					if t.followed.Load() {
						unfollow = append(unfollow, gid)
					}
				}
			}
			h.mu.Unlock()
			for _, gid := range unfollow {
				h.store.Unfollow(gid)
			}
		}
	}
}
