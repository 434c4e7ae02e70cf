package db

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"meshbox/stream"
	"meshbox/stream/logtest"
)

// failingLog is the SQLite log with the suite's failure injection: the next commit fails
// after the batch is written, through the log's commit hook.
type failingLog struct{ *Log }

// FailNextCommit makes the next Append roll back with err.
func (l failingLog) FailNextCommit(err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.commitHook = func() error {
		l.commitHook = nil // runs under wmu, in Append
		return err
	}
}

func openTestLog(t testing.TB, path string, opts Options) *Log {
	t.Helper()
	l, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return l
}

func TestLogConformance(t *testing.T) {
	t.Parallel()
	logtest.Run(t, func(t *testing.T, dir string) stream.Log {
		return failingLog{openTestLog(t, filepath.Join(dir, "meshbox.db"), Options{})}
	})
}

// wireItem is stream.Item as encoding/json writes it, with times in meshbox's time layout
// (milliseconds always written) instead of RFC 3339 with trimmed fractions.
type wireItem struct {
	Cursor   int64             `json:"cursor"`
	Kind     string            `json:"kind"`
	Node     string            `json:"node,omitempty"`
	Name     string            `json:"name,omitempty"`
	Payload  *string           `json:"payload,omitempty"`
	OrderKey string            `json:"orderKey,omitempty"`
	FiredAt  string            `json:"firedAt,omitempty"`
	Data     map[string]string `json:"data,omitempty"`
	Reason   string            `json:"reason,omitempty"`
	At       string            `json:"at"`
}

func encodingJSON(t *testing.T, it stream.Item) []byte {
	t.Helper()
	w := wireItem{Cursor: it.Cursor, Kind: it.Kind, Node: it.Node, Name: it.Name, Payload: it.Payload, OrderKey: it.OrderKey,
		Data: it.Data, Reason: it.Reason, At: stream.FormatTime(it.At)}
	if !it.FiredAt.IsZero() {
		w.FiredAt = stream.FormatTime(it.FiredAt)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	// Items are served as JSON, never inside HTML: meshbox leaves <, > and & as they are.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// TestItemJSONMatchesEncodingJSON appends items with every ASCII byte, HTML characters, line
// separators and invalid UTF-8 in every string field, and checks that the encoding the log
// stores and serves is byte for byte what encoding/json writes.
func TestItemJSONMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openTestLog(t, filepath.Join(t.TempDir(), "meshbox.db"), Options{})
	t.Cleanup(func() { l.Close() })
	var ascii []byte
	for c := range 128 {
		ascii = append(ascii, byte(c))
	}
	nasty := string(ascii) + "<é>&😀\u2028\u2029\xff\xc3(\xe2\x82"
	str := func(s string) *string { return &s }
	now := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	items := []stream.Item{
		{Kind: stream.KindEvent, Group: "g", Node: "n" + nasty, Name: nasty, Payload: str(nasty), OrderKey: nasty,
			FiredAt: time.Date(2026, 1, 2, 3, 4, 4, 123e6, time.FixedZone("x", 3600))},
		{Kind: stream.KindEvent, Group: "g", Node: "n", Name: "empty", Payload: str("")},
		{Kind: stream.KindData, Group: "g", Node: "n", Data: map[string]string{"z": nasty, nasty: "v", "a": "", "m": "1"}},
		{Kind: stream.KindJoin, Group: "g", Node: "n2", Name: "Ada"},
		{Kind: stream.KindLeave, Group: "g", Node: "n2", Reason: stream.ReasonExpired},
		{Kind: stream.KindDissolve, Group: "g", Reason: nasty},
	}
	b := &stream.Batch{Now: now, Items: items, Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: "g"}}}}
	if err := l.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	read, _, err := l.ReadAfter(ctx, "g", 0, l.Watermark(), 100, 0)
	if err != nil || len(read) != len(items) {
		t.Fatalf("read %d items (%v), want %d", len(read), err, len(items))
	}
	for i, it := range b.Items {
		want := encodingJSON(t, it)
		if !bytes.Equal(it.JSON, want) {
			t.Errorf("item %d appended as\n%q\nencoding/json writes\n%q", i, it.JSON, want)
		}
		if !bytes.Equal(read[i].JSON, want) {
			t.Errorf("item %d read as\n%q\nencoding/json writes\n%q", i, read[i].JSON, want)
		}
		var back stream.Item
		if err := json.Unmarshal(it.JSON, &back); err != nil || back.Cursor != it.Cursor || !back.At.Equal(now) {
			t.Errorf("item %d does not decode: %+v %v", i, back, err)
		}
	}
}

