package db

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)} }
func ptr(s string) *string           { return &s }
func open(t *testing.T, path string, o Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	s.Start(Hooks{})
	return s
}

func newStore(t *testing.T, o Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "meshbox.db")
	s := open(t, path, o)
	t.Cleanup(func() { s.Close() })
	return s, path
}

func mustCreate(t *testing.T, s *Store) Joined {
	t.Helper()
	j, err := s.CreateGroup(context.Background(), NewGroup{Domain: "d", Name: "class"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return j
}

func TestCursorsIncreaseAcrossPurgeAndRestart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	path := filepath.Join(t.TempDir(), "meshbox.db")
	s := open(t, path, Options{Now: clk.Now, EventTTL: time.Minute, HostTTL: time.Hour, MemberTTL: time.Hour})
	h := mustCreate(t, s)
	var last int64 = h.Cursor
	for i := 0; i < 5; i++ {
		cs, err := s.Publish(ctx, h.Group.ID, h.Node.ID, []EventIn{{Name: "a"}, {Name: "b"}})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range cs {
			if c <= last {
				t.Fatalf("cursor %d after %d", c, last)
			}
			last = c
		}
	}
	clk.Add(2 * time.Minute)
	res, err := s.Purge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Items != 11 {
		t.Fatalf("purged %d items, want 11", res.Items)
	}
	var n int
	if err := s.read.QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("items left %d (%v), want 0", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path, Options{Now: clk.Now, EventTTL: time.Minute, HostTTL: time.Hour, MemberTTL: time.Hour})
	defer s.Close()
	cs, err := s.Publish(ctx, h.Group.ID, h.Node.ID, []EventIn{{Name: "after"}})
	if err != nil {
		t.Fatal(err)
	}
	if cs[0] != last+1 {
		t.Fatalf("cursor after purge and restart = %d, want %d", cs[0], last+1)
	}
	items, truncated, err := s.ReadAfter(ctx, h.Group.ID, h.Cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	if !truncated || len(items) != 1 || items[0].Cursor != last+1 {
		t.Fatalf("read after purge: truncated=%v items=%v", truncated, items)
	}
	_, truncated, _ = s.ReadAfter(ctx, h.Group.ID, last, 100)
	if truncated {
		t.Fatal("reader that saw everything reported truncated")
	}
}

func TestCommitFailureFailsEveryWaitingWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	h := mustCreate(t, s)
	boom := errors.New("disk on fire")
	s.mu.Lock()
	s.commitHook = func() error { return boom }
	s.mu.Unlock()
	// Pause the writer so the publishes share one batch.
	gate := make(chan struct{})
	go s.do(ctx, func(*txn) error { <-gate; return nil })
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Publish(ctx, h.Group.ID, h.Node.ID, []EventIn{{Name: "x", Payload: ptr("p")}})
		}()
	}
	time.Sleep(50 * time.Millisecond)
	close(gate)
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, boom) {
			t.Fatalf("publish %d: err = %v, want the commit error", i, err)
		}
	}
	s.mu.Lock()
	s.commitHook = nil
	s.mu.Unlock()
	items, _, err := s.ReadAfter(ctx, h.Group.ID, h.Cursor, 100)
	if err != nil || len(items) != 0 {
		t.Fatalf("items after failed commit: %v %v", items, err)
	}
	cs, err := s.Publish(ctx, h.Group.ID, h.Node.ID, []EventIn{{Name: "ok"}})
	if err != nil || cs[0] <= h.Cursor {
		t.Fatalf("publish after failure: %v %v", cs, err)
	}
}

