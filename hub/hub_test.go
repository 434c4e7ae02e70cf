package hub

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"meshbox/rules"
	"meshbox/rules/rulestest"
	"meshbox/stream"
	"meshbox/testclock"
)

// The hub is tested over a real store in a temporary SQLite file, connected the way app
// connects them: the store hands every commit to Publish and every purge to Purged, and asks
// Active about presence.

func newHub(t *testing.T, opts Options, ruleOpts rules.Options) (*rules.Engine, *Hub) {
	t.Helper()
	st := rulestest.Open(t, "", ruleOpts)
	h := New(st, opts)
	st.Start(rules.Hooks{OnCommit: h.Publish, Active: h.Active, OnPurge: h.Purged})
	return st, h
}

func newGroup(t *testing.T, st *rules.Engine, name string) rules.Joined {
	t.Helper()
	j, err := st.CreateGroup(context.Background(), rules.NewGroup{Domain: "test", Name: name})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// publish appends n events to j's group in one commit and returns their cursors.
func publish(t *testing.T, st *rules.Engine, j rules.Joined, n int) []int64 {
	t.Helper()
	evs := make([]rules.EventIn, n)
	for i := range evs {
		evs[i] = rules.EventIn{Name: fmt.Sprintf("e%d", i)}
	}
	cs, err := st.Publish(context.Background(), j.Group.ID, j.Node.ID, evs)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func cursors(items []stream.Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.Cursor
	}
	return out
}

// tailOf returns a group's tail as the hub holds it.
func tailOf(h *Hub, gid string) *tail {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.groups[gid]
}

// TestTailTrimKeepsStart publishes runs of items into two groups while one is read, and
// after every commit checks the tail against the store: it holds at most TailItems items
// and every item of the group after start, in order.
func TestTailTrimKeepsStart(t *testing.T) {
	const max = 8
	st, h := newHub(t, Options{TailItems: max}, rules.Options{})
	a, b := newGroup(t, st, "a"), newGroup(t, st, "b")
	sub := h.Subscribe(a.Group.ID, a.Node.ID, "ws")
	defer sub.Close()
	other := h.Subscribe(b.Group.ID, b.Node.ID, "ws")
	defer other.Close()
	ctx := context.Background()
	first := tailOf(h, a.Group.ID).startCursor()
	for round := range 40 {
		publish(t, st, a, 1+round%3)
		publish(t, st, b, 1+round%2)
		tl := tailOf(h, a.Group.ID)
		items, inside := tl.after(tl.startCursor(), 1<<20)
		if !inside {
			t.Fatalf("round %d: the tail's own start is not inside it", round)
		}
		if len(items) > max {
			t.Fatalf("round %d: the tail holds %d items, more than %d", round, len(items), max)
		}
		want, _, err := st.ReadAfter(ctx, a.Group.ID, tl.startCursor(), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cursors(items), cursors(want)) {
			t.Fatalf("round %d: tail after start %d holds %v, the store %v", round, tl.startCursor(), cursors(items), cursors(want))
		}
		for i, it := range items {
			if it.Group != a.Group.ID || string(it.JSON) != string(want[i].JSON) {
				t.Fatalf("round %d: tail item %d is %s, the store has %s", round, it.Cursor, it.JSON, want[i].JSON)
			}
		}
	}
	if tailOf(h, a.Group.ID).startCursor() == first {
		t.Fatal("the tail was never trimmed; the test proves nothing")
	}
}

// TestReadWalksFromStoreIntoTail reads a group from its very first item with a small limit:
// the first reads come from the store (behind the tail), the last from memory, and together
// they give every item once, in order. Items from memory share their encoding between readers.
func TestReadWalksFromStoreIntoTail(t *testing.T) {
	st, h := newHub(t, Options{TailItems: 4}, rules.Options{})
	j := newGroup(t, st, "walk")
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "sse")
	defer sub.Close()
	var want []int64
	for range 10 {
		want = append(want, publish(t, st, j, 2)...)
	}
	tl := tailOf(h, j.Group.ID)
	if _, inside := tl.after(j.Cursor, 1); inside {
		t.Fatalf("the tail (start %d) still holds the first items; the test proves nothing", tl.startCursor())
	}
	ctx := context.Background()
	var got []int64
	since := j.Cursor
	for len(got) < len(want) {
		b, err := sub.Read(ctx, since, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Items) == 0 || len(b.Items) > 3 || b.Truncated || b.Ended || b.Next != b.Items[len(b.Items)-1].Cursor {
			t.Fatalf("read after %d: %+v", since, b)
		}
		got = append(got, cursors(b.Items)...)
		since = b.Next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("read %v, want %v", got, want)
	}
	b, err := sub.Read(ctx, since, 3)
	if err != nil || len(b.Items) != 0 || b.Next != since {
		t.Fatalf("read at the end: %+v %v", b, err)
	}

	// Two readers of the tail get the very same bytes: items are encoded once.
	second := h.Subscribe(j.Group.ID, "other", "ws")
	defer second.Close()
	b1, _ := sub.Read(ctx, want[len(want)-2], 1)
	b2, _ := second.Read(ctx, want[len(want)-2], 1)
	if len(b1.Items) != 1 || len(b2.Items) != 1 || &b1.Items[0].JSON[0] != &b2.Items[0].JSON[0] {
		t.Fatal("two readers of the tail got separate copies of an item")
	}
}

