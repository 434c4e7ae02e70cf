package rules_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"meshbox/db"
	"meshbox/rules"
	"meshbox/stream"
)

// TestFullLogChangesNothingAndRecovers fills a log with a small size budget: once it is full,
// every write is refused with ErrStorageFull and renews or changes nothing in memory, reads
// continue, and a purge (which deletes the oldest items before their TTL) lets writes resume
// without a restart, with every acknowledged item it kept intact.
func TestFullLogChangesNothingAndRecovers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	lg, err := db.Open(ctx, filepath.Join(t.TempDir(), "meshbox.db"), db.Options{Now: clk.Now, MaxBytes: 512 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lg.Close() })
	e, err := rules.New(ctx, lg, rules.Options{Now: clk.Now, HostTTL: time.Minute, MemberTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	var purgedThrough atomic.Int64
	e.Start(rules.Hooks{OnPurge: func(c int64) { purgedThrough.Store(c) }})
	t.Cleanup(func() { e.Close() })
	b := &box{Engine: e}
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)

	payload := strings.Repeat("p", 1000)
	var acked []int64
	for i := 0; ; i++ {
		cursors, err := e.Publish(ctx, h.Group.ID, m.Node.ID, []rules.EventIn{{Name: "e", Payload: &payload}, {Name: "e", Payload: &payload}})
		if errors.Is(err, rules.ErrStorageFull) {
			break
		}
		if err != nil || i > 10_000 {
			t.Fatalf("publish %d: %v (the log never filled?)", i, err)
		}
		acked = append(acked, cursors...)
	}
	clk.Add(50 * time.Second)
	before, _ := e.Snapshot(ctx, h.Group.ID)
	mark := e.Watermark()
	if _, _, err := e.Heartbeat(ctx, h.Group.ID, h.Node.ID); !errors.Is(err, rules.ErrStorageFull) {
		t.Errorf("heartbeat on a full log: %v, want ErrStorageFull", err)
	}
	if _, err := e.SetData(ctx, h.Group.ID, m.Node.ID, map[string]string{"k": "v"}, false); !errors.Is(err, rules.ErrStorageFull) {
		t.Errorf("data on a full log: %v, want ErrStorageFull", err)
	}
	if _, err := e.Join(ctx, h.Group.ID, rules.NewNode{Name: "late"}); !errors.Is(err, rules.ErrStorageFull) {
		t.Errorf("join on a full log: %v, want ErrStorageFull", err)
	}
	if err := e.Ping(ctx); !errors.Is(err, rules.ErrStorageFull) {
		t.Errorf("ping on a full log: %v, want ErrStorageFull", err)
	}
	after, err := e.Snapshot(ctx, h.Group.ID)
	if err != nil || e.Watermark() != mark || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused writes changed the state (err %v):\nbefore %+v\nafter  %+v", err, before, after)
	}
	items, truncated, err := e.ReadAfter(ctx, h.Group.ID, acked[0]-1, 1000)
	if err != nil || truncated || len(items) == 0 || items[0].Cursor != acked[0] {
		t.Fatalf("read on a full log: %d items, truncated %v, err %v", len(items), truncated, err)
	}

	res, err := e.Purge(ctx)
	if err != nil {
		t.Fatalf("purge on a full log: %v", err)
	}
	if res.Items == 0 || purgedThrough.Load() < acked[0] {
		t.Fatalf("purge on a full log deleted %d items through %d, want the oldest", res.Items, purgedThrough.Load())
	}
	if err := e.Ping(ctx); err != nil {
		t.Errorf("ping after the purge: %v", err)
	}
	cursors, err := e.Publish(ctx, h.Group.ID, m.Node.ID, []rules.EventIn{{Name: "again"}})
	if err != nil || cursors[0] <= acked[len(acked)-1] {
		t.Fatalf("publish after the purge: %v %v", cursors, err)
	}
	if _, _, err := e.Heartbeat(ctx, h.Group.ID, h.Node.ID); err != nil {
		t.Errorf("heartbeat after the purge: %v", err)
	}
	// The acknowledged items the purge kept are all there, in order, intact.
	since, i := purgedThrough.Load(), 0
	for _, c := range acked {
		if c <= since {
			i++
		}
	}
	for since < acked[len(acked)-1] {
		items, _, err := e.ReadAfter(ctx, h.Group.ID, since, 100)
		if err != nil || len(items) == 0 {
			t.Fatalf("read after %d: %v", since, err)
		}
		for _, it := range items {
			if it.Cursor > acked[len(acked)-1] {
				break
			}
			full, _ := it.Decode()
			if it.Cursor != acked[i] || full.Payload == nil || *full.Payload != payload || full.Kind != stream.KindEvent {
				t.Fatalf("item %d: cursor %d, want %d with its payload", i, it.Cursor, acked[i])
			}
			i++
		}
		since = items[len(items)-1].Cursor
	}
	if i != len(acked) {
		t.Errorf("read %d of %d acknowledged items", i, len(acked))
	}
}
