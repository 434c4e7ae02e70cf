package db_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"meshbox/db"
	"meshbox/mountns"
	"meshbox/stream"
)

// logFillsAndRecovers is the disk-pressure part of the stream.Log contract, written against the
// interface only so every log implementation can run it: a log that is out of room refuses an
// append with ErrStorageFull and stores nothing of it, keeps serving reads, makes Ping fail the
// same way, and after a Purge (which deletes the oldest items, whatever their age, and reports
// the truncation to readers behind them) accepts appends again with cursors that continue.
// Every acknowledged item that the purge did not delete is intact.
//
// between, when not nil, runs after every acknowledged append of the fill.
func logFillsAndRecovers(t *testing.T, l stream.Log, between func()) {
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	if err := l.Append(ctx, &stream.Batch{Now: now, Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{
		ID: "g1", Domain: "d", Name: "full", Host: "h", CreatedAt: now, ExpiresAt: now.Add(time.Hour), HostSeenAt: now,
	}}}}); err != nil {
		t.Fatalf("create group: %v", err)
	}
	payload := strings.Repeat("p", 1000)
	batch := func() *stream.Batch {
		b := &stream.Batch{Now: now}
		for range 8 {
			b.Items = append(b.Items, stream.Item{Kind: stream.KindEvent, Node: "h", Name: "e", Payload: &payload, Group: "g1"})
		}
		return b
	}
	var acked []int64
	var fullErr error
	for i := 0; i < 10_000 && fullErr == nil; i++ {
		b := batch()
		switch err := l.Append(ctx, b); {
		case err == nil:
			for _, it := range b.Items {
				acked = append(acked, it.Cursor)
			}
			if between != nil {
				between()
			}
		case errors.Is(err, stream.ErrStorageFull):
			fullErr = err
		default:
			t.Fatalf("append %d: %v (want nil or ErrStorageFull)", i, err)
		}
	}
	if fullErr == nil {
		t.Fatal("the log never filled")
	}
	last := acked[len(acked)-1]
	if w := l.Watermark(); w != last {
		t.Errorf("watermark after the refused append = %d, want the last acknowledged %d", w, last)
	}
	if err := l.Ping(ctx); !errors.Is(err, stream.ErrStorageFull) {
		t.Errorf("ping while full = %v, want ErrStorageFull", err)
	}
	// Reads keep working: every acknowledged item is there, nothing of the refused batch is.
	items := readAll(t, l, 0, last)
	if len(items) != len(acked) {
		t.Fatalf("read %d items while full, want the %d acknowledged", len(items), len(acked))
	}
	for i, it := range items {
		if it.Cursor != acked[i] || it.Payload == nil || *it.Payload != payload {
			t.Fatalf("item %d = cursor %d, want %d with its payload intact", i, it.Cursor, acked[i])
		}
	}
	// Nothing is past its TTL: the purge makes room by deleting the oldest items early.
	purged, err := l.Purge(ctx, now.Add(-time.Hour))
	if err != nil {
		t.Fatalf("purge while full: %v", err)
	}
	if purged.Items == 0 || purged.Through < acked[0] {
		t.Fatalf("purge while full removed %+v, want the oldest items", purged)
	}
	if err := l.Ping(ctx); err != nil {
		t.Errorf("ping after the purge: %v", err)
	}
	_, truncated, err := l.ReadAfter(ctx, "g1", 0, l.Watermark(), 1, 0)
	if err != nil || !truncated {
		t.Errorf("reader from the start after the purge: truncated %v, err %v; want truncated", truncated, err)
	}
	rest := readAll(t, l, purged.Through, last)
	var want []int64
	for _, c := range acked {
		if c > purged.Through {
			want = append(want, c)
		}
	}
	if len(rest) != len(want) || (len(want) > 0 && rest[0].Cursor != want[0]) {
		t.Fatalf("after the purge read %d items, want the %d acknowledged after %d", len(rest), len(want), purged.Through)
	}
	b := batch()
	if err := l.Append(ctx, b); err != nil {
		t.Fatalf("append after the purge: %v", err)
	}
	if b.Items[0].Cursor <= last {
		t.Errorf("cursor after recovery %d, want above %d", b.Items[0].Cursor, last)
	}
	if err := l.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
}

func readAll(t *testing.T, l stream.Log, since, through int64) []stream.Item {
	t.Helper()
	var out []stream.Item
	for since < through {
		items, _, err := l.ReadAfter(context.Background(), "g1", since, through, 100, 0)
		if err != nil {
			t.Fatalf("read after %d: %v", since, err)
		}
		if len(items) == 0 {
			break
		}
		for _, it := range items {
			full, err := it.Decode()
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			out = append(out, full)
		}
		since = items[len(items)-1].Cursor
	}
	return out
}