// TestMigrations checks that a new database gets the whole schema, an old one is brought up to
// date with its data kept, and a database of a newer meshbox is refused untouched.
func TestMigrations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	raw := func(path string) *sql.DB {
		d, err := sql.Open("sqlite", "file:"+path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		d.SetMaxOpenConns(1)
		return d
	}
	version := func(d *sql.DB) (v int) {
		if err := d.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}

	t.Run("old", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "old.db")
		d := raw(path)
		for _, q := range []string{migrations[0], "PRAGMA user_version = 1",
			`INSERT INTO groups(id, domain, name, host, created_at, expires_at, host_seen_at, first_cursor) VALUES ('g', 'd', 'class', 'n1', 1, 2, 1, 0)`,
			`INSERT INTO items(cursor, group_id, at, body) VALUES (7, 'g', 1000, '{"cursor":7,"kind":"event","at":"1970-01-01T00:00:01.000Z"}')`,
		} {
			if _, err := d.Exec(q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		d.Close()
		l := openTestLog(t, path, Options{})
		defer l.Close()
		st, err := l.Load(ctx)
		if err != nil || len(st.Groups) != 1 || st.Groups[0].Name != "class" || st.Watermark != 7 {
			t.Fatalf("loaded %+v (%v) from a migrated database", st, err)
		}
		if items, _, err := l.ReadAfter(ctx, "g", 0, 7, 10, 0); err != nil || len(items) != 1 {
			t.Fatalf("read %v (%v) from a migrated database", items, err)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if v := version(raw(path)); v != SchemaVersion() {
			t.Fatalf("schema version %d after migrating, want %d", v, SchemaVersion())
		}
	})

	t.Run("newer", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "newer.db")
		if err := openTestLog(t, path, Options{}).Close(); err != nil {
			t.Fatal(err)
		}
		d := raw(path)
		if v := version(d); v != SchemaVersion() {
			t.Fatalf("schema version %d of a new database, want %d", v, SchemaVersion())
		}
		if _, err := d.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
			t.Fatal(err)
		}
		l, err := Open(ctx, path, Options{})
		if err == nil {
			l.Close()
			t.Fatal("opened a database of a newer schema")
		}
		if !strings.Contains(err.Error(), "newer") {
			t.Fatalf("open of a newer schema: %v", err)
		}
		if v := version(d); v != SchemaVersion()+1 {
			t.Fatalf("schema version %d after the refusal, want it untouched", v)
		}
	})
}

// TestWALStaysBounded ingests ten times the WAL limit and runs the checkpoint tiers after every
// batch, as the checkpoint loop does between batches: the -wal file never grows past the limit
// plus one batch. Then, past the limit, one round of the tiers starts it over, cut back to the
// limit. The loop's own timer is stopped: nothing here depends on time.
func TestWALStaysBounded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const limit = 1 << 20
	path := filepath.Join(t.TempDir(), "meshbox.db")
	l := openTestLog(t, path, Options{WALLimit: limit})
	t.Cleanup(func() { l.Close() })
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.ckptStopped

	if err := l.Append(ctx, &stream.Batch{Now: time.Now(), Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: "g"}}}}); err != nil {
		t.Fatal(err)
	}
	payload := strings.Repeat("p", 1000)
	const perBatch = 64
	walSize := func() int64 {
		fi, err := os.Stat(path + "-wal")
		if errors.Is(err, os.ErrNotExist) {
			return 0
		}
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	var ingested int64
	// ingest appends one batch and returns how much the WAL grew.
	ingest := func() int64 {
		items := make([]stream.Item, perBatch)
		for i := range items {
			items[i] = stream.Item{Kind: stream.KindEvent, Group: "g", Node: "n1", Name: "move", Payload: &payload}
		}
		before := walSize()
		if err := l.Append(ctx, &stream.Batch{Now: time.Now(), Items: items}); err != nil {
			t.Fatal(err)
		}
		for _, it := range items {
			ingested += int64(len(it.JSON))
		}
		return walSize() - before
	}
	var maxSize, maxGrowth int64
	for ingested < 10*limit {
		maxGrowth = max(maxGrowth, ingest())
		maxSize = max(maxSize, walSize())
		l.checkpointTiers()
	}
	// One batch writes its rows, their index entries and a few pages of bookkeeping.
	if batch := int64(perBatch * len(payload)); maxGrowth > 3*batch {
		t.Fatalf("one batch grew the WAL by %d bytes, more than 3 × its %d bytes of items", maxGrowth, batch)
	}
	if maxSize > limit+maxGrowth {
		t.Fatalf("WAL reached %d bytes while %d were ingested, past the limit %d plus one batch (%d bytes)", maxSize, ingested, limit, maxGrowth)
	}
	t.Logf("ingested %d bytes; the WAL reached %d bytes (limit %d, one batch ≤ %d)", ingested, maxSize, limit, maxGrowth)

	for walSize() <= limit {
		ingest()
	}
	// Past the limit the WAL is copied back and started over, and cut back to the limit, never
	// to nothing: what it keeps is the room a purge reuses on a full disk.
	l.checkpointTiers()
	ingest()
	if size := walSize(); size > limit+maxGrowth {
		t.Fatalf("WAL of %d bytes after a round of the tiers past the limit and one more batch, want it started over and cut to %d", size, limit)
	}
}

