package rules_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/rules"
	"meshbox/stream"
)

// Several engines over one JetStream stream are several meshbox instances sharing groups.

// seen records what an engine handed its live readers, in order.
type seen struct {
	mu    sync.Mutex
	items []stream.Item
}

func (s *seen) add(items []stream.Item) {
	s.mu.Lock()
	s.items = append(s.items, items...)
	s.mu.Unlock()
}

func (s *seen) of(gid string) []stream.Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []stream.Item
	for _, it := range s.items {
		if it.Group == gid {
			out = append(out, it)
		}
	}
	return out
}

// instance is one engine over the shared stream with what it handed its readers.
type instance struct {
	*rules.Engine
	seen *seen
}

var streams atomic.Int64

// instances starts n engines over one new stream of cluster c.
func instances(t *testing.T, c *natstest.Cluster, n int, o rules.Options) []instance {
	t.Helper()
	name := fmt.Sprintf("rules%d", streams.Add(1))
	var out []instance
	for range n {
		lg, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Stream: name, Subjects: name})
		if err != nil {
			t.Fatal(err)
		}
		e, err := rules.New(context.Background(), lg, o)
		if err != nil {
			t.Fatal(err)
		}
		s := &seen{}
		e.Start(rules.Hooks{OnCommit: s.add})
		t.Cleanup(func() {
			if err := errors.Join(e.Close(), lg.Close()); err != nil {
				t.Error(err)
			}
		})
		out = append(out, instance{e, s})
	}
	return out
}

// waitFor waits until ok holds: the instances apply what others wrote as it arrives.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling an observable condition
	}
}

// checkOrder checks that items are strictly increasing in cursor (each exactly once).
func checkOrder(t *testing.T, who string, items []stream.Item) {
	t.Helper()
	for i := 1; i < len(items); i++ {
		if items[i].Cursor <= items[i-1].Cursor {
			t.Fatalf("%s: item %d has cursor %d after %d", who, i, items[i].Cursor, items[i-1].Cursor)
		}
	}
}

