package rules_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"meshbox/rules"
	"meshbox/stream"
)

func TestExpiryEndsGroupsAndNodesWithItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	b := newBox(t, rules.Options{Now: clk.Now, HostTTL: 30 * time.Second, MemberTTL: 10 * time.Second, MaxGroupLifetime: time.Hour})
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)
	clk.Add(15 * time.Second)
	if _, _, err := b.Heartbeat(ctx, h.Group.ID, h.Node.ID); err != nil {
		t.Fatal(err)
	}
	res, err := b.Purge(ctx)
	if err != nil || res.Nodes != 1 || res.Groups != 0 {
		t.Fatalf("purge = %+v, %v; want one node", res, err)
	}
	clk.Add(40 * time.Second)
	res, err = b.Purge(ctx)
	if err != nil || res.Groups != 1 {
		t.Fatalf("purge = %+v, %v; want one group", res, err)
	}
	items, _, err := b.ReadAfter(ctx, h.Group.ID, m.Cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(items); !slices.Equal(got, []string{"leave/expired", "dissolve/expired"}) || items[0].Node != m.Node.ID {
		t.Fatalf("items = %v", got)
	}
	if _, err := b.Publish(ctx, h.Group.ID, h.Node.ID, []rules.EventIn{{Name: "late"}}); !errors.Is(err, rules.ErrGroupEnded) {
		t.Fatalf("publish to expired group: %v", err)
	}
}

func TestGroupLifetimeIsAbsolute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	b := newBox(t, rules.Options{Now: clk.Now, HostTTL: time.Hour, MaxGroupLifetime: time.Minute})
	j, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "g", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Group.ExpiresAt.Sub(clk.Now()); got != time.Minute {
		t.Fatalf("lifetime capped to %v, want 1m", got)
	}
	clk.Add(50 * time.Second)
	g, _, err := b.Heartbeat(ctx, j.Group.ID, j.Node.ID)
	if err != nil || !g.ExpiresAt.Equal(j.Group.ExpiresAt) {
		t.Fatalf("heartbeat moved expiry: %v %v", g.ExpiresAt, err)
	}
	clk.Add(11 * time.Second)
	if _, _, err := b.Heartbeat(ctx, j.Group.ID, j.Node.ID); !errors.Is(err, rules.ErrGroupEnded) {
		t.Fatalf("heartbeat after expiry: %v", err)
	}
}

func TestTokensOnlyWorkForTheirOwnNodeAndGroup(t *testing.T) {
	t.Parallel()
	b := newBox(t, rules.Options{})
	a := mustCreate(t, b)
	o := mustCreate(t, b)
	if n, err := b.Authenticate(a.Group.ID, a.Token); err != nil || n.ID != a.Node.ID {
		t.Fatalf("own token: %v %v", n, err)
	}
	if _, err := b.Authenticate(a.Group.ID, o.Token); !errors.Is(err, rules.ErrUnauthorized) {
		t.Fatalf("other group's token: %v", err)
	}
	for _, tok := range []string{"", ".", "x", a.Node.ID + ".", a.Node.ID + ".wrong", a.Token + "x"} {
		if _, err := b.Authenticate(a.Group.ID, tok); !errors.Is(err, rules.ErrUnauthorized) {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	if _, err := b.Authenticate("nope", a.Token); !errors.Is(err, rules.ErrGroupNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
}

func TestDataMergeReplaceAndSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{Limits: rules.Limits{MaxDataKeys: 3}})
	h := mustCreate(t, b)
	c1, err := b.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"a": "1", "b": "2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := b.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"a": "", "c": "3"}, false)
	if err != nil || c2 <= c1 {
		t.Fatal(err, c1, c2)
	}
	if _, err := b.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"d": "4", "e": "5"}, false); !errors.Is(err, rules.ErrTooLarge) {
		t.Fatalf("too many keys: %v", err)
	}
	snap, err := b.Snapshot(ctx, h.Group.ID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Cursor != c2 || len(snap.Nodes) != 1 || snap.Nodes[0].Data["b"] != "2" || snap.Nodes[0].Data["c"] != "3" || len(snap.Nodes[0].Data) != 2 {
		t.Fatalf("snapshot = %+v", snap)
	}
	items, _, _ := b.ReadAfter(ctx, h.Group.ID, c1, 10)
	if len(items) != 1 || items[0].Data["a"] != "" || items[0].Data["c"] != "3" {
		t.Fatalf("data item = %+v", items)
	}
	if _, err := b.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"z": "9"}, true); err != nil {
		t.Fatal(err)
	}
	n, _ := b.Node(h.Group.ID, h.Node.ID)
	if len(n.Data) != 1 || n.Data["z"] != "9" {
		t.Fatalf("replace: %v", n.Data)
	}
	// An unchanged value appends nothing and answers the current cursor.
	before := b.Watermark()
	if c, err := b.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"z": "9"}, false); err != nil || c != before {
		t.Fatalf("unchanged data: cursor %d (watermark %d), %v", c, before, err)
	}
}