// testLogger writes the log's lines to the test's output, so a failure shows what it said.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func openLog(t *testing.T, path string, opts db.Options) *db.Log {
	t.Helper()
	opts.Logger = testLogger(t)
	l, err := db.Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	if _, err := l.Load(context.Background()); err != nil {
		t.Fatalf("load: %v", err)
	}
	return l
}

// TestSizeBudgetFillsAndRecovers runs the contract on SQLite with a small size budget.
func TestSizeBudgetFillsAndRecovers(t *testing.T) {
	t.Parallel()
	logFillsAndRecovers(t, openLog(t, filepath.Join(t.TempDir(), "m.db"), db.Options{MaxBytes: 512 << 10}), nil)
}

// TestPurgeKeepsUnderBudget checks that the purge deletes the oldest items before their TTL
// once the database passes 90 % of its budget, so appends never reach the budget when the
// purge keeps up.
func TestPurgeKeepsUnderBudget(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.db")
	l := openLog(t, path, db.Options{MaxBytes: 1 << 20})
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	if err := l.Append(ctx, &stream.Batch{Now: now, Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: "g1", Domain: "d", Name: "n", Host: "h"}}}}); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 4000)
	early := 0
	for i := range 1000 {
		b := &stream.Batch{Now: now, Items: []stream.Item{{Kind: stream.KindEvent, Node: "h", Name: "e", Payload: &payload, Group: "g1"}}}
		if err := l.Append(ctx, b); err != nil {
			t.Fatalf("append %d (the purge runs every 8 appends, 32 KB): %v", i, err)
		}
		if i%8 != 0 {
			continue
		}
		p, err := l.Purge(ctx, now.Add(-time.Hour))
		if err != nil {
			t.Fatalf("purge: %v", err)
		}
		early += p.Items
	}
	if early == 0 {
		t.Fatal("4 MB of items in a 1 MiB budget and the purge deleted none")
	}
	if st := l.Stats(ctx); st.Bytes > 1<<20 {
		t.Errorf("database grew to %d bytes, over its 1 MiB budget", st.Bytes)
	}
}

// TestStartOverBudget checks that a log opened over its budget serves reads, refuses writes
// with the reason, and recovers after a purge.
func TestStartOverBudget(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "m.db")
	l := openLog(t, path, db.Options{})
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	if err := l.Append(ctx, &stream.Batch{Now: now, Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: "g1", Domain: "d", Name: "n", Host: "h"}}}}); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("x", 4000)
	for range 200 {
		if err := l.Append(ctx, &stream.Batch{Now: now, Items: []stream.Item{{Kind: stream.KindEvent, Node: "h", Name: "e", Payload: &payload, Group: "g1"}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The operator lowers the budget below what is stored.
	l = openLog(t, path, db.Options{MaxBytes: 256 << 10})
	if err := l.Ping(ctx); !errors.Is(err, stream.ErrStorageFull) || !strings.Contains(err.Error(), "size budget") {
		t.Errorf("ping on a log over its budget = %v, want ErrStorageFull naming the budget", err)
	}
	if items := readAll(t, l, 0, l.Watermark()); len(items) != 200 {
		t.Errorf("read %d items at start, want 200", len(items))
	}
	if _, err := l.Purge(ctx, now.Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := l.Append(ctx, &stream.Batch{Now: now, Items: []stream.Item{{Kind: stream.KindEvent, Node: "h", Name: "e", Group: "g1"}}}); err != nil {
		t.Errorf("append after the purge: %v", err)
	}
}

// TestFullDiskReleasesReserve fills a real (tmpfs) filesystem: the log refuses writes with
// ErrStorageFull, gives up its reserve file so the purge can run, recovers, and closes without
// an error. It needs root to mount the filesystem (in a mount namespace of its own, so the
// mount never outlives the test) and is skipped otherwise.
func TestFullDiskReleasesReserve(t *testing.T) {
	dir, ok := mountns.Run(t, 4<<20)
	if !ok {
		return
	}
	path := filepath.Join(dir, "m.db")
	l, err := db.Open(context.Background(), path, db.Options{ReserveBytes: 1 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { l.Close() }) // before the unmount
	if _, err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + "-reserve"); err != nil {
		t.Fatalf("no reserve file: %v", err)
	}
	// In service the checkpointer keeps the WAL to about a second of writes; the test fills
	// the disk faster than that, so it checkpoints after every append (a checkpoint that finds
	// the disk full fails, as it would in service).
	logFillsAndRecovers(t, l, func() { l.CheckpointNow() })
	if _, err := os.Stat(path + "-reserve"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("reserve file still held after the disk filled (%v)", err)
	}
}