func TestSharedStreamFollowsOtherInstances(t *testing.T) {
	t.Parallel()
	in := instances(t, natstest.Run(t), 3, rules.Options{})
	a, b, c := in[0], in[1], in[2]
	ctx := context.Background()
	host := mustCreateOn(t, a.Engine, rules.NewGroup{Domain: "d", Name: "class"})
	gid := host.Group.ID
	// B and C follow the group as their readers' tails do: from then on they hand their
	// readers every item of it; what came before is in the log.
	from := map[*rules.Engine]int64{}
	for _, x := range in[1:] {
		waitFor(t, "B and C to see the group", func() bool { _, err := x.Group(gid); return err == nil })
		c, err := x.Follow(ctx, gid)
		if err != nil {
			t.Fatal(err)
		}
		from[x.Engine] = c
	}
	member, err := b.Join(ctx, gid, rules.NewNode{Name: "pupil"})
	if err != nil {
		t.Fatalf("join on B: %v", err)
	}
	waitFor(t, "C to see the member", func() bool { _, err := c.Node(gid, member.Node.ID); return err == nil })
	// Writers on every instance at once: each instance hands its readers every item, in
	// cursor order, exactly once.
	var wg sync.WaitGroup
	for i, x := range in {
		nid := host.Node.ID
		if i == 1 {
			nid = member.Node.ID
		}
		if i == 2 {
			j, err := c.Join(ctx, gid, rules.NewNode{Name: "third"})
			if err != nil {
				t.Fatalf("join on C: %v", err)
			}
			nid = j.Node.ID
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 30 {
				if _, err := x.Publish(ctx, gid, nid, []rules.EventIn{{Name: fmt.Sprint(i, "-", k)}}); err != nil {
					t.Errorf("publish on %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	last := max(a.Watermark(), b.Watermark(), c.Watermark())
	for _, x := range in {
		waitFor(t, "every instance to reach the last cursor", func() bool { return x.Watermark() >= last })
	}
	want := a.seen.of(gid)
	if len(want) != 1+2+90 {
		t.Fatalf("A saw %d items, want 93 (2 joins after the host's, 90 events)", len(want))
	}
	for i, x := range in {
		got := x.seen.of(gid)
		checkOrder(t, fmt.Sprint("instance ", i), got)
		after := slices.DeleteFunc(slices.Clone(want), func(it stream.Item) bool { return it.Cursor <= from[x.Engine] })
		if len(got) != len(after) {
			t.Fatalf("instance %d saw %d items, A %d after %d", i, len(got), len(after), from[x.Engine])
		}
		for k := range got {
			if got[k].Cursor != after[k].Cursor || string(got[k].JSON) != string(after[k].JSON) {
				t.Fatalf("instance %d item %d = %s, A has %s", i, k, got[k].JSON, after[k].JSON)
			}
		}
		// What came before it followed the group is in the log: a read gets every item.
		read, _, err := x.ReadAfter(ctx, gid, 0, 1000)
		if err != nil || len(read) != len(want) {
			t.Fatalf("instance %d read %d items (%v), A saw %d", i, len(read), err, len(want))
		}
		g, err := x.Group(gid)
		if err != nil || g.Nodes != 3 {
			t.Fatalf("instance %d: group %+v, %v; want 3 nodes", i, g, err)
		}
	}
	// A dissolve on C ends the group everywhere.
	if err := c.Dissolve(ctx, gid, stream.ReasonHost); err != nil {
		t.Fatal(err)
	}
	for _, x := range in {
		waitFor(t, "the group to end everywhere", func() bool {
			_, err := x.Publish(ctx, gid, host.Node.ID, []rules.EventIn{{Name: "late"}})
			return errors.Is(err, rules.ErrGroupEnded)
		})
	}
}

func mustCreateOn(t *testing.T, e *rules.Engine, ng rules.NewGroup) rules.Joined {
	t.Helper()
	j, err := e.CreateGroup(context.Background(), ng)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return j
}

// Joins racing on two instances never put more nodes in a group than the limit, and
// creations racing in one domain never more groups in it.
func TestSharedStreamLimitsHoldAcrossInstances(t *testing.T) {
	t.Parallel()
	const nodes, groups = 5, 3
	in := instances(t, natstest.Run(t), 2, rules.Options{Limits: rules.Limits{MaxNodesPerGroup: nodes, MaxGroupsPerDomain: groups}})
	ctx := context.Background()
	host := mustCreateOn(t, in[0].Engine, rules.NewGroup{Domain: "d", Name: "class"})
	gid := host.Group.ID
	waitFor(t, "B to see the group", func() bool { _, err := in[1].Group(gid); return err == nil })
	var joined, full, created, domainFull atomic.Int64
	var wg sync.WaitGroup
	for _, x := range in {
		for range 10 {
			wg.Add(2)
			go func() {
				defer wg.Done()
				_, err := x.Join(ctx, gid, rules.NewNode{Name: "m"})
				switch {
				case err == nil:
					joined.Add(1)
				case errors.Is(err, rules.ErrGroupFull):
					full.Add(1)
				default:
					t.Errorf("join: %v", err)
				}
			}()
			go func() {
				defer wg.Done()
				_, err := x.CreateGroup(ctx, rules.NewGroup{Domain: "other", Name: "g"})
				switch {
				case err == nil:
					created.Add(1)
				case errors.Is(err, rules.ErrDomainFull):
					domainFull.Add(1)
				default:
					t.Errorf("create: %v", err)
				}
			}()
		}
	}
	wg.Wait()
	if joined.Load() != nodes-1 || full.Load() != 20-(nodes-1) {
		t.Fatalf("%d joins succeeded, %d refused as full; want %d and %d", joined.Load(), full.Load(), nodes-1, 20-(nodes-1))
	}
	if created.Load() != groups || domainFull.Load() != 20-groups {
		t.Fatalf("%d creations succeeded, %d refused; want %d and %d", created.Load(), domainFull.Load(), groups, 20-groups)
	}
	for i, x := range in {
		waitFor(t, "both instances to agree", func() bool {
			g, err := x.Group(gid)
			return err == nil && g.Nodes == nodes && len(x.Groups("other")) == groups
		})
		_ = i
	}
}

// A Mesh v2 host creating its group on two instances at once gets one group.
func TestSharedStreamMeshV2CreateIsIdempotent(t *testing.T) {
	t.Parallel()
	in := instances(t, natstest.Run(t), 2, rules.Options{})
	ctx := context.Background()
	for round := range 5 {
		ids := make([]string, 2)
		var wg sync.WaitGroup
		for i, x := range in {
			wg.Add(1)
			go func() {
				defer wg.Done()
				j, err := x.CreateGroup(ctx, rules.NewGroup{Domain: "mesh", Name: "g", HostID: fmt.Sprint("host-", round), HostName: "h", MeshV2Host: true})
				if err != nil {
					t.Errorf("create on %d: %v", i, err)
					return
				}
				ids[i] = j.Group.ID
			}()
		}
		wg.Wait()
		if ids[0] == "" || ids[0] != ids[1] {
			t.Fatalf("round %d: the same host got groups %q and %q", round, ids[0], ids[1])
		}
	}
}

// A node's publish rate holds across instances: publishes it made through A count on B once B
// has followed them, so spreading requests over instances gains it nothing.
func TestSharedStreamPublishRateHoldsAcrossInstances(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC) // frozen: no token refills
	in := instances(t, natstest.Run(t), 2, rules.Options{Now: func() time.Time { return now },
		Limits: rules.Limits{PublishRate: 1}}) // a burst of two
	ctx := context.Background()
	host := mustCreateOn(t, in[0].Engine, rules.NewGroup{Domain: "d", Name: "class"})
	gid, nid := host.Group.ID, host.Node.ID
	waitFor(t, "B to see the group", func() bool { _, err := in[1].Group(gid); return err == nil })
	// B serves the class too: a member joins through it, so B follows the group's items (an
	// instance charges the items of the groups it follows, and writing follows a group).
	other, err := in[1].Join(ctx, gid, rules.NewNode{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	// The burst on A: one publish of three events, then a data change.
	if _, err := in[0].Publish(ctx, gid, nid, []rules.EventIn{{Name: "a"}, {Name: "b"}, {Name: "c"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := in[0].SetData(ctx, gid, nid, map[string]string{"x": "1"}, false); err != nil {
		t.Fatal(err)
	}
	if _, err := in[0].Publish(ctx, gid, nid, []rules.EventIn{{Name: "d"}}); !errors.Is(err, rules.ErrRateLimited) {
		t.Fatalf("a third request on A: %v, want rate limited", err)
	}
	waitFor(t, "B to follow A's publish and data change", func() bool {
		items := in[1].seen.of(gid)
		return len(items) > 0 && items[len(items)-1].Kind == stream.KindData
	})
	// The publish of three events counts once, like on A: two charges empty the burst of two,
	// so the next event is a second away (three per event would make it three).
	var limited *rules.RateLimitError
	_, err = in[1].Publish(ctx, gid, nid, []rules.EventIn{{Name: "e"}})
	if !errors.As(err, &limited) || limited.RetryAfter != time.Second {
		t.Fatalf("the same node on B after its burst on A: %v (%+v), want rate limited for 1s", err, limited)
	}
	// Another node of the group is not charged for it.
	if _, err := in[1].Publish(ctx, gid, other.Node.ID, []rules.EventIn{{Name: "f"}}); err != nil {
		t.Fatalf("another node on B: %v", err)
	}
}

// heldLog is a shared log whose follower the test can hold back, as a stream electing a new
// leader holds a real one.
type heldLog struct {
	*jetstream.Log
	gate atomic.Pointer[chan struct{}] // set: the follower delivers nothing more until it closes
}

// hold stops the follower; the function returned lets it go on.
func (h *heldLog) hold() (release func()) {
	ch := make(chan struct{})
	h.gate.Store(&ch)
	return func() { close(ch) }
}

func (h *heldLog) Follow(ctx context.Context) <-chan stream.Entry {
	in := h.Log.Follow(ctx)
	out := make(chan stream.Entry)
	go func() {
		defer close(out)
		for en := range in {
			if g := h.gate.Load(); g != nil {
				<-*g
			}
			select {
			case out <- en:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out
}

// logged signals each time a record with message msg is logged.
type logged struct {
	slog.Handler
	msg  string
	seen chan struct{}
}

func (l logged) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == l.msg {
		select {
		case l.seen <- struct{}{}:
		default:
		}
	}
	return nil
}
func (l logged) Enabled(context.Context, slog.Level) bool { return true }
func (l logged) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l logged) WithGroup(string) slog.Handler            { return l }

// An instance whose follower is held back longer than CatchUpTimeout still hands its readers
// the other instances' items that precede its own batch first: it waits for the follower
// rather than going on without it, which would put its readers past items they never got.
func TestOwnBatchWaitsForASlowFollower(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	name := fmt.Sprintf("rules%d", streams.Add(1))
	open := func(o rules.Options) (*rules.Engine, *heldLog, *seen) {
		lg, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Stream: name, Subjects: name})
		if err != nil {
			t.Fatal(err)
		}
		h := &heldLog{Log: lg}
		e, err := rules.New(context.Background(), h, o)
		if err != nil {
			t.Fatal(err)
		}
		s := &seen{}
		e.Start(rules.Hooks{OnCommit: s.add})
		t.Cleanup(func() { e.Close(); lg.Close() })
		return e, h, s
	}
	a, _, _ := open(rules.Options{})
	behind := logged{msg: "the log's follower is behind; writes wait for it", seen: make(chan struct{}, 1)}
	b, held, seenB := open(rules.Options{CatchUpTimeout: 20 * time.Millisecond, Logger: slog.New(behind)})
	host := mustCreateOn(t, a, rules.NewGroup{Domain: "d", Name: "class"})
	gid := host.Group.ID
	waitFor(t, "B to see the group", func() bool { _, err := b.Group(gid); return err == nil })
	j, err := b.Join(context.Background(), gid, rules.NewNode{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A to see the member", func() bool { g, err := a.Group(gid); return err == nil && g.Nodes == 2 })

	release := held.hold() // B's follower stops here
	// A "behind" logged before now (while B joined) is not the one this test waits for.
	select {
	case <-behind.seen:
	default:
	}
	if _, err := a.Publish(context.Background(), gid, host.Node.ID, []rules.EventIn{{Name: "from A"}}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Publish(context.Background(), gid, j.Node.ID, []rules.EventIn{{Name: "from B"}})
		done <- err
	}()
	<-behind.seen // B's batch is stored and B waits for its follower, past CatchUpTimeout
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var names []string
	var last int64
	for _, it := range seenB.of(gid) {
		if it.Cursor <= last {
			t.Fatalf("B handed its readers cursor %d after %d", it.Cursor, last)
		}
		last = it.Cursor
		if it.Kind == stream.KindEvent {
			names = append(names, it.Name)
		}
	}
	if want := []string{"from A", "from B"}; !slices.Equal(names, want) {
		t.Fatalf("B handed its readers %v, want %v", names, want)
	}
}

// Requests to several groups that end up in one batch are stored group by group (one frame per
// group), and each request is still told the cursor of its own items; a second instance hands
// its readers every item once, in cursor order, each group's in the order it was written.
func TestSharedStreamInterleavedGroupsKeepTheirCursors(t *testing.T) {
	t.Parallel()
	in := instances(t, natstest.Run(t), 2, rules.Options{})
	a, b := in[0], in[1]
	ctx := context.Background()
	var classes []rules.Joined
	for i := range 4 {
		j := mustCreateOn(t, a.Engine, rules.NewGroup{Domain: "d", Name: fmt.Sprint("class", i)})
		classes = append(classes, j)
		// B has readers of every class: it follows them.
		waitFor(t, "B to see the class", func() bool { _, err := b.Group(j.Group.ID); return err == nil })
		if _, err := b.Follow(ctx, j.Group.ID); err != nil {
			t.Fatal(err)
		}
	}
	type sent struct {
		gid, name string
		cursor    int64
	}
	var mu sync.Mutex
	var all []sent
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := classes[w%len(classes)]
			for i := range 20 {
				name := fmt.Sprintf("w%d-%d", w, i)
				cs, err := a.Publish(ctx, j.Group.ID, j.Node.ID, []rules.EventIn{{Name: name}, {Name: name + "b"}})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				all = append(all, sent{j.Group.ID, name, cs[0]}, sent{j.Group.ID, name + "b", cs[1]})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, s := range all {
		items, _, err := a.ReadAfter(ctx, s.gid, s.cursor-1, 1)
		if err != nil || len(items) != 1 || items[0].Name != s.name || items[0].Cursor != s.cursor {
			t.Fatalf("publish %s of %s told cursor %d; the log holds %+v there (%v)", s.name, s.gid, s.cursor, items, err)
		}
	}
	for _, j := range classes {
		gid := j.Group.ID
		var want []string
		for _, s := range all {
			if s.gid == gid {
				want = append(want, s.name)
			}
		}
		events := func() []stream.Item {
			var out []stream.Item
			for _, it := range b.seen.of(gid) {
				if it.Kind == stream.KindEvent {
					out = append(out, it)
				}
			}
			return out
		}
		waitFor(t, "B to hand its readers every item of "+gid, func() bool { return len(events()) >= len(want) })
		got := events()
		checkOrder(t, "B "+gid, got)
		if len(got) != len(want) {
			t.Fatalf("B handed %d items of %s, %d were written", len(got), gid, len(want))
		}
		// Each writer's items in the order it wrote them.
		last := map[string]int64{}
		for _, it := range got {
			w, _, _ := strings.Cut(it.Name, "-")
			if it.Cursor <= last[w] {
				t.Fatalf("B handed %s at %d after an item of the same writer at %d", it.Name, it.Cursor, last[w])
			}
			last[w] = it.Cursor
		}
	}
	checkOrder(t, "A", a.seen.items)
	checkOrder(t, "B", b.seen.items)
}

// An instance applies the items of the groups its clients use only: those a reader here
// follows (Follow, as the hub's tails do) and those it wrote or read within FollowIdle. Of
// every other group it applies the records (it knows the group and its members) and none of
// the items, which a read through it still finds in the log.
func TestInstanceFollowsOnlyGroupsItUses(t *testing.T) {
	t.Parallel()
	in := instances(t, natstest.Run(t), 2, rules.Options{FollowIdle: 20 * time.Millisecond})
	a, b := in[0], in[1]
	ctx := context.Background()
	read := mustCreateOn(t, a.Engine, rules.NewGroup{Domain: "d", Name: "read"})
	quiet := mustCreateOn(t, a.Engine, rules.NewGroup{Domain: "d", Name: "quiet"})
	waitFor(t, "B to see the groups", func() bool {
		_, err1 := b.Group(read.Group.ID)
		_, err2 := b.Group(quiet.Group.ID)
		return err1 == nil && err2 == nil
	})
	if _, err := b.Follow(ctx, read.Group.ID); err != nil {
		t.Fatal(err)
	}
	publishOn := func(x instance, j rules.Joined, names ...string) {
		t.Helper()
		for _, n := range names {
			if _, err := x.Publish(ctx, j.Group.ID, j.Node.ID, []rules.EventIn{{Name: n}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publishOn(a, read, "r1", "r2", "r3")
	publishOn(a, quiet, "q1", "q2", "q3")
	if err := b.Sync(ctx); err != nil { // B applied everything A committed
		t.Fatal(err)
	}
	if got := eventNames(b.seen.of(read.Group.ID)); !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Fatalf("B handed its readers %v of the group it follows", got)
	}
	if got := b.seen.of(quiet.Group.ID); len(got) != 0 {
		t.Fatalf("B applied %d items of a group nobody reads or writes there", len(got))
	}
	if n := b.Followed(); n != 1 {
		t.Fatalf("B follows %d groups, want 1", n)
	}

	// A read through B finds the quiet group's items in the log (and follows it a moment).
	items, _, err := b.ReadAfter(ctx, quiet.Group.ID, 0, 100)
	if err != nil || !slices.Equal(eventNames(items), []string{"q1", "q2", "q3"}) {
		t.Fatalf("read of the quiet group through B: %v %v", eventNames(items), err)
	}
	waitFor(t, "B to let the read group go after FollowIdle", func() bool { return b.Followed() == 1 })

	// A write through B follows the group first: the batch is committed (it waits for its own
	// messages, which B's follower delivers only for groups it follows) and B's readers get it.
	m, err := b.Join(ctx, quiet.Group.ID, rules.NewNode{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.seen.of(quiet.Group.ID); len(got) != 1 || got[0].Kind != stream.KindJoin || got[0].Node != m.Node.ID {
		t.Fatalf("B handed its readers %+v of its own join", got)
	}

	// Nobody reads or writes either group on B any more: B stops applying their items.
	b.Unfollow(read.Group.ID)
	waitFor(t, "B to let both groups go", func() bool { return b.Followed() == 0 })
	// Following another group starts B's follower again, without the two.
	third := mustCreateOn(t, a.Engine, rules.NewGroup{Domain: "d", Name: "third"})
	waitFor(t, "B to see the third group", func() bool { _, err := b.Group(third.Group.ID); return err == nil })
	if _, err := b.Follow(ctx, third.Group.ID); err != nil {
		t.Fatal(err)
	}
	seenRead, seenQuiet := len(b.seen.of(read.Group.ID)), len(b.seen.of(quiet.Group.ID))
	publishOn(a, read, "late")
	publishOn(a, quiet, "late")
	publishOn(a, third, "t1")
	if err := b.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if len(b.seen.of(read.Group.ID)) != seenRead || len(b.seen.of(quiet.Group.ID)) != seenQuiet {
		t.Fatalf("B applied items of groups it let go: %v, %v", eventNames(b.seen.of(read.Group.ID)), eventNames(b.seen.of(quiet.Group.ID)))
	}
	if got := eventNames(b.seen.of(third.Group.ID)); !slices.Equal(got, []string{"t1"}) {
		t.Fatalf("B handed its readers %v of the third group", got)
	}
}

// lostAckLog stores the next batch but reports it failed, as a shared log whose batch failed
// after a part of it was stored (b.Last set).
type lostAckLog struct {
	*jetstream.Log
	lose atomic.Bool
}

func (l *lostAckLog) Append(ctx context.Context, b *stream.Batch) error {
	if err := l.Log.Append(ctx, b); err != nil || !l.lose.CompareAndSwap(true, false) {
		return err
	}
	return errors.New("connection lost after the first part")
}

// A batch that failed after a part of it was stored is taken in as the log holds it: the
// writer applies its own stored messages from the follower (decoding them then, which it skips
// for the batches it committed), so this instance's readers get the items once, in order, and
// its watermark covers them, like another instance's.
func TestPartlyStoredBatchIsTakenInFromTheLog(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	name := fmt.Sprintf("rules%d", streams.Add(1))
	lg, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Stream: name, Subjects: name})
	if err != nil {
		t.Fatal(err)
	}
	l := &lostAckLog{Log: lg}
	e, err := rules.New(context.Background(), l, rules.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := &seen{}
	e.Start(rules.Hooks{OnCommit: s.add})
	t.Cleanup(func() { e.Close(); lg.Close() })
	ctx := context.Background()
	host := mustCreateOn(t, e, rules.NewGroup{Domain: "d", Name: "class"})
	gid := host.Group.ID
	if _, err := e.Publish(ctx, gid, host.Node.ID, []rules.EventIn{{Name: "before"}}); err != nil {
		t.Fatal(err)
	}
	l.lose.Store(true)
	if _, err := e.Publish(ctx, gid, host.Node.ID, []rules.EventIn{{Name: "stored"}, {Name: "too"}}); err == nil {
		t.Fatal("a publish whose batch failed was acknowledged")
	}
	if _, err := e.Publish(ctx, gid, host.Node.ID, []rules.EventIn{{Name: "after"}}); err != nil {
		t.Fatal(err)
	}
	got := eventNames(s.of(gid))
	if !slices.Equal(got, []string{"before", "stored", "too", "after"}) {
		t.Fatalf("readers were handed %v", got)
	}
	checkOrder(t, "readers", s.of(gid))
	items := s.of(gid)
	if w := e.Watermark(); w < items[len(items)-1].Cursor {
		t.Fatalf("watermark %d below the last item %d", w, items[len(items)-1].Cursor)
	}
}

// eventNames are the names of the events among items, in order.
func eventNames(items []stream.Item) []string {
	var out []string
	for _, it := range items {
		if it.Kind == stream.KindEvent {
			out = append(out, it.Name)
		}
	}
	return out
}
