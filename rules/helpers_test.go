package rules_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"meshbox/db"
	"meshbox/rules"
	"meshbox/stream"
)

// The rules are tested over a real SQLite log in a temporary file, wrapped so a test can make
// an append fail or hold it between the commit and the moment the rules apply it.

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }
func newClock() *clock               { return &clock{t: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)} }

// gateLog is a stream.Log whose appends a test can fail or hold.
type gateLog struct {
	stream.Log
	mu   sync.Mutex
	fail error
	// held, when set, receives a value after an append committed, and the append returns only
	// when release is closed.
	held    chan struct{}
	release chan struct{}
}

func (g *gateLog) Append(ctx context.Context, b *stream.Batch) error {
	g.mu.Lock()
	fail, held, release := g.fail, g.held, g.release
	g.mu.Unlock()
	if fail != nil {
		return fail
	}
	if err := g.Log.Append(ctx, b); err != nil {
		return err
	}
	if held != nil {
		held <- struct{}{}
		<-release
	}
	return nil
}

func (g *gateLog) failWith(err error) { g.mu.Lock(); g.fail = err; g.mu.Unlock() }

// hold makes the next appends stop after their commit until the returned func is called.
func (g *gateLog) hold() (committed <-chan struct{}, release func()) {
	held, rel := make(chan struct{}), make(chan struct{})
	g.mu.Lock()
	g.held, g.release = held, rel
	g.mu.Unlock()
	return held, func() {
		g.mu.Lock()
		g.held, g.release = nil, nil
		g.mu.Unlock()
		close(rel)
	}
}

type box struct {
	*rules.Engine
	log  *gateLog
	path string
}

// open opens the rules over the SQLite log at path; close them with reopen or at the end.
func open(t testing.TB, path string, o rules.Options, h rules.Hooks) *box {
	t.Helper()
	lg, err := db.Open(context.Background(), path, db.Options{Now: o.Now})
	if err != nil {
		t.Fatal(err)
	}
	gl := &gateLog{Log: lg}
	e, err := rules.New(context.Background(), gl, o)
	if err != nil {
		t.Fatal(err)
	}
	e.Start(h)
	b := &box{Engine: e, log: gl, path: path}
	t.Cleanup(func() { b.close(t) })
	return b
}

func (b *box) close(t testing.TB) {
	t.Helper()
	if err := errors.Join(b.Engine.Close(), b.log.Log.Close()); err != nil {
		t.Error(err)
	}
}

// reopen closes the box and opens it again on the same file: a restart.
func (b *box) reopen(t *testing.T, o rules.Options, h rules.Hooks) *box {
	t.Helper()
	b.close(t)
	return open(t, b.path, o, h)
}

func newBox(t *testing.T, o rules.Options) *box {
	t.Helper()
	return open(t, filepath.Join(t.TempDir(), "meshbox.db"), o, rules.Hooks{})
}

func mustCreate(t *testing.T, b *box) rules.Joined {
	t.Helper()
	j, err := b.CreateGroup(context.Background(), rules.NewGroup{Domain: "d", Name: "class"})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return j
}

func mustJoin(t *testing.T, b *box, gid string) rules.Joined {
	t.Helper()
	j, err := b.Join(context.Background(), gid, rules.NewNode{Name: "m"})
	if err != nil {
		t.Fatalf("join: %v", err)
	}
	return j
}

func ptr(s string) *string { return &s }

func kinds(items []stream.Item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Kind + "/" + it.Reason
	}
	return out
}
