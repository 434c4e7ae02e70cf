// Package hub serves committed stream items to live readers. It keeps a bounded in-memory tail
// of recent items per group with a wake-up signal, falls back to the store for readers behind
// the tail, and tracks which nodes have a stream open (presence). Readers hold only a cursor, so
// a slow reader costs no memory and never slows the others.
package hub

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"meshbox/rules"
	"meshbox/stream"
)

// Store is what the hub needs of the rules: the watermark, and reads (bounded by it) for
// readers behind the tail.
type Store interface {
	ReadAfter(ctx context.Context, gid string, since int64, limit int) ([]stream.Item, bool, error)
	LastCursor() int64
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
}

// Hub fans committed items out to readers.
type Hub struct {
	store Store
	opts  Options

	mu     sync.Mutex // guards groups, last
	groups map[string]*tail
	last   int64 // the newest cursor handed to the hub
	global *tail

	pmu      sync.RWMutex
	presence map[string]map[string]map[string]int // group → node → transport → open streams
	// left holds when a node's last stream ended, for ActiveGrace.
	left map[string]map[string]time.Time // group → node → time

	lmu sync.Mutex
	// links holds each node's round-trip window (link.go), kept while the node is present
	// and for ActiveGrace after.
	links map[string]map[string]*linkStats // group → node → window
}

// tail holds a group's most recent items. Items are never changed once appended, so readers
// may keep the slices they were given after releasing the lock.
type tail struct {
	mu    sync.RWMutex
	start int64 // every item of the group with cursor > start is in items
	// items are slim (stream.Item.Slim): a payload is held once, in the item's JSON.
	items []stream.Item
	bytes int // the items' stream.Item.Size
	maxB  int
	// wake is closed and replaced on every append; only the global feed has one (group
	// readers are told through their signals), so group appends allocate nothing for it.
	wake   chan struct{}
	max    int
	subs   int       // guarded by Hub.mu
	idleAt time.Time // guarded by Hub.mu
	// notify holds the callbacks of readers that want a call rather than a channel (WebSocket
	// connections, which then need no goroutine while idle). Guarded by Hub.mu.
	notify map[*Sub]func()
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
	last := store.LastCursor()
	return &Hub{
		store: store, opts: opts, groups: map[string]*tail{}, last: last,
		global:   &tail{start: last, max: opts.GlobalItems, maxB: opts.GlobalBytes, wake: make(chan struct{})},
		presence: map[string]map[string]map[string]int{},
		left:     map[string]map[string]time.Time{},
		links:    map[string]map[string]*linkStats{},
	}
}

func newTail(start int64, max, maxBytes int) *tail {
	return &tail{start: start, max: max, maxB: maxBytes}
}

func (t *tail) append(items []stream.Item) {
	t.mu.Lock()
	for _, it := range items {
		it = it.Slim()
		t.items = append(t.items, it)
		t.bytes += it.Size()
	}
	if len(t.items) > t.max || t.bytes > t.maxB {
		// Trim to three quarters of both bounds at once so trimming is rare; readers behind
		// go to the store.
		drop, bytes := 0, t.bytes
		for drop < len(t.items) && (len(t.items)-drop > t.max*3/4 || bytes > t.maxB*3/4) {
			bytes -= t.items[drop].Size()
			drop++
		}
		t.start = t.items[drop-1].Cursor
		t.items = append([]stream.Item(nil), t.items[drop:]...)
		t.bytes = bytes
	}
	if t.wake != nil {
		close(t.wake)
		t.wake = make(chan struct{})
	}
	t.mu.Unlock()
}

// after returns up to limit items with cursor > since, whether since is inside the tail, and the
// channel closed by the next append.
func (t *tail) after(since int64, limit int) (items []stream.Item, inside bool, wake <-chan struct{}) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if since < t.start {
		return nil, false, t.wake
	}
	i := sort.Search(len(t.items), func(i int) bool { return t.items[i].Cursor > since })
	end := min(len(t.items), i+limit)
	return t.items[i:end:end], true, t.wake
}

// Publish hands a committed batch (in cursor order) to the readers. It never blocks on readers.
func (h *Hub) Publish(items []stream.Item) {
	if len(items) == 0 {
		return
	}
	var wake []func()
	h.mu.Lock()
	// Items of one group are contiguous runs in most batches; append each run at once.
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && items[j].Group == items[i].Group {
			j++
		}
		if t := h.groups[items[i].Group]; t != nil {
			t.append(items[i:j:j])
			for _, fn := range t.notify {
				wake = append(wake, fn)
			}
		}
		i = j
	}
	h.global.append(items)
	h.last = items[len(items)-1].Cursor
	h.mu.Unlock()
	if len(wake) > 0 {
		// The items are in the tails already, so every read from now on finds them; the
		// wake-ups, one per reader, run off the writer so its next commit need not wait.
		go func() {
			for _, fn := range wake {
				fn()
			}
		}()
	}
}

// Purged drops every in-memory item up to through, which the store has deleted: a reader
// whose cursor is older must go to the store and learn of the truncation there, exactly as if
// the tail had never held them.
func (h *Hub) Purged(through int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.groups {
		t.dropThrough(through)
	}
	h.global.dropThrough(through)
}

func (t *tail) dropThrough(through int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if through <= t.start {
		return
	}
	i := sort.Search(len(t.items), func(i int) bool { return t.items[i].Cursor > through })
	for _, it := range t.items[:i] {
		t.bytes -= it.Size()
	}
	t.items = append([]stream.Item(nil), t.items[i:]...)
	t.start = through
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
}