// TestLimits checks every limit the rules own, so that each entrance gets them from here.
func TestLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{Limits: rules.Limits{
		MaxNodesPerGroup: 2, MaxGroupsPerDomain: 1, MaxDataKeys: 2, MaxDataKeyBytes: 4, MaxDataValueBytes: 8,
		MaxPayloadBytes: 10, MaxEventsPerPublish: 3, PublishRate: 1,
	}})
	h := mustCreate(t, b)
	if _, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "second"}); !errors.Is(err, rules.ErrDomainFull) {
		t.Fatalf("second group: %v", err)
	}
	m := mustJoin(t, b, h.Group.ID)
	if _, err := b.Join(ctx, h.Group.ID, rules.NewNode{}); !errors.Is(err, rules.ErrGroupFull) {
		t.Fatalf("third node: %v", err)
	}
	gid, nid := h.Group.ID, h.Node.ID
	for _, c := range []struct {
		name   string
		events []rules.EventIn
		want   error
	}{
		{"no events", nil, rules.ErrInvalid},
		{"too many events", make([]rules.EventIn, 4), rules.ErrTooLarge},
		{"empty name", []rules.EventIn{{Name: ""}}, rules.ErrInvalid},
		{"long name", []rules.EventIn{{Name: strings.Repeat("n", 257)}}, rules.ErrInvalid},
		{"bad UTF-8 name", []rules.EventIn{{Name: "\xff"}}, rules.ErrInvalid},
		{"large payload", []rules.EventIn{{Name: "e", Payload: ptr(strings.Repeat("p", 11))}}, rules.ErrTooLarge},
	} {
		if _, err := b.Publish(ctx, gid, nid, c.events); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	for _, c := range []struct {
		name string
		data map[string]string
		want error
	}{
		{"no keys", map[string]string{}, rules.ErrInvalid},
		{"empty key", map[string]string{"": "x"}, rules.ErrInvalid},
		{"long key", map[string]string{"kkkkk": "x"}, rules.ErrTooLarge},
		{"long value", map[string]string{"k": "vvvvvvvvv"}, rules.ErrTooLarge},
		{"too many keys", map[string]string{"a": "1", "b": "2", "c": "3"}, rules.ErrTooLarge},
		{"bad UTF-8 value", map[string]string{"k": "\xff"}, rules.ErrInvalid},
	} {
		if _, err := b.SetData(ctx, gid, m.Node.ID, c.data, false); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// The rate: a burst of two, then refused with a time to wait; refused calls cost nothing.
	for i := range 2 {
		if _, err := b.Publish(ctx, gid, nid, []rules.EventIn{{Name: "e"}}); err != nil {
			t.Fatalf("publish %d within the burst: %v", i, err)
		}
	}
	_, err := b.Publish(ctx, gid, nid, []rules.EventIn{{Name: "e"}})
	var rl *rules.RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, rules.ErrRateLimited) || rl.RetryAfter <= 0 {
		t.Fatalf("publish over the rate: %v", err)
	}
	// Another node's budget is its own.
	if _, err := b.Publish(ctx, gid, m.Node.ID, []rules.EventIn{{Name: "e"}}); err != nil {
		t.Fatalf("a classmate's publish: %v", err)
	}
}

func TestCreateIsIdempotentPerHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{})
	a, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "g", HostID: "peer-1", MeshV2Host: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "g", HostID: "peer-1", MeshV2Host: true})
	if err != nil || c.Group.ID != a.Group.ID || c.Token == a.Token {
		t.Fatalf("second create: %+v %v", c, err)
	}
	if _, err := b.Authenticate(a.Group.ID, c.Token); err != nil {
		t.Fatalf("new token: %v", err)
	}
	if _, err := b.Authenticate(a.Group.ID, a.Token); !errors.Is(err, rules.ErrUnauthorized) {
		t.Fatalf("old token after re-create: %v", err)
	}
}

func TestLeave(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{})
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)
	if err := b.Leave(ctx, h.Group.ID, "nobody", stream.ReasonLeft); !errors.Is(err, rules.ErrNodeNotFound) {
		t.Fatalf("unknown node leaves: %v", err)
	}
	if err := b.Leave(ctx, h.Group.ID, m.Node.ID, stream.ReasonLeft); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Authenticate(h.Group.ID, m.Token); !errors.Is(err, rules.ErrUnauthorized) {
		t.Fatalf("token of a node that left: %v", err)
	}
	if nodes, _ := b.Nodes(h.Group.ID); len(nodes) != 1 || nodes[0].ID != h.Node.ID {
		t.Fatalf("nodes after leave: %+v", nodes)
	}
	// The host leaving (removed by the admin) ends the group.
	if err := b.Leave(ctx, h.Group.ID, h.Node.ID, stream.ReasonRemoved); err != nil {
		t.Fatal(err)
	}
	items, _, _ := b.ReadAfter(ctx, h.Group.ID, m.Cursor, 10)
	if got := kinds(items); !slices.Equal(got, []string{"leave/left", "dissolve/admin"}) {
		t.Fatalf("items = %v", got)
	}
	if !b.Over(h.Group.ID, items[1].Cursor) || b.Over(h.Group.ID, items[0].Cursor) {
		t.Fatal("Over must hold at the dissolve item and not before it")
	}
}

// TestDissolveKeepsFormerMembersAcrossRestart: the members of a dissolved group may still read
// its final items, also after meshbox restarts (defect: they got 410 instead of the dissolve).
func TestDissolveKeepsFormerMembersAcrossRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{})
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)
	if err := b.Dissolve(ctx, h.Group.ID, stream.ReasonHost); err != nil {
		t.Fatal(err)
	}
	if err := b.Dissolve(ctx, h.Group.ID, stream.ReasonHost); !errors.Is(err, rules.ErrGroupEnded) {
		t.Fatalf("second dissolve: %v", err)
	}
	for round := range 2 {
		bx := b
		if round == 1 {
			bx = b.reopen(t, rules.Options{}, rules.Hooks{})
		}
		n, ended, err := bx.AuthenticateReader(h.Group.ID, m.Token)
		if err != nil || !ended || n.ID != m.Node.ID {
			t.Fatalf("round %d: former member reads: %+v ended=%v %v", round, n, ended, err)
		}
		if _, _, err := bx.AuthenticateReader(h.Group.ID, m.Node.ID+".forged"); !errors.Is(err, rules.ErrUnauthorized) {
			t.Fatalf("round %d: forged token: %v", round, err)
		}
		items, _, err := bx.ReadAfter(ctx, h.Group.ID, m.Cursor, 10)
		if err != nil || len(items) != 1 || items[0].Kind != stream.KindDissolve {
			t.Fatalf("round %d: items after the join: %v %v", round, kinds(items), err)
		}
		if bx.Over(h.Group.ID, m.Cursor) || !bx.Over(h.Group.ID, items[0].Cursor) {
			t.Fatalf("round %d: Over must hold at the dissolve item only", round)
		}
	}
}