// TestReadSkipsOtherGroupsActivity: a reader whose cursor is behind its group's tail only
// because other groups were busy gets no items, no truncation, and a Next it can wait after.
func TestReadSkipsOtherGroupsActivity(t *testing.T) {
	st, h := newHub(t, Options{}, rules.Options{})
	quiet, busy := newGroup(t, st, "quiet"), newGroup(t, st, "busy")
	publish(t, st, busy, 5)
	sub := h.Subscribe(quiet.Group.ID, quiet.Node.ID, "sse")
	defer sub.Close()
	b, err := sub.Read(context.Background(), quiet.Cursor, 10)
	if err != nil || len(b.Items) != 0 || b.Truncated || b.Next != st.LastCursor() {
		t.Fatalf("read: %+v %v, want nothing with next %d", b, err, st.LastCursor())
	}
	// Waiting after Next blocks until the group has something new.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := sub.Wait(ctx, b.Next); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait after next: %v, want it to block", err)
	}
}

// TestReadTruncated: a reader behind the retention is told, once, and moves on.
func TestReadTruncated(t *testing.T) {
	clk := testclock.New()
	st, h := newHub(t, Options{}, rules.Options{EventTTL: 20 * time.Millisecond, Now: clk.Now})
	j := newGroup(t, st, "old")
	cs := publish(t, st, j, 3)
	clk.Advance(50 * time.Millisecond)
	if _, err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "ws")
	defer sub.Close()
	b, err := sub.Read(context.Background(), j.Cursor, 10)
	if err != nil || !b.Truncated || len(b.Items) != 0 || b.Next < cs[2] {
		t.Fatalf("read behind the retention: %+v %v", b, err)
	}
	b, err = sub.Read(context.Background(), b.Next, 10)
	if err != nil || b.Truncated {
		t.Fatalf("read after the truncation notice: %+v %v", b, err)
	}
	fresh := publish(t, st, j, 1)
	b, err = sub.Read(context.Background(), b.Next, 10)
	if err != nil || b.Truncated || !slices.Equal(cursors(b.Items), fresh) {
		t.Fatalf("read of a fresh item: %+v %v", b, err)
	}
}

// TestPurgeDropsTailItems: items the store purged leave the tail too, so a reader open across
// the purge, with a cursor before them, learns of the truncation as a new reader would.
func TestPurgeDropsTailItems(t *testing.T) {
	clk := testclock.New()
	st, h := newHub(t, Options{}, rules.Options{EventTTL: 20 * time.Millisecond, Now: clk.Now})
	j := newGroup(t, st, "purge")
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "ws")
	defer sub.Close()
	cs := publish(t, st, j, 3)
	if b, err := sub.Read(context.Background(), j.Cursor, 10); err != nil || !slices.Equal(cursors(b.Items), cs) {
		t.Fatalf("read before the purge: %+v %v", b, err)
	}
	clk.Advance(50 * time.Millisecond)
	if _, err := st.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	tl := tailOf(h, j.Group.ID)
	if n := len(tl.v.Load().items); n != 0 {
		t.Fatalf("the tail still holds %d purged items", n)
	}
	b, err := sub.Read(context.Background(), j.Cursor, 10)
	if err != nil || !b.Truncated || len(b.Items) != 0 || b.Next < cs[2] {
		t.Fatalf("read after the purge: %+v %v, want truncated", b, err)
	}
}