// Sub is one reader of one group: a stream, or one long-poll request. While it is open the
// node counts as present.
type Sub struct {
	h         *Hub
	t         *tail
	group     string
	node      string
	transport string
	closeOnce sync.Once
	sigOnce   sync.Once
	sig       chan struct{}
}

// Subscribe opens a reader of group gid for node nid over a transport.
func (h *Hub) Subscribe(gid, nid, transport string) *Sub {
	h.mu.Lock()
	t := h.groups[gid]
	if t == nil {
		t = newTail(h.last, h.opts.TailItems, h.opts.TailBytes)
		h.groups[gid] = t
	}
	t.subs++
	h.mu.Unlock()
	h.pmu.Lock()
	nodes := h.presence[gid]
	if nodes == nil {
		nodes = map[string]map[string]int{}
		h.presence[gid] = nodes
	}
	tr := nodes[nid]
	if tr == nil {
		tr = map[string]int{}
		nodes[nid] = tr
	}
	tr[transport]++
	h.pmu.Unlock()
	return &Sub{h: h, t: t, group: gid, node: nid, transport: transport}
}

// Notify has fn called after every append to the group's tail, until Close. fn runs on the
// hub's fan-out goroutine, so it must return at once (start a goroutine, set a flag). A Sub has
// one notification: Notify or Signal, not both.
func (s *Sub) Notify(fn func()) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	if s.t.notify == nil {
		s.t.notify = map[*Sub]func(){}
	}
	s.t.notify[s] = fn
}

// Close ends the reader.
func (s *Sub) Close() {
	s.closeOnce.Do(func() {
		h := s.h
		h.mu.Lock()
		delete(s.t.notify, s)
		s.t.subs--
		if s.t.subs == 0 {
			s.t.idleAt = time.Now()
		}
		h.mu.Unlock()
		h.pmu.Lock()
		if tr := h.presence[s.group][s.node]; tr != nil {
			if tr[s.transport]--; tr[s.transport] <= 0 {
				delete(tr, s.transport)
			}
			if len(tr) == 0 {
				delete(h.presence[s.group], s.node)
				if h.left[s.group] == nil {
					h.left[s.group] = map[string]time.Time{}
				}
				h.left[s.group][s.node] = h.opts.Now()
			}
			if len(h.presence[s.group]) == 0 {
				delete(h.presence, s.group)
			}
		}
		h.pmu.Unlock()
	})
}

// Read returns up to limit items after since without waiting: from memory when since is inside
// the tail, otherwise from the store.
func (s *Sub) Read(ctx context.Context, since int64, limit int) (Batch, error) {
	if since > s.h.store.LastCursor() {
		return Batch{}, fmt.Errorf("cursor %d: %w", since, rules.ErrCursorAhead)
	}
	b := Batch{Next: since}
	items, inside, _ := s.t.after(since, limit)
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
	}
	b.Items = capBytes(items, s.h.opts.MaxBatchBytes)
	items = b.Items
	if n := len(items); n > 0 {
		b.Next = items[n-1].Cursor
		b.Ended = items[n-1].Kind == stream.KindDissolve
	}
	return b, nil
}

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

// Wait blocks until an item after since is committed, or ctx ends.
func (s *Sub) Wait(ctx context.Context, since int64) error {
	sig := s.Signal()
	for {
		if items, inside, _ := s.t.after(since, 1); len(items) > 0 || !inside {
			return nil
		}
		select {
		case <-sig:
		case <-ctx.Done():
			return ctx.Err()
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
	items, inside, _ := h.global.after(since, limit)
	if !inside {
		items, _, _ = h.global.after(h.global.startCursor(), limit)
		truncated = true
	}
	next = since
	if len(items) > 0 {
		next = items[len(items)-1].Cursor
	}
	return items, next, truncated
}

// WaitAll blocks until the global feed has an item after since, or ctx ends.
func (h *Hub) WaitAll(ctx context.Context, since int64) error {
	for {
		items, inside, wake := h.global.after(since, 1)
		if len(items) > 0 || !inside {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (t *tail) startCursor() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.start
}

// Active reports whether a node has a stream open, or had one within ActiveGrace; the rules
// count that as activity.
func (h *Hub) Active(gid, nid string) bool {
	h.pmu.RLock()
	defer h.pmu.RUnlock()
	if len(h.presence[gid][nid]) > 0 {
		return true
	}
	at, ok := h.left[gid][nid]
	return ok && h.opts.Now().Sub(at) < h.opts.ActiveGrace
}

// Transports returns the transports each node of a group has open.
func (h *Hub) Transports(gid string) map[string][]string {
	h.pmu.RLock()
	defer h.pmu.RUnlock()
	out := map[string][]string{}
	for nid, tr := range h.presence[gid] {
		if nid == "" {
			continue // readers that are not a node (Mesh v2 subscriptions)
		}
		for name := range tr {
			out[nid] = append(out[nid], name)
		}
		sort.Strings(out[nid])
	}
	return out
}

// Run drops the tails of groups nobody has read for a while, until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	tick := time.NewTicker(h.opts.IdleTail / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			h.pmu.Lock()
			for gid, nodes := range h.left {
				for nid, at := range nodes {
					if h.opts.Now().Sub(at) >= h.opts.ActiveGrace {
						delete(nodes, nid)
						h.lmu.Lock()
						h.forgetLinkLocked(gid, nid)
						h.lmu.Unlock()
					}
				}
				if len(nodes) == 0 {
					delete(h.left, gid)
				}
			}
			h.pmu.Unlock()
			h.mu.Lock()
			for gid, t := range h.groups {
				if t.subs == 0 && now.Sub(t.idleAt) > h.opts.IdleTail {
					delete(h.groups, gid)
				}
			}
			h.mu.Unlock()
		}
	}
}