// TestFailedBatchChangesNothing: a batch the log refuses leaves memory as it was — no join,
// no data, no renewed TTL — and cursors stay as they were (defect: a failed batch reloaded
// the state with the restart rules, renewing every lifetime).
func TestFailedBatchChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	b := newBox(t, rules.Options{Now: clk.Now, HostTTL: time.Minute, MemberTTL: time.Minute})
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)
	clk.Add(50 * time.Second)
	before, _ := b.Snapshot(ctx, h.Group.ID)
	mark := b.Watermark()

	b.log.failWith(errors.New("disk on fire"))
	if _, err := b.Join(ctx, h.Group.ID, rules.NewNode{Name: "late"}); err == nil {
		t.Fatal("join committed on a failing log")
	}
	if _, err := b.SetData(ctx, h.Group.ID, m.Node.ID, map[string]string{"k": "v"}, false); err == nil {
		t.Fatal("data committed on a failing log")
	}
	if _, _, err := b.Heartbeat(ctx, h.Group.ID, h.Node.ID); err == nil {
		t.Fatal("heartbeat committed on a failing log")
	}
	if _, err := b.Publish(ctx, h.Group.ID, m.Node.ID, []rules.EventIn{{Name: "e"}}); err == nil {
		t.Fatal("publish committed on a failing log")
	}
	if err := b.Dissolve(ctx, h.Group.ID, stream.ReasonHost); err == nil {
		t.Fatal("dissolve committed on a failing log")
	}
	after, err := b.Snapshot(ctx, h.Group.ID)
	if err != nil {
		t.Fatalf("group after failed batches: %v", err)
	}
	if b.Watermark() != mark || after.Cursor != before.Cursor {
		t.Fatalf("watermark moved: %d → %d", mark, b.Watermark())
	}
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("state changed:\nbefore %+v\nafter  %+v", before, after)
	}
	// Nothing was renewed: past the TTL of the last successful activity, the group is gone.
	b.log.failWith(nil)
	clk.Add(11 * time.Second)
	if _, err := b.Group(h.Group.ID); !errors.Is(err, rules.ErrGroupEnded) {
		t.Fatalf("a failed heartbeat renewed the group: %v", err)
	}
}

// TestUncommittedStateIsInvisible holds a batch after the log committed it but before the rules
// applied it: readers see neither its state nor its cursor until then, and then both at once
// (defect: ops changed memory before COMMIT).
func TestUncommittedStateIsInvisible(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{})
	h := mustCreate(t, b)
	mark := b.Watermark()
	committed, release := b.log.hold()
	joined := make(chan rules.Joined, 1)
	go func() {
		j, err := b.Join(ctx, h.Group.ID, rules.NewNode{Name: "pending"})
		if err != nil {
			t.Error(err)
		}
		joined <- j
	}()
	<-committed
	if nodes, _ := b.Nodes(h.Group.ID); len(nodes) != 1 {
		t.Fatalf("nodes before the batch is applied: %+v", nodes)
	}
	snap, _ := b.Snapshot(ctx, h.Group.ID)
	if b.Watermark() != mark || snap.Cursor != mark || snap.Group.Nodes != 1 {
		t.Fatalf("snapshot before the batch is applied: cursor %d (watermark %d), %d nodes", snap.Cursor, mark, snap.Group.Nodes)
	}
	// A reader bounded by the watermark does not see the committed join item yet.
	if items, _, _ := b.ReadAfter(ctx, h.Group.ID, mark, 10); len(items) != 0 {
		t.Fatalf("read before the batch is applied: %v", kinds(items))
	}
	release()
	j := <-joined
	snap, _ = b.Snapshot(ctx, h.Group.ID)
	if snap.Cursor != j.Cursor || len(snap.Nodes) != 2 {
		t.Fatalf("after: snapshot at %d with %d nodes, join at %d", snap.Cursor, len(snap.Nodes), j.Cursor)
	}
}

// TestBatchesAreBoundedByItems: a flood of large publishes is committed in several batches,
// each within the item bound, and every publish is answered with its own cursors.
func TestBatchesAreBoundedByItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	obs := &commitLog{}
	b := newBox(t, rules.Options{MaxBatchItems: 50, Observer: obs, Limits: rules.Limits{MaxEventsPerPublish: 40}})
	h := mustCreate(t, b)
	evs := make([]rules.EventIn, 40)
	for i := range evs {
		evs[i] = rules.EventIn{Name: "e"}
	}
	errs := make(chan error, 20)
	for range 20 {
		go func() {
			cs, err := b.Publish(ctx, h.Group.ID, h.Node.ID, evs)
			if err == nil && (len(cs) != 40 || cs[39]-cs[0] != 39) {
				err = fmt.Errorf("cursors %v", cs)
			}
			errs <- err
		}()
	}
	for range 20 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range obs.items() {
		// A batch is closed once it reaches the bound: at most one publish beyond it.
		if n >= 50+40 {
			t.Fatalf("a batch held %d items, bound 50 (+ one publish)", n)
		}
	}
}