func TestReadCursorAhead(t *testing.T) {
	st, h := newHub(t, Options{}, rules.Options{})
	j := newGroup(t, st, "ahead")
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "ws")
	defer sub.Close()
	if _, err := sub.Read(context.Background(), st.LastCursor()+1, 10); !errors.Is(err, rules.ErrCursorAhead) {
		t.Fatalf("read ahead of the stream: %v", err)
	}
}

// TestReadEnded: the batch holding the dissolve item says the stream is over.
func TestReadEnded(t *testing.T) {
	st, h := newHub(t, Options{}, rules.Options{})
	j := newGroup(t, st, "end")
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "ws")
	defer sub.Close()
	if err := st.Dissolve(context.Background(), j.Group.ID, stream.ReasonHost); err != nil {
		t.Fatal(err)
	}
	b, err := sub.Read(context.Background(), j.Cursor, 10)
	if err != nil || !b.Ended || len(b.Items) != 1 || b.Items[0].Kind != stream.KindDissolve {
		t.Fatalf("read of a dissolved group: %+v %v", b, err)
	}
}

// TestWait: Wait blocks until its group gets a newer item (not another group's), returns at
// once when there is something to read, and ends with its context.
func TestWait(t *testing.T) {
	st, h := newHub(t, Options{}, rules.Options{})
	a, b := newGroup(t, st, "a"), newGroup(t, st, "b")
	sub := h.Subscribe(a.Group.ID, a.Node.ID, "ws")
	defer sub.Close()
	since := st.LastCursor()
	woke := make(chan error, 1)
	go func() { woke <- sub.Wait(context.Background(), since) }()

	publish(t, st, b, 1)
	select {
	case err := <-woke:
		t.Fatalf("another group's item woke the reader: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	publish(t, st, a, 1)
	select {
	case err := <-woke:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a new item did not wake the reader")
	}

	// Something to read: no wait.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := sub.Wait(ctx, since); err != nil {
		t.Fatalf("wait with an item pending: %v", err)
	}
	// Nothing to read: the context ends the wait.
	ctx, cancel = context.WithCancel(context.Background())
	go cancel() // before or during the wait: either way the context ends it
	if err := sub.Wait(ctx, st.LastCursor()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
}

// TestPresence counts open streams per node and transport.
func TestPresence(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)}
	st, h := newHub(t, Options{Now: clk.Now, ActiveGrace: 5 * time.Second}, rules.Options{})
	j := newGroup(t, st, "p")
	gid, nid := j.Group.ID, j.Node.ID
	if h.Active(gid, nid) {
		t.Fatal("active before any stream")
	}
	ws1 := h.Subscribe(gid, nid, "ws")
	ws2 := h.Subscribe(gid, nid, "ws")
	sse := h.Subscribe(gid, nid, "sse")
	other := h.Subscribe(gid, "n2", "longpoll")
	if tr := h.Transports(gid); len(tr) != 2 || !slices.Equal(tr[nid], []string{"sse", "ws"}) || !slices.Equal(tr["n2"], []string{"longpoll"}) {
		t.Fatalf("transports: %v", tr)
	}
	ws1.Close()
	ws1.Close() // closing twice counts once
	if !slices.Equal(h.Transports(gid)[nid], []string{"sse", "ws"}) {
		t.Fatalf("after closing one of two WebSockets: %v", h.Transports(gid))
	}
	ws2.Close()
	sse.Close()
	if len(h.Transports(gid)[nid]) != 0 {
		t.Fatalf("transports after every stream closed: %v", h.Transports(gid))
	}
	// A long-poll reader has no request open between two polls: it stays present for the
	// grace period after its last stream ended, then not.
	if !h.Active(gid, nid) {
		t.Fatal("not active right after its last stream ended")
	}
	clk.Add(5 * time.Second)
	if h.Active(gid, nid) {
		t.Fatal("still active a grace period after every stream closed")
	}
	if !h.Active(gid, "n2") {
		t.Fatal("the other node lost its presence")
	}
	other.Close()
	p := h.lookup(gid)
	open, transports := len(p.open), len(p.transports)
	p.mu.Unlock()
	if open != 0 || transports != 0 {
		t.Fatalf("presence keeps %d nodes, %d transports with no streams", open, transports)
	}
}