// TestReadNeverAboveWatermark holds a batch between its COMMIT and the watermark's move, where
// SQLite already shows the batch to the read pool, and reads meanwhile: nothing above the
// watermark comes out, whatever bound the reader asks for.
func TestReadNeverAboveWatermark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := openTestLog(t, filepath.Join(t.TempDir(), "meshbox.db"), Options{})
	t.Cleanup(func() { l.Close() })
	now := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)
	payload := "x"
	first := &stream.Batch{Now: now, Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: "g"}}},
		Items: []stream.Item{{Kind: stream.KindEvent, Group: "g", Name: "first", Payload: &payload}}}
	if err := l.Append(ctx, first); err != nil {
		t.Fatal(err)
	}
	w := l.Watermark()

	inWindow, hold := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	// Cleanups run last first: should the test fail in the window, the batch is let go before
	// Close waits for it.
	t.Cleanup(release)
	l.wmu.Lock()
	l.committedHook = func() {
		l.committedHook = nil
		close(inWindow)
		<-hold
	}
	l.wmu.Unlock()
	second := &stream.Batch{Now: now.Add(time.Second), Items: []stream.Item{
		{Kind: stream.KindEvent, Group: "g", Name: "second", Payload: &payload},
		{Kind: stream.KindEvent, Group: "g", Name: "third", Payload: &payload},
	}}
	appended := make(chan error, 1)
	go func() { appended <- l.Append(ctx, second) }()
	<-inWindow

	// The window is real: the read pool already sees the batch.
	var newest int64
	if err := l.read.QueryRowContext(ctx, `SELECT max(cursor) FROM items`).Scan(&newest); err != nil {
		t.Fatal(err)
	}
	if newest != w+2 {
		t.Fatalf("the read pool sees cursor %d inside the commit, want %d", newest, w+2)
	}
	if got := l.Watermark(); got != w {
		t.Fatalf("watermark %d inside the commit, want %d", got, w)
	}
	for _, through := range []int64{w, w + 2, math.MaxInt64} {
		items, _, err := l.ReadAfter(ctx, "g", 0, through, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != 1 || items[0].Cursor != w {
			t.Fatalf("read through %d inside the commit: cursors %v, want only %d", through, logCursors(items), w)
		}
	}
	if c, err := l.CursorAt(ctx, "g", now, math.MaxInt64); err != nil || c != w {
		t.Fatalf("cursor after the first item inside the commit = %d (%v), want %d", c, err, w)
	}
	if st := l.Stats(ctx); st.RetainedItems != 1 {
		t.Fatalf("stats inside the commit count %d items, want 1", st.RetainedItems)
	}

	release()
	if err := <-appended; err != nil {
		t.Fatal(err)
	}
	if got := l.Watermark(); got != w+2 {
		t.Fatalf("watermark %d after the commit, want %d", got, w+2)
	}
	if items, _, err := l.ReadAfter(ctx, "g", 0, l.Watermark(), 100, 0); err != nil || len(items) != 3 {
		t.Fatalf("read after the commit: %d items (%v), want 3", len(items), err)
	}
}

func logCursors(items []stream.Item) []int64 {
	cs := make([]int64, len(items))
	for i, it := range items {
		cs[i] = it.Cursor
	}
	return cs
}