type commitLog struct {
	mu sync.Mutex
	n  []int
}

func (c *commitLog) ObserveCommit(ops, items int, d time.Duration) {
	c.mu.Lock()
	c.n = append(c.n, items)
	c.mu.Unlock()
}
func (c *commitLog) ObserveAppended(string, int)               {}
func (c *commitLog) ObservePurge(int, int, int, time.Duration) {}
func (c *commitLog) items() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.n)
}

// TestRestartGivesFreshPeriods: clients could not reach meshbox while it was down, so after a
// restart every live group and node gets a fresh heartbeat period — at start only.
func TestRestartGivesFreshPeriods(t *testing.T) {
	t.Parallel()
	clk := newClock()
	o := rules.Options{Now: clk.Now, HostTTL: time.Minute, MemberTTL: time.Minute}
	b := newBox(t, o)
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)
	clk.Add(59 * time.Second)
	b = b.reopen(t, o, rules.Hooks{})
	clk.Add(30 * time.Second)
	if _, err := b.Node(h.Group.ID, m.Node.ID); err != nil {
		t.Fatalf("member after restart: %v", err)
	}
	if _, err := b.Authenticate(h.Group.ID, h.Token); err != nil {
		t.Fatalf("host token after restart: %v", err)
	}
}

// TestMeshV2ActsOnlyAsMeshV2Nodes: Mesh v2 names its own ids and has no token, so it may take
// up only its own nodes again, reach only groups open to it, and never a token holder's id.
func TestMeshV2ActsOnlyAsMeshV2Nodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{})
	native := mustCreate(t, b)
	open, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "open", OpenToMeshV2: true})
	if err != nil {
		t.Fatal(err)
	}
	mesh, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "mesh", HostID: "peer-1", MeshV2Host: true})
	if err != nil || !mesh.Group.MeshV2 || !mesh.Node.MeshV2 {
		t.Fatalf("Mesh v2 create: %+v %v", mesh, err)
	}
	for name, err := range map[string]error{
		"join a closed group": func() error { _, err := b.Join(ctx, native.Group.ID, rules.NewNode{ID: "x", MeshV2: true}); return err }(),
		"take a native host's id": func() error {
			_, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "g", HostID: open.Node.ID, MeshV2Host: true})
			return err
		}(),
		"re-join as a native node": func() error {
			_, err := b.Join(ctx, open.Group.ID, rules.NewNode{ID: open.Node.ID, MeshV2: true})
			return err
		}(),
		"act in a closed group": b.MeshV2Member(native.Group.ID, ""),
		"act as a native host":  b.MeshV2Member(open.Group.ID, open.Node.ID),
		"a native re-create of ids": func() error {
			_, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "g", HostID: "peer-1"})
			return err
		}(),
	} {
		if !errors.Is(err, rules.ErrUnauthorized) {
			t.Errorf("%s: %v, want ErrUnauthorized", name, err)
		}
	}
	j, err := b.Join(ctx, open.Group.ID, rules.NewNode{ID: "scratch", MeshV2: true})
	if err != nil || b.MeshV2Member(open.Group.ID, "scratch") != nil {
		t.Fatalf("Mesh v2 node joins an open group: %+v %v", j, err)
	}
	if again, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "mesh", HostID: "peer-1", MeshV2Host: true}); err != nil || again.Group.ID != mesh.Group.ID {
		t.Fatalf("Mesh v2 create again: %+v %v", again, err)
	}
	if n, err := b.FindMeshV2Node(open.Node.ID); err == nil {
		t.Fatalf("FindMeshV2Node found a native node: %+v", n)
	}
}