// TestRunDropsIdleTails: a tail nobody reads is dropped after IdleTail; a read one is kept,
// and a new reader of a dropped group gets a fresh tail that still serves it from the store.
func TestRunDropsIdleTails(t *testing.T) {
	st, h := newHub(t, Options{IdleTail: 40 * time.Millisecond}, rules.Options{})
	idle, read := newGroup(t, st, "idle"), newGroup(t, st, "read")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	s := h.Subscribe(idle.Group.ID, idle.Node.ID, "ws")
	cs := publish(t, st, idle, 2)
	s.Close()
	keep := h.Subscribe(read.Group.ID, read.Node.ID, "ws")
	defer keep.Close()
	deadline := time.Now().Add(5 * time.Second)
	for tailOf(h, idle.Group.ID) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the idle tail was never dropped")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if tailOf(h, read.Group.ID) == nil {
		t.Fatal("a tail with a reader was dropped")
	}
	again := h.Subscribe(idle.Group.ID, idle.Node.ID, "ws")
	defer again.Close()
	b, err := again.Read(context.Background(), idle.Cursor, 10)
	if err != nil || !slices.Equal(cursors(b.Items), cs) {
		t.Fatalf("read after the tail was dropped: %+v %v, want %v", b, err, cs)
	}
}

// TestReadAll: the global feed keeps the newest GlobalItems items of all groups and says when
// a reader fell behind it.
func TestReadAll(t *testing.T) {
	st, h := newHub(t, Options{GlobalItems: 4}, rules.Options{})
	a, b := newGroup(t, st, "a"), newGroup(t, st, "b")
	since := st.LastCursor()
	ca := publish(t, st, a, 1)
	cb := publish(t, st, b, 1)
	items, next, truncated := h.ReadAll(since, 10)
	if truncated || !slices.Equal(cursors(items), []int64{ca[0], cb[0]}) || next != cb[0] {
		t.Fatalf("read all: %v next %d truncated %v", cursors(items), next, truncated)
	}
	for range 5 {
		publish(t, st, a, 2)
	}
	items, _, truncated = h.ReadAll(since, 100)
	if !truncated || len(items) == 0 || len(items) > 4 {
		t.Fatalf("read all behind the feed: %d items, truncated %v", len(items), truncated)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.WaitAll(ctx, st.LastCursor()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait all with nothing new: %v", err)
	}
}

// TestReadAllThrough: the newest items of the global feed up to a cursor, in cursor order,
// bounded by the limit and by what the feed still holds.
func TestReadAllThrough(t *testing.T) {
	st, h := newHub(t, Options{GlobalItems: 8}, rules.Options{})
	a, b := newGroup(t, st, "a"), newGroup(t, st, "b")
	ca := publish(t, st, a, 2)
	cb := publish(t, st, b, 2)
	if got := cursors(h.ReadAllThrough(cb[0], 3)); !slices.Equal(got, []int64{ca[0], ca[1], cb[0]}) {
		t.Fatalf("through %d, 3 items: %v", cb[0], got)
	}
	if got := cursors(h.ReadAllThrough(cb[1], 2)); !slices.Equal(got, []int64{cb[0], cb[1]}) {
		t.Fatalf("through the last, 2 items: %v", got)
	}
	if got := h.ReadAllThrough(0, 10); len(got) != 0 {
		t.Fatalf("through a cursor before every item: %v", cursors(got))
	}
	for range 10 {
		publish(t, st, a, 1)
	}
	if got := h.ReadAllThrough(st.LastCursor(), 100); len(got) == 0 || len(got) > 8 || got[len(got)-1].Cursor != st.LastCursor() {
		t.Fatalf("after the feed was trimmed: %v", cursors(got))
	}
}

// TestTailMemoryIsBoundedInBytes publishes 4,096 events of 16 KiB into one group that has a
// reader: the tail keeps within its byte budget (each payload held once, in the item's JSON),
// and the live heap grows by at most the budget plus a stated overhead (the database's page
// caches and the encoding buffers: 8 MiB), not by the 64 MiB the items weigh. Heap figures
// are read after a full collection, so they do not depend on timing.
func TestTailMemoryIsBoundedInBytes(t *testing.T) {
	const budget, overhead = 2 << 20, 8 << 20
	st, h := newHub(t, Options{TailBytes: budget}, rules.Options{HostTTL: time.Hour, MemberTTL: time.Hour,
		Limits: rules.Limits{PublishRate: 0, MaxEventsPerPublish: 64}})
	j := newGroup(t, st, "big")
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "sse")
	defer sub.Close()
	payload := strings.Repeat("x", 16<<10)
	runtime.GC()
	var m0, m1 runtime.MemStats
	runtime.ReadMemStats(&m0)
	for range 4096 / 64 {
		evs := make([]rules.EventIn, 64)
		for i := range evs {
			p := strings.Clone(payload)
			evs[i] = rules.EventIn{Name: "e", Payload: &p}
		}
		if _, err := st.Publish(context.Background(), j.Group.ID, j.Node.ID, evs); err != nil {
			t.Fatal(err)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&m1)
	tl := tailOf(h, j.Group.ID)
	tl.mu.RLock()
	items := tl.v.Load().items
	n, bytes := len(items), tl.bytes
	for _, it := range items {
		if it.Payload != nil || it.Data != nil {
			t.Fatal("a tail item holds its payload outside its JSON")
		}
	}
	tl.mu.RUnlock()
	grew := int64(m1.HeapAlloc) - int64(m0.HeapAlloc)
	t.Logf("tail holds %d items (%d KiB); live heap grew %d KiB", n, bytes>>10, grew>>10)
	if bytes > budget {
		t.Errorf("tail holds %d bytes, budget %d", bytes, budget)
	}
	if grew > budget+overhead {
		t.Errorf("live heap grew %d MiB with a %d MiB tail budget (+%d MiB overhead)", grew>>20, budget>>20, overhead>>20)
	}
	// The reader still gets every item in order, from the tail or from the database.
	var got int
	for since := j.Cursor; ; {
		b, err := sub.Read(context.Background(), since, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(b.Items) == 0 {
			break
		}
		for _, it := range b.Items {
			if it.Cursor <= since {
				t.Fatalf("cursor %d after %d", it.Cursor, since)
			}
			since = it.Cursor
			got++
		}
	}
	if got != 4096 {
		t.Fatalf("reader got %d items, want 4096", got)
	}
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestConcurrentPolls has many nodes of one group poll at once (subscribe, wait for the next
// item, note the answer, close) while items are published and Run sweeps: every poll is woken
// by an item after its cursor, and afterwards no node has a stream open, every node is still
// present (within ActiveGrace of its last poll) and no tail or presence was dropped from under
// a reader.
func TestConcurrentPolls(t *testing.T) {
	const pollers, polls = 16, 20
	st, h := newHub(t, Options{IdleTail: 4 * time.Millisecond, ActiveGrace: time.Hour}, rules.Options{})
	j := newGroup(t, st, "class")
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { h.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()

	var wg sync.WaitGroup
	errs := make(chan error, pollers)
	for i := range pollers {
		nid := "n" + strconv.Itoa(i)
		wg.Go(func() {
			since := st.LastCursor()
			for range polls {
				sub := h.Subscribe(j.Group.ID, nid, "longpoll")
				sub.PollGap(time.Now(), time.Minute)
				if !sub.WaitFor(ctx, since, time.Minute) {
					errs <- fmt.Errorf("%s: not woken after %d", nid, since)
					sub.Close()
					return
				}
				b, err := sub.Read(ctx, since, 100)
				if err != nil || len(b.Items) == 0 {
					errs <- fmt.Errorf("%s: read after %d: %d items, %v", nid, since, len(b.Items), err)
					sub.Close()
					return
				}
				since = b.Next
				sub.Answered(time.Now())
				sub.Close()
			}
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for running := true; running; {
		select {
		case <-done:
			running = false
		case err := <-errs:
			t.Fatal(err)
		default:
			publish(t, st, j, 1)
		}
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if tr := h.Transports(j.Group.ID); len(tr) != 0 {
		t.Fatalf("streams still open after every poll closed: %v", tr)
	}
	for i := range pollers {
		if nid := "n" + strconv.Itoa(i); !h.Active(j.Group.ID, nid) {
			t.Fatalf("%s is not present right after its last poll", nid)
		}
	}
}

// TestReadStopsAtOwnLeave (issue 22 row 10): a node's reader reads up to and including its
// own leave item, whatever its reason, and nothing after it, also when it reads again from
// there; a reader attributed to the node (EndAtLeaveOf) stops there too, while the group's
// other readers read on.
func TestReadStopsAtOwnLeave(t *testing.T) {
	st, h := newHub(t, Options{}, rules.Options{})
	ctx := context.Background()
	host := newGroup(t, st, "leave")
	gid := host.Group.ID
	m, err := st.Join(ctx, gid, rules.NewNode{Name: "member"})
	if err != nil {
		t.Fatal(err)
	}
	own := h.Subscribe(gid, m.Node.ID, "sse")
	defer own.Close()
	attributed := h.Subscribe(gid, "", "meshv2")
	attributed.EndAtLeaveOf(m.Node.ID)
	defer attributed.Close()
	other := h.Subscribe(gid, host.Node.ID, "ws")
	defer other.Close()

	before := publish(t, st, host, 1)
	if err := st.Leave(ctx, gid, m.Node.ID, stream.ReasonExpired); err != nil {
		t.Fatal(err)
	}
	after := publish(t, st, host, 2)

	for name, sub := range map[string]*Sub{"own": own, "attributed": attributed} {
		b, err := sub.Read(ctx, m.Cursor, 100)
		if err != nil || b.Gone != stream.ReasonExpired || len(b.Items) != 2 || b.Items[0].Cursor != before[0] ||
			b.Items[1].Kind != stream.KindLeave || b.Next != b.Items[1].Cursor {
			t.Fatalf("%s: %+v %v, want the event and the leave, gone expired", name, b, err)
		}
		again, err := sub.Read(ctx, b.Next, 100)
		if err != nil || again.Gone != stream.ReasonExpired || len(again.Items) != 0 {
			t.Fatalf("%s after its leave: %+v %v, want nothing and gone", name, again, err)
		}
	}
	b, err := other.Read(ctx, m.Cursor, 100)
	if err != nil || b.Gone != "" || len(b.Items) != 4 || b.Items[3].Cursor != after[1] {
		t.Fatalf("the host reads on: %+v %v", b, err)
	}
}

// TestReadStopsAtOwnLeaveWherever (issue 26): a node's reader stops exactly at its own leave
// item, past another node's leave, wherever the leave lies — in the tail, in the store behind
// it, beyond the items one read returns (a small limit or byte bound) — and every item up to it
// comes once, in order; a reader attributed to the other node stops at that node's leave; the
// host reads everything.
func TestReadStopsAtOwnLeaveWherever(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  Options
		where string // where the node's leave is once everything is committed: tail or store
		limit int
	}{
		{"tail", Options{}, "tail", 100},
		{"tail-limit-1", Options{}, "tail", 1},
		{"tail-limit-2", Options{}, "tail", 2},
		{"tail-one-item-per-read", Options{MaxBatchBytes: 1}, "tail", 100},
		{"store-into-tail", Options{TailItems: 8}, "tail", 3},
		{"store", Options{TailItems: 4}, "store", 100},
		{"store-limit-2", Options{TailItems: 4}, "store", 2},
		{"store-one-item-per-read", Options{TailItems: 4, MaxBatchBytes: 1}, "store", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, h := newHub(t, tc.opts, rules.Options{})
			ctx := context.Background()
			host := newGroup(t, st, "leaves")
			gid := host.Group.ID
			a, err := st.Join(ctx, gid, rules.NewNode{Name: "a"})
			if err != nil {
				t.Fatal(err)
			}
			own := h.Subscribe(gid, a.Node.ID, "ws")
			defer own.Close()
			all := h.Subscribe(gid, host.Node.ID, "ws")
			defer all.Close()
			b, err := st.Join(ctx, gid, rules.NewNode{Name: "b"})
			if err != nil {
				t.Fatal(err)
			}
			ofB := h.Subscribe(gid, "", "meshv2")
			ofB.EndAtLeaveOf(b.Node.ID)
			defer ofB.Close()
			publish(t, st, host, 3)
			if err := st.Leave(ctx, gid, b.Node.ID, stream.ReasonLeft); err != nil {
				t.Fatal(err)
			}
			publish(t, st, host, 2)
			if err := st.Leave(ctx, gid, a.Node.ID, stream.ReasonRemoved); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				publish(t, st, host, 1)
			}
			if tc.where == "store" {
				for range 3 {
					publish(t, st, host, 1)
				}
			}

			want, _, err := st.ReadAfter(ctx, gid, a.Cursor, 1000)
			if err != nil {
				t.Fatal(err)
			}
			leaveAt := func(nid string) int {
				for i, it := range want {
					if it.Kind == stream.KindLeave && it.Node == nid {
						return i
					}
				}
				t.Fatalf("no leave of %s in %v", nid, cursors(want))
				return 0
			}
			aLeave, bLeave := leaveAt(a.Node.ID), leaveAt(b.Node.ID)
			start := tailOf(h, gid).startCursor()
			inTail := want[aLeave].Cursor > start
			fromStore := tc.where == "store" || tc.name == "store-into-tail"
			if inTail != (tc.where == "tail") || fromStore != (start > a.Cursor) {
				t.Fatalf("the tail starts at %d, the leave is %d, the reader starts at %d: the test proves nothing",
					start, want[aLeave].Cursor, a.Cursor)
			}

			walk := func(sub *Sub) (got []int64, gone string) {
				since := a.Cursor
				for range 100 {
					bt, err := sub.Read(ctx, since, tc.limit)
					if err != nil {
						t.Fatal(err)
					}
					if tc.opts.MaxBatchBytes == 1 && len(bt.Items) > 1 {
						t.Fatalf("a read returned %d items over a 1-byte bound", len(bt.Items))
					}
					got = append(got, cursors(bt.Items)...)
					if bt.Gone != "" {
						again, err := sub.Read(ctx, bt.Next, tc.limit)
						if err != nil || again.Gone != bt.Gone || len(again.Items) != 0 {
							t.Fatalf("a read after the leave: %+v %v", again, err)
						}
						return got, bt.Gone
					}
					if len(bt.Items) == 0 {
						return got, ""
					}
					since = bt.Next
				}
				t.Fatal("the reader never caught up")
				return nil, ""
			}
			if got, gone := walk(own); gone != stream.ReasonRemoved || !slices.Equal(got, cursors(want[:aLeave+1])) {
				t.Fatalf("own reader: %v gone %q, want %v gone removed", got, gone, cursors(want[:aLeave+1]))
			}
			if got, gone := walk(ofB); gone != stream.ReasonLeft || !slices.Equal(got, cursors(want[:bLeave+1])) {
				t.Fatalf("reader attributed to b: %v gone %q, want %v gone left", got, gone, cursors(want[:bLeave+1]))
			}
			if got, gone := walk(all); gone != "" || !slices.Equal(got, cursors(want)) {
				t.Fatalf("host: %v gone %q, want %v", got, gone, cursors(want))
			}
		})
	}
}

// TestNotifyCallsOpenReaders: every reader that asked for a call gets one after each commit to
// its group, whichever other readers closed before (the first, one in the middle, the last);
// a reader that called Notify again gets only its new call; closed readers are out of the
// group's list.
func TestNotifyCallsOpenReaders(t *testing.T) {
	st, h := newHub(t, Options{}, rules.Options{})
	j := newGroup(t, st, "notify")
	const n = 10
	calls := make([]chan struct{}, n)
	subs := make([]*Sub, n)
	for i := range subs {
		calls[i] = make(chan struct{}, 16)
		subs[i] = h.Subscribe(j.Group.ID, "r"+strconv.Itoa(i), "ws")
		defer subs[i].Close()
		subs[i].Notify(func() { t.Errorf("reader %d: its first callback was replaced", i) })
		subs[i].Notify(func() { calls[i] <- struct{}{} })
	}
	closed := map[int]bool{0: true, 4: true, n - 1: true}
	for i := range closed {
		subs[i].Close()
	}
	for round := range 3 {
		publish(t, st, j, 1)
		for i := range subs {
			if !closed[i] {
				<-calls[i] // each open reader is called; a missing call hangs the test
			}
		}
		if round == 1 {
			subs[2].Close()
			closed[2] = true
		}
	}
	tl := tailOf(h, j.Group.ID)
	tl.smu.Lock()
	defer tl.smu.Unlock()
	if len(tl.notify) != n-len(closed) || len(tl.notifySubs) != len(tl.notify) {
		t.Fatalf("%d callbacks for %d open readers", len(tl.notify), n-len(closed))
	}
	for i, s := range subs {
		if closed[i] {
			if slices.Contains(tl.notifySubs, s) {
				t.Fatalf("closed reader %d is still called", i)
			}
		} else if tl.notifySubs[s.notifyAt] != s {
			t.Fatalf("reader %d is not where its index says", i)
		}
	}
}