func TestExpiryEndsGroupsAndNodesWithItems(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s, _ := newStore(t, Options{Now: clk.Now, HostTTL: 30 * time.Second, MemberTTL: 10 * time.Second, MaxGroupLifetime: time.Hour})
	h := mustCreate(t, s)
	m, err := s.Join(ctx, h.Group.ID, NewNode{Name: "m"})
	if err != nil {
		t.Fatal(err)
	}
	clk.Add(15 * time.Second)
	if _, _, err := s.Heartbeat(ctx, h.Group.ID, h.Node.ID); err != nil {
		t.Fatal(err)
	}
	res, err := s.Purge(ctx)
	if err != nil || res.Nodes != 1 || res.Groups != 0 {
		t.Fatalf("purge = %+v, %v; want one node", res, err)
	}
	clk.Add(40 * time.Second)
	res, err = s.Purge(ctx)
	if err != nil || res.Groups != 1 {
		t.Fatalf("purge = %+v, %v; want one group", res, err)
	}
	items, _, err := s.ReadAfter(ctx, h.Group.ID, m.Cursor, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].Kind != KindLeave || items[0].Reason != ReasonExpired || items[0].Node != m.Node.ID ||
		items[1].Kind != KindDissolve || items[1].Reason != ReasonExpired {
		t.Fatalf("items = %+v", items)
	}
	if _, err := s.Publish(ctx, h.Group.ID, h.Node.ID, []EventIn{{Name: "late"}}); !errors.Is(err, ErrGroupEnded) {
		t.Fatalf("publish to expired group: %v", err)
	}
}

func TestGroupLifetimeIsAbsolute(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s, _ := newStore(t, Options{Now: clk.Now, HostTTL: time.Hour, MaxGroupLifetime: time.Minute})
	j, err := s.CreateGroup(ctx, NewGroup{Domain: "d", Name: "g", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.Group.ExpiresAt.Sub(clk.Now()); got != time.Minute {
		t.Fatalf("lifetime capped to %v, want 1m", got)
	}
	clk.Add(50 * time.Second)
	g, _, err := s.Heartbeat(ctx, j.Group.ID, j.Node.ID)
	if err != nil || !g.ExpiresAt.Equal(j.Group.ExpiresAt) {
		t.Fatalf("heartbeat moved expiry: %v %v", g.ExpiresAt, err)
	}
	clk.Add(11 * time.Second)
	if _, _, err := s.Heartbeat(ctx, j.Group.ID, j.Node.ID); !errors.Is(err, ErrGroupEnded) {
		t.Fatalf("heartbeat after expiry: %v", err)
	}
}

func TestTokensOnlyWorkForTheirOwnNodeAndGroup(t *testing.T) {
	t.Parallel()
	s, _ := newStore(t, Options{})
	a := mustCreate(t, s)
	b := mustCreate(t, s)
	if n, err := s.Authenticate(a.Group.ID, a.Token); err != nil || n.ID != a.Node.ID {
		t.Fatalf("own token: %v %v", n, err)
	}
	if _, err := s.Authenticate(a.Group.ID, b.Token); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("other group's token: %v", err)
	}
	for _, tok := range []string{"", ".", "x", a.Node.ID + ".", a.Node.ID + ".wrong", a.Token + "x"} {
		if _, err := s.Authenticate(a.Group.ID, tok); !errors.Is(err, ErrUnauthorized) {
			t.Fatalf("token %q: %v", tok, err)
		}
	}
	if _, err := s.Authenticate("nope", a.Token); !errors.Is(err, ErrGroupNotFound) {
		t.Fatalf("unknown group: %v", err)
	}
	var hash []byte
	if err := s.read.QueryRow(`SELECT token_hash FROM nodes WHERE id = ?`, a.Node.ID).Scan(&hash); err != nil || len(hash) != 32 {
		t.Fatalf("stored token hash %x: %v", hash, err)
	}
}

func TestDataMergeAndSnapshot(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, Options{MaxDataKeys: 3})
	h := mustCreate(t, s)
	c1, err := s.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"a": "1", "b": "2"}, false)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := s.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"a": "", "c": "3"}, false)
	if err != nil || c2 <= c1 {
		t.Fatal(err, c1, c2)
	}
	if _, err := s.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"d": "4", "e": "5"}, false); !errors.Is(err, ErrInvalid) {
		t.Fatalf("too many keys: %v", err)
	}
	snap, err := s.Snapshot(ctx, h.Group.ID)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Cursor != c2 || len(snap.Nodes) != 1 || snap.Nodes[0].Data["b"] != "2" || snap.Nodes[0].Data["c"] != "3" || len(snap.Nodes[0].Data) != 2 {
		t.Fatalf("snapshot = %+v", snap)
	}
	items, _, _ := s.ReadAfter(ctx, h.Group.ID, c1, 10)
	if len(items) != 1 || items[0].Data["a"] != "" || items[0].Data["c"] != "3" {
		t.Fatalf("data item = %+v", items)
	}
	if _, err := s.SetData(ctx, h.Group.ID, h.Node.ID, map[string]string{"z": "9"}, true); err != nil {
		t.Fatal(err)
	}
	n, _ := s.Node(h.Group.ID, h.Node.ID)
	if len(n.Data) != 1 || n.Data["z"] != "9" {
		t.Fatalf("replace: %v", n.Data)
	}
}

func TestLimitsOnCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, Options{MaxNodesPerGroup: 2, MaxGroupsPerDomain: 1})
	h := mustCreate(t, s)
	if _, err := s.CreateGroup(ctx, NewGroup{Domain: "d", Name: "second"}); !errors.Is(err, ErrDomainFull) {
		t.Fatalf("second group: %v", err)
	}
	if _, err := s.Join(ctx, h.Group.ID, NewNode{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Join(ctx, h.Group.ID, NewNode{}); !errors.Is(err, ErrGroupFull) {
		t.Fatalf("third node: %v", err)
	}
}

func TestCreateIsIdempotentPerHost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, _ := newStore(t, Options{})
	a, err := s.CreateGroup(ctx, NewGroup{Domain: "d", Name: "g", HostID: "peer-1"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateGroup(ctx, NewGroup{Domain: "d", Name: "g", HostID: "peer-1"})
	if err != nil || b.Group.ID != a.Group.ID || b.Token == a.Token {
		t.Fatalf("second create: %+v %v", b, err)
	}
	if _, err := s.Authenticate(a.Group.ID, b.Token); err != nil {
		t.Fatalf("new token: %v", err)
	}
}

func TestItemJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	p := "tab\t \"q\" \\ \x01 <é> \u2028 \xff"
	it := Item{Cursor: 7, Kind: KindEvent, Node: "n", Name: "go", Payload: &p, At: time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)}
	b := encodeItem(it)
	got, err := DecodeItem(b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if *got.Payload != "tab\t \"q\" \\ \x01 <é> \u2028 \ufffd" || got.Cursor != 7 || !got.At.Equal(it.At) {
		t.Fatalf("round trip: %+v from %s", got, b)
	}
	if want := `"at":"2026-01-02T03:04:05.006Z"`; !contains(string(b), want) {
		t.Fatalf("%s lacks %s", b, want)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestTruncationIsPerGroup(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	s, _ := newStore(t, Options{Now: clk.Now, EventTTL: time.Minute, HostTTL: time.Hour, MemberTTL: time.Hour})
	quiet := mustCreate(t, s)
	busy := mustCreate(t, s)
	for i := 0; i < 3; i++ {
		if _, err := s.Publish(ctx, busy.Group.ID, busy.Node.ID, []EventIn{{Name: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	clk.Add(2 * time.Minute)
	if _, err := s.Publish(ctx, busy.Group.ID, busy.Node.ID, []EventIn{{Name: "fresh"}}); err != nil {
		t.Fatal(err)
	}
	purged := 0
	s.hooks.OnPurge = func(through int64) { purged = int(through) }
	if _, err := s.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	if purged == 0 {
		t.Fatal("OnPurge was not called")
	}
	// The quiet group's reader saw its only item; other groups' purged items are no loss to it.
	if _, truncated, err := s.ReadAfter(ctx, quiet.Group.ID, quiet.Cursor, 10); err != nil || truncated {
		t.Fatalf("quiet group: truncated=%v err=%v", truncated, err)
	}
	items, truncated, err := s.ReadAfter(ctx, busy.Group.ID, busy.Cursor, 10)
	if err != nil || !truncated || len(items) != 1 || items[0].Name != "fresh" {
		t.Fatalf("busy group: truncated=%v items=%v err=%v", truncated, items, err)
	}
}
