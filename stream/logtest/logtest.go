// Package logtest is the conformance suite of stream.Log: the behaviour the group rules rely
// on, checked from outside through the interface only. Every implementation (SQLite today,
// NATS JetStream next) runs it from its own tests:
//
//	func TestLogConformance(t *testing.T) {
//		logtest.Run(t, func(t *testing.T, dir string) stream.Log { … open the log kept in dir … })
//	}
package logtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"meshbox/stream"
)

// Opener opens the log kept in dir. The suite calls it again on the same dir, after closing
// the log it returned, to simulate a restart; the reopened log must hold what was committed.
type Opener func(t *testing.T, dir string) stream.Log

// CommitFailer is implemented by logs that can be made to fail a batch on purpose. The suite
// checks atomicity and the cursors after a failure only on logs that implement it.
type CommitFailer interface {
	// FailNextCommit makes the next Append fail with an error wrapping err, after it has
	// written the batch but before the batch is committed (the worst moment: as late as
	// possible, with everything already written).
	FailNextCommit(err error)
}

// Run runs the whole suite, each part as a parallel subtest with its own directory.
func Run(t *testing.T, open Opener) {
	for _, tc := range []struct {
		name string
		run  func(*testing.T, *harness)
	}{
		{"CursorsIncrease", testCursorsIncrease},
		{"CursorsNeverReused/AfterPurgeToEmpty", testCursorsAfterPurgeToEmpty},
		{"CursorsNeverReused/AfterRestart", testCursorsAfterRestart},
		{"CursorsNeverReused/AfterFailedBatch", testCursorsAfterFailedBatch},
		{"ItemTimesNeverDecrease", testItemTimes},
		{"Watermark", testWatermark},
		{"BatchIsAtomic", testBatchIsAtomic},
		{"Load", testLoad},
		{"ReadAfter/LimitAndThrough", testReadAfterLimit},
		{"ReadAfter/MaxBytes", testReadAfterMaxBytes},
		{"Purge/ByAge", testPurgeByAge},
		{"Purge/TruncationPerGroup", testTruncationPerGroup},
		{"Purge/ManyItems", testPurgeMany},
		{"CursorAt", testCursorAt},
		{"ConcurrentReaders", testConcurrentReaders},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newHarness(t, open))
		})
	}
}

// t0 is the suite's clock origin; times are whole milliseconds, as every store keeps them.
var t0 = time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

// at is the suite time t0 + ms milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// harness holds the log under test and reopens it on the same directory.
type harness struct {
	t      *testing.T
	ctx    context.Context
	open   Opener
	dir    string
	log    stream.Log
	closed bool
}

func newHarness(t *testing.T, open Opener) *harness {
	h := &harness{t: t, ctx: context.Background(), open: open, dir: t.TempDir()}
	h.log = open(t, h.dir)
	t.Cleanup(func() {
		if !h.closed {
			h.log.Close()
		}
	})
	return h
}

// restart closes the log and opens it again on the same directory.
func (h *harness) restart() {
	h.t.Helper()
	if !h.closed {
		h.close()
	}
	h.log = h.open(h.t, h.dir)
	h.closed = false
}

func (h *harness) close() {
	h.t.Helper()
	if err := h.log.Close(); err != nil {
		h.t.Fatalf("close: %v", err)
	}
	h.closed = true
}

// append commits a batch at now and returns its items, cursors and times assigned.
func (h *harness) append(now time.Time, items []stream.Item, changes ...stream.Change) []stream.Item {
	h.t.Helper()
	b := &stream.Batch{Now: now, Items: items, Changes: changes}
	if err := h.log.Append(h.ctx, b); err != nil {
		h.t.Fatalf("append %d items, %d changes: %v", len(items), len(changes), err)
	}
	if n := len(b.Items); n > 0 {
		if w := h.log.Watermark(); w < b.Items[n-1].Cursor {
			h.t.Fatalf("watermark %d after an append whose last cursor is %d", w, b.Items[n-1].Cursor)
		}
	}
	return b.Items
}

// createGroups stores groups the way the rules create them, before any of their items.
func (h *harness) createGroups(now time.Time, ids ...string) {
	h.t.Helper()
	var cs []stream.Change
	for _, id := range ids {
		cs = append(cs, putGroup(group(id, now)))
	}
	h.append(now, nil, cs...)
}

// read is one ReadAfter that must succeed, checked against the contract.
func (h *harness) read(gid string, since, through int64, limit, maxBytes int) ([]stream.Item, bool) {
	h.t.Helper()
	items, truncated, err := h.log.ReadAfter(h.ctx, gid, since, through, limit, maxBytes)
	if err != nil {
		h.t.Fatalf("read %s after %d through %d: %v", gid, since, through, err)
	}
	if err := checkRead(gid, since, through, limit, items); err != nil {
		h.t.Fatal(err)
	}
	return items, truncated
}

// readAll reads every item of gid after since up to the watermark, a few at a time; truncated
// reports whether the first read was.
func (h *harness) readAll(gid string, since int64) ([]stream.Item, bool) {
	h.t.Helper()
	through := h.log.Watermark()
	var all []stream.Item
	first, truncated := true, false
	for {
		items, tr := h.read(gid, since, through, 3, 1<<20)
		if first {
			truncated, first = tr, false
		}
		if len(items) == 0 {
			return all, truncated
		}
		all = append(all, items...)
		since = items[len(items)-1].Cursor
	}
}

// checkRead checks what one ReadAfter returned: the group's items, in strictly increasing
// cursor order, after since, at most through, at most limit of them.
func checkRead(gid string, since, through int64, limit int, items []stream.Item) error {
	if len(items) > limit {
		return fmt.Errorf("read %s after %d: %d items, limit %d", gid, since, len(items), limit)
	}
	last := since
	for _, it := range items {
		switch {
		case it.Group != gid:
			return fmt.Errorf("read %s after %d: item %d of group %q", gid, since, it.Cursor, it.Group)
		case it.Cursor <= last:
			return fmt.Errorf("read %s after %d: cursor %d after %d", gid, since, it.Cursor, last)
		case it.Cursor > through:
			return fmt.Errorf("read %s after %d: cursor %d above through %d", gid, since, it.Cursor, through)
		case len(it.JSON) == 0:
			return fmt.Errorf("read %s after %d: item %d without its encoding", gid, since, it.Cursor)
		}
		last = it.Cursor
	}
	return nil
}

// sameItems reports how got differs from want (the items as Append returned them).
func sameItems(got, want []stream.Item) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d items %v, want %d %v", len(got), cursors(got), len(want), cursors(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Cursor != w.Cursor || g.Group != w.Group || !g.At.Equal(w.At) || !bytes.Equal(g.JSON, w.JSON) {
			return fmt.Errorf("item %d: got cursor %d group %q at %v %s, want cursor %d group %q at %v %s",
				i, g.Cursor, g.Group, g.At, g.JSON, w.Cursor, w.Group, w.At, w.JSON)
		}
		full, err := g.Decode()
		if err != nil {
			return fmt.Errorf("item %d: %v", i, err)
		}
		if full.Kind != w.Kind || full.Node != w.Node || full.Name != w.Name || full.Reason != w.Reason ||
			!samePayload(full.Payload, w.Payload) || !sameData(full.Data, w.Data) {
			return fmt.Errorf("item %d decodes to %+v, appended %+v", i, full, w)
		}
	}
	return nil
}

func samePayload(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func sameData(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func cursors(items []stream.Item) []int64 {
	cs := make([]int64, len(items))
	for i, it := range items {
		cs[i] = it.Cursor
	}
	return cs
}

// ofGroup returns the items of gid among items, in order.
func ofGroup(items []stream.Item, gid string) []stream.Item {
	var out []stream.Item
	for _, it := range items {
		if it.Group == gid {
			out = append(out, it)
		}
	}
	return out
}

func event(gid, name string, payload string) stream.Item {
	return stream.Item{Kind: stream.KindEvent, Group: gid, Node: "n1", Name: name, Payload: &payload}
}

// events returns n events of gid named prefix-0, prefix-1, …
func events(gid, prefix string, n int) []stream.Item {
	items := make([]stream.Item, n)
	for i := range items {
		items[i] = event(gid, fmt.Sprintf("%s-%d", prefix, i), fmt.Sprintf(`{"i":%d}`, i))
	}
	return items
}

func group(id string, now time.Time) stream.GroupRecord {
	return stream.GroupRecord{
		ID: id, Domain: "school.example", Name: "class " + id, Host: "n1",
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), HostSeenAt: now, UseWebSocket: true,
	}
}

func node(gid, id string, now time.Time) stream.NodeRecord {
	return stream.NodeRecord{
		Group: gid, ID: id, Name: "node " + id, TokenHash: []byte("hash of " + gid + "/" + id),
		JoinedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Minute),
	}
}

func putGroup(g stream.GroupRecord) stream.Change {
	return stream.Change{Kind: stream.PutGroup, Group: g}
}
func deleteGroup(id string) stream.Change {
	return stream.Change{Kind: stream.DeleteGroup, Group: stream.GroupRecord{ID: id}}
}
func putNode(n stream.NodeRecord) stream.Change { return stream.Change{Kind: stream.PutNode, Node: n} }
func deleteNode(gid, id string) stream.Change {
	return stream.Change{Kind: stream.DeleteNode, Node: stream.NodeRecord{Group: gid, ID: id}}
}

// increasing fails unless every item's cursor is above after and above the one before it.
func increasing(t *testing.T, after int64, items []stream.Item) int64 {
	t.Helper()
	for _, it := range items {
		if it.Cursor <= after {
			t.Fatalf("cursor %d handed out after %d", it.Cursor, after)
		}
		after = it.Cursor
	}
	return after
}

func testCursorsIncrease(t *testing.T, h *harness) {
	h.createGroups(at(0), "a", "b")
	var last int64
	var all []stream.Item
	// Sizes around the batch sizes an implementation may split inserts at.
	for i, n := range []int{1, 3, 0, 64, 65, 130, 7} {
		items := events("a", fmt.Sprintf("b%d", i), n)
		for j := range items {
			if j%3 == 0 {
				items[j].Group = "b"
			}
		}
		got := h.append(at(i), items)
		if len(got) != n {
			t.Fatalf("append of %d items returned %d", n, len(got))
		}
		last = increasing(t, last, got)
		for _, it := range got {
			full, err := stream.DecodeItem(it.JSON)
			if err != nil || full.Cursor != it.Cursor || !full.At.Equal(it.At) || full.Name != it.Name {
				t.Fatalf("item %d encodes as %s (%v)", it.Cursor, it.JSON, err)
			}
		}
		all = append(all, got...)
	}
	for _, gid := range []string{"a", "b"} {
		got, truncated := h.readAll(gid, 0)
		if truncated {
			t.Fatalf("group %s truncated without a purge", gid)
		}
		if err := sameItems(got, ofGroup(all, gid)); err != nil {
			t.Fatalf("group %s: %v", gid, err)
		}
	}
}

func testCursorsAfterPurgeToEmpty(t *testing.T, h *harness) {
	h.createGroups(at(0), "a")
	last := increasing(t, 0, h.append(at(0), events("a", "old", 5)))
	res, err := h.log.Purge(h.ctx, at(1))
	if err != nil {
		t.Fatal(err)
	}
	if res.Items != 5 || res.Through != last {
		t.Fatalf("purge = %+v, want 5 items through %d", res, last)
	}
	if w := h.log.Watermark(); w != last {
		t.Fatalf("watermark %d after purging everything, want %d", w, last)
	}
	// A reader holding the last cursor must never see it handed out again.
	last = increasing(t, last, h.append(at(2), events("a", "new", 2)))
	if _, err := h.log.Purge(h.ctx, at(3)); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if w := h.log.Watermark(); w != last {
		t.Fatalf("watermark %d after purging everything and a restart, want %d", w, last)
	}
	st, err := h.log.Load(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Watermark != last {
		t.Fatalf("loaded watermark %d after purging everything, want %d", st.Watermark, last)
	}
	increasing(t, last, h.append(at(4), events("a", "after-restart", 1)))
}

func testCursorsAfterRestart(t *testing.T, h *harness) {
	if w := h.log.Watermark(); w != 0 {
		t.Fatalf("watermark of a new log = %d, want 0", w)
	}
	h.createGroups(at(0), "a")
	last := increasing(t, 0, h.append(at(0), events("a", "first", 3)))
	h.restart()
	// Appending before Load must not reuse cursors either: the log knows its own position.
	if w := h.log.Watermark(); w != last {
		t.Fatalf("watermark %d after a restart, want %d", w, last)
	}
	last = increasing(t, last, h.append(at(1), events("a", "second", 2)))
	h.restart()
	if _, err := h.log.Load(h.ctx); err != nil {
		t.Fatal(err)
	}
	increasing(t, last, h.append(at(2), events("a", "third", 2)))
	got, _ := h.readAll("a", 0)
	if len(got) != 7 {
		t.Fatalf("read %d items after two restarts, want 7", len(got))
	}
}

func testCursorsAfterFailedBatch(t *testing.T, h *harness) {
	f, ok := h.log.(CommitFailer)
	if !ok {
		t.Skip("the log cannot be made to fail a batch (it does not implement logtest.CommitFailer)")
	}
	h.createGroups(at(0), "a")
	last := increasing(t, 0, h.append(at(0), events("a", "ok", 2)))
	boom := errors.New("disk on fire")
	f.FailNextCommit(boom)
	b := &stream.Batch{Now: at(1), Items: events("a", "lost", 3)}
	if err := h.log.Append(h.ctx, b); !errors.Is(err, boom) {
		t.Fatalf("append with a failing commit: err = %v, want %v", err, boom)
	}
	if w := h.log.Watermark(); w != last {
		t.Fatalf("watermark %d after a failed batch, want %d", w, last)
	}
	// Cursors the failed batch was given (if any) are not handed out again either.
	high := last
	for _, it := range b.Items {
		high = max(high, it.Cursor)
	}
	got := h.append(at(2), events("a", "next", 2))
	increasing(t, high, got)
	all, _ := h.readAll("a", 0)
	for _, it := range all {
		if it.Cursor > last && it.Cursor < got[0].Cursor {
			t.Fatalf("item %d of the failed batch is readable", it.Cursor)
		}
	}
	last = got[len(got)-1].Cursor
	f.FailNextCommit(boom)
	if err := h.log.Append(h.ctx, &stream.Batch{Now: at(3), Items: events("a", "lost-again", 1)}); !errors.Is(err, boom) {
		t.Fatalf("append with a failing commit: err = %v, want %v", err, boom)
	}
	h.restart()
	increasing(t, last, h.append(at(4), events("a", "after-restart", 1)))
}

func testItemTimes(t *testing.T, h *harness) {
	h.createGroups(at(0), "a")
	check := func(items []stream.Item, want time.Time) {
		t.Helper()
		for _, it := range items {
			if !it.At.Equal(want) {
				t.Fatalf("item %d stamped %v, want %v", it.Cursor, it.At, want)
			}
		}
	}
	check(h.append(at(1000), events("a", "x", 2)), at(1000))
	check(h.append(at(2000), events("a", "y", 2)), at(2000))
	// The clock stepped back: items keep the newest time so far.
	check(h.append(at(1500), events("a", "z", 2)), at(2000))
	h.restart()
	if _, err := h.log.Load(h.ctx); err != nil {
		t.Fatal(err)
	}
	check(h.append(at(500), events("a", "after-restart", 1)), at(2000))
	check(h.append(at(3000), events("a", "later", 1)), at(3000))
	// Not even once every item is purged and the log restarted: a client holds their times.
	if _, err := h.log.Purge(h.ctx, at(3001)); err != nil {
		t.Fatal(err)
	}
	h.restart()
	if _, err := h.log.Load(h.ctx); err != nil {
		t.Fatal(err)
	}
	check(h.append(at(100), events("a", "after-purge", 1)), at(3000))
	all, _ := h.readAll("a", 0)
	for i := 1; i < len(all); i++ {
		if all[i].At.Before(all[i-1].At) {
			t.Fatalf("item %d at %v after item %d at %v", all[i].Cursor, all[i].At, all[i-1].Cursor, all[i-1].At)
		}
	}
}

func testWatermark(t *testing.T, h *harness) {
	st, err := h.log.Load(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Watermark != 0 || h.log.Watermark() != 0 {
		t.Fatalf("new log: loaded watermark %d, Watermark %d, want 0", st.Watermark, h.log.Watermark())
	}
	h.createGroups(at(0), "a")
	items := h.append(at(0), events("a", "x", 4))
	w := h.log.Watermark()
	// A batch of changes only leaves the watermark where it was.
	h.append(at(1), nil, putNode(node("a", "n2", at(1))))
	if got := h.log.Watermark(); got != w {
		t.Fatalf("watermark moved from %d to %d on a batch without items", w, got)
	}
	// A reader bounded below the watermark gets nothing above its bound.
	got, _ := h.read("a", 0, items[1].Cursor, 100, 1<<20)
	if err := sameItems(got, items[:2]); err != nil {
		t.Fatalf("read through %d: %v", items[1].Cursor, err)
	}
	// A bound above the watermark breaks the caller's side of the contract; the log may refuse
	// it, but must not show anything above the watermark.
	over, _, err := h.log.ReadAfter(h.ctx, "a", 0, math.MaxInt64, 100, 1<<20)
	if err == nil {
		for _, it := range over {
			if it.Cursor > h.log.Watermark() {
				t.Fatalf("read through MaxInt64 returned %d above the watermark %d", it.Cursor, h.log.Watermark())
			}
		}
	}
	h.restart()
	if got := h.log.Watermark(); got != w {
		t.Fatalf("watermark %d after a restart, want %d", got, w)
	}
	if st, err = h.log.Load(h.ctx); err != nil || st.Watermark != w {
		t.Fatalf("loaded watermark %d (%v), want %d", st.Watermark, err, w)
	}
}

// wantState compares a loaded state with the groups and nodes expected, in any order. Only ended
// groups' LastCursor is compared: it is not defined for live ones.
func wantState(t *testing.T, st stream.State, groups []stream.GroupRecord, nodes []stream.NodeRecord) {
	t.Helper()
	gotGroups := map[string]stream.GroupRecord{}
	for _, g := range st.Groups {
		if _, dup := gotGroups[g.ID]; dup {
			t.Fatalf("group %s loaded twice", g.ID)
		}
		gotGroups[g.ID] = g
	}
	if len(gotGroups) != len(groups) {
		t.Fatalf("loaded %d groups %v, want %d", len(st.Groups), st.Groups, len(groups))
	}
	for _, w := range groups {
		g, ok := gotGroups[w.ID]
		if !ok {
			t.Fatalf("group %s not loaded", w.ID)
		}
		if g.Domain != w.Domain || g.Name != w.Name || g.Host != w.Host || !g.CreatedAt.Equal(w.CreatedAt) ||
			!g.ExpiresAt.Equal(w.ExpiresAt) || !g.HostSeenAt.Equal(w.HostSeenAt) || g.UseWebSocket != w.UseWebSocket ||
			!g.EndedAt.Equal(w.EndedAt) || g.EndReason != w.EndReason || (!w.EndedAt.IsZero() && g.LastCursor != w.LastCursor) {
			t.Fatalf("group %s loaded as %+v, want %+v", w.ID, g, w)
		}
	}
	type key struct{ g, n string }
	gotNodes := map[key]stream.NodeRecord{}
	for _, n := range st.Nodes {
		if _, dup := gotNodes[key{n.Group, n.ID}]; dup {
			t.Fatalf("node %s/%s loaded twice", n.Group, n.ID)
		}
		gotNodes[key{n.Group, n.ID}] = n
	}
	if len(gotNodes) != len(nodes) {
		t.Fatalf("loaded %d nodes %+v, want %d", len(st.Nodes), st.Nodes, len(nodes))
	}
	for _, w := range nodes {
		n, ok := gotNodes[key{w.Group, w.ID}]
		if !ok {
			t.Fatalf("node %s/%s not loaded", w.Group, w.ID)
		}
		if n.Name != w.Name || !bytes.Equal(n.TokenHash, w.TokenHash) || !n.JoinedAt.Equal(w.JoinedAt) ||
			!n.LastSeen.Equal(w.LastSeen) || !n.ExpiresAt.Equal(w.ExpiresAt) || !sameData(n.Data, w.Data) || !n.DataAt.Equal(w.DataAt) {
			t.Fatalf("node %s/%s loaded as %+v, want %+v", w.Group, w.ID, n, w)
		}
	}
}

func (h *harness) load() stream.State {
	h.t.Helper()
	st, err := h.log.Load(h.ctx)
	if err != nil {
		h.t.Fatalf("load: %v", err)
	}
	return st
}

func testLoad(t *testing.T, h *harness) {
	wantState(t, h.load(), nil, nil)
	a, b, c := group("a", at(0)), group("b", at(0)), group("c", at(0))
	a1, a2, b1, b2, c1 := node("a", "n1", at(0)), node("a", "n2", at(0)), node("b", "n1", at(0)), node("b", "n2", at(0)), node("c", "n1", at(0))
	// A group and its host in the same batch, as the rules create them.
	h.append(at(0), events("a", "hello", 1), putGroup(a), putNode(a1))
	h.append(at(0), nil, putGroup(b), putNode(b1), putNode(b2), putGroup(c), putNode(c1))
	// Replace records whole, remove a node, forget a group with its nodes.
	a2.Data, a2.DataAt = map[string]string{"score": "3", "costume": "cat"}, at(10)
	a1.Name, a1.LastSeen, a1.ExpiresAt = "renamed", at(20), at(20).Add(time.Minute)
	a.HostSeenAt, a.UseWebSocket, a.Name = at(20), false, "renamed class"
	h.append(at(20), events("a", "more", 2), putNode(a2), putNode(a1), putGroup(a))
	h.append(at(30), nil, deleteNode("b", "n2"), deleteGroup("c"))
	// End group b: its dissolve item is its last; its nodes stay so their holders can read it.
	b.EndedAt, b.EndReason = at(40), stream.ReasonHost
	dissolve := stream.Item{Kind: stream.KindDissolve, Group: "b", Reason: stream.ReasonHost}
	got := h.append(at(40), []stream.Item{event("b", "bye", "1"), dissolve}, putGroup(b))
	b.LastCursor = got[1].Cursor
	// Items of other groups after the dissolve do not change b's last cursor.
	h.append(at(50), events("a", "after", 2))
	groups, nodes := []stream.GroupRecord{a, b}, []stream.NodeRecord{a1, a2, b1}
	wantState(t, h.load(), groups, nodes)
	h.restart()
	st := h.load()
	wantState(t, st, groups, nodes)
	if st.Watermark != h.log.Watermark() || st.Watermark == 0 {
		t.Fatalf("loaded watermark %d, Watermark %d", st.Watermark, h.log.Watermark())
	}
	// Purging the dissolve item (and everything else) keeps b's last cursor.
	if res, err := h.log.Purge(h.ctx, at(51)); err != nil || res.Items == 0 {
		t.Fatalf("purge: %+v %v", res, err)
	}
	wantState(t, h.load(), groups, nodes)
	h.restart()
	wantState(t, h.load(), groups, nodes)
}

func testBatchIsAtomic(t *testing.T, h *harness) {
	f, ok := h.log.(CommitFailer)
	if !ok {
		t.Skip("the log cannot be made to fail a batch (it does not implement logtest.CommitFailer)")
	}
	a, n1, n2 := group("a", at(0)), node("a", "n1", at(0)), node("a", "n2", at(0))
	before := h.append(at(0), events("a", "kept", 2), putGroup(a), putNode(n1), putNode(n2))
	w := h.log.Watermark()
	boom := errors.New("disk on fire")
	f.FailNextCommit(boom)
	changed := a
	changed.Name, changed.EndedAt, changed.EndReason = "changed", at(5), stream.ReasonAdmin
	n1b := n1
	n1b.Data = map[string]string{"k": "v"}
	err := h.log.Append(h.ctx, &stream.Batch{Now: at(5), Items: append(events("a", "lost", 70), events("b", "lost", 3)...), Changes: []stream.Change{
		putGroup(changed), putNode(n1b), deleteNode("a", "n2"), putGroup(group("b", at(5))), putNode(node("b", "n1", at(5))),
	}})
	if !errors.Is(err, boom) {
		t.Fatalf("append with a failing commit: err = %v, want %v", err, boom)
	}
	if got := h.log.Watermark(); got != w {
		t.Fatalf("watermark %d after a failed batch, want %d", got, w)
	}
	check := func() {
		t.Helper()
		wantState(t, h.load(), []stream.GroupRecord{a}, []stream.NodeRecord{n1, n2})
		got, _ := h.readAll("a", 0)
		if err := sameItems(got, before); err != nil {
			t.Fatalf("items of a after a failed batch: %v", err)
		}
		if got, _ := h.readAll("b", 0); len(got) != 0 {
			t.Fatalf("%d items of b after a failed batch", len(got))
		}
	}
	check()
	h.restart()
	check()
	// The failure was one batch's: the next commits whole.
	after := h.append(at(6), events("b", "ok", 2), putGroup(group("b", at(6))), putNode(node("b", "n1", at(6))))
	h.restart()
	wantState(t, h.load(), []stream.GroupRecord{a, group("b", at(6))}, []stream.NodeRecord{n1, n2, node("b", "n1", at(6))})
	if got, _ := h.readAll("b", 0); sameItems(got, after) != nil {
		t.Fatalf("items of b: %v", sameItems(got, after))
	}
}

func testReadAfterLimit(t *testing.T, h *harness) {
	h.createGroups(at(0), "a", "b")
	var all []stream.Item
	for i := range 10 {
		all = append(all, h.append(at(i), []stream.Item{event("a", fmt.Sprint("a", i), "x"), event("b", fmt.Sprint("b", i), "y")})...)
	}
	as := ofGroup(all, "a")
	w := h.log.Watermark()
	got, _ := h.read("a", 0, w, 3, 1<<20)
	if err := sameItems(got, as[:3]); err != nil {
		t.Fatalf("first 3: %v", err)
	}
	got, _ = h.read("a", as[2].Cursor, w, 3, 1<<20)
	if err := sameItems(got, as[3:6]); err != nil {
		t.Fatalf("next 3: %v", err)
	}
	// Between two of the group's cursors (another group's item): the next of the group.
	got, _ = h.read("a", as[2].Cursor+1, w, 1, 1<<20)
	if err := sameItems(got, as[3:4]); err != nil {
		t.Fatalf("after a cursor of another group: %v", err)
	}
	got, _ = h.read("a", as[5].Cursor, as[7].Cursor, 100, 1<<20)
	if err := sameItems(got, as[6:8]); err != nil {
		t.Fatalf("through %d: %v", as[7].Cursor, err)
	}
	if got, truncated := h.read("a", w, w, 100, 1<<20); len(got) != 0 || truncated {
		t.Fatalf("at the watermark: %d items, truncated %v", len(got), truncated)
	}
	if got, truncated := h.read("nobody", 0, w, 100, 1<<20); len(got) != 0 || truncated {
		t.Fatalf("unknown group: %d items, truncated %v", len(got), truncated)
	}
}

func testReadAfterMaxBytes(t *testing.T, h *harness) {
	h.createGroups(at(0), "a")
	var items []stream.Item
	for i, size := range []int{10, 300, 20, 1000, 5, 5, 5} {
		items = append(items, event("a", fmt.Sprint("e", i), string(bytes.Repeat([]byte{'p'}, size))))
	}
	all := h.append(at(0), items)
	w := h.log.Watermark()
	size := func(items []stream.Item) (n int) {
		for _, it := range items {
			n += len(it.JSON)
		}
		return n
	}
	for _, tc := range []struct {
		since    int
		maxBytes int
		want     int
	}{
		{0, 1, 1},
		{1, 1, 1}, // an item larger than the budget still comes, alone
		{0, size(all[:1]), 1},
		{0, size(all[:1]) + 1, 2},
		{0, size(all[:2]), 2},
		{0, size(all[:3]) + 1, 4},
		{2, size(all[2:4]) - 1, 2},
		{0, 1 << 20, 7},
	} {
		since := int64(0)
		if tc.since > 0 {
			since = all[tc.since-1].Cursor
		}
		got, _ := h.read("a", since, w, 100, tc.maxBytes)
		if err := sameItems(got, all[tc.since:tc.since+tc.want]); err != nil {
			t.Fatalf("after item %d with %d bytes: %v", tc.since, tc.maxBytes, err)
		}
	}
	// The limit still applies within the byte budget.
	got, _ := h.read("a", 0, w, 2, 1<<20)
	if err := sameItems(got, all[:2]); err != nil {
		t.Fatalf("limit 2: %v", err)
	}
}

func testPurgeByAge(t *testing.T, h *harness) {
	h.createGroups(at(0), "a", "b")
	old := h.append(at(1000), []stream.Item{event("a", "1", "x"), event("b", "1", "x"), event("a", "2", "x")})
	edge := h.append(at(2000), []stream.Item{event("a", "3", "x")})
	fresh := h.append(at(3000), []stream.Item{event("b", "2", "x")})
	if res, err := h.log.Purge(h.ctx, at(1000)); err != nil || res.Items != 0 {
		t.Fatalf("purge before every item: %+v %v", res, err)
	}
	// Items stamped before the cutoff go; one stamped at the cutoff stays.
	res, err := h.log.Purge(h.ctx, at(2000))
	if err != nil {
		t.Fatal(err)
	}
	if res.Items != 3 || res.Through != old[2].Cursor {
		t.Fatalf("purge = %+v, want 3 items through %d", res, old[2].Cursor)
	}
	if res, err := h.log.Purge(h.ctx, at(2000)); err != nil || res.Items != 0 {
		t.Fatalf("purge again: %+v %v", res, err)
	}
	if got, _ := h.readAll("a", 0); sameItems(got, edge) != nil {
		t.Fatalf("group a after the purge: %v", sameItems(got, edge))
	}
	if got, _ := h.readAll("b", 0); sameItems(got, fresh) != nil {
		t.Fatalf("group b after the purge: %v", sameItems(got, fresh))
	}
	if st := h.log.Stats(h.ctx); st.PurgedThrough != old[2].Cursor || !st.OldestItemAt.Equal(at(2000)) || st.RetainedItems < 2 {
		t.Fatalf("stats after the purge: %+v", st)
	}
	h.restart()
	if st := h.log.Stats(h.ctx); st.PurgedThrough != old[2].Cursor {
		t.Fatalf("purged through %d after a restart, want %d", st.PurgedThrough, old[2].Cursor)
	}
	if got, _ := h.readAll("a", 0); sameItems(got, edge) != nil {
		t.Fatalf("group a after a restart: %v", sameItems(got, edge))
	}
}

func testTruncationPerGroup(t *testing.T, h *harness) {
	h.createGroups(at(0), "a", "b", "c", "quiet")
	// a: 1 3 5 (old) 7 (fresh); b: 2 4 (old) 8 (fresh); c: 6 (fresh), in cursor order.
	got := h.append(at(1000), []stream.Item{event("a", "1", "x"), event("b", "2", "x"), event("a", "3", "x"), event("b", "4", "x"), event("a", "5", "x")})
	a1, b2, a3, b4, a5 := got[0].Cursor, got[1].Cursor, got[2].Cursor, got[3].Cursor, got[4].Cursor
	got = h.append(at(2000), []stream.Item{event("c", "6", "x"), event("a", "7", "x"), event("b", "8", "x")})
	c6, a7, b8 := got[0].Cursor, got[1].Cursor, got[2].Cursor
	if res, err := h.log.Purge(h.ctx, at(2000)); err != nil || res.Items != 5 || res.Through != a5 {
		t.Fatalf("purge = %+v, %v; want 5 items through %d", res, err, a5)
	}
	check := func(when string) {
		t.Helper()
		for _, tc := range []struct {
			gid       string
			since     int64
			truncated bool
			next      int64 // the first cursor read, 0 for none
		}{
			{"a", 0, true, a7},
			{"a", a3, true, a7},  // behind a5, the group's own newest purged item
			{"a", a5, false, a7}, // saw every purged item of its group
			{"a", b4, true, a7},  // b4 is between a3 and a5
			{"b", 0, true, b8},
			{"b", a1, true, b8},
			{"b", b4, false, b8}, // behind the purge's end (a5) but not behind its own group's
			{"b", a5, false, b8},
			{"c", 0, false, c6}, // nothing of c was purged
			{"quiet", 0, false, 0},
			{"a", a7, false, 0},
			{"b", b2, true, b8},
		} {
			items, truncated := h.read(tc.gid, tc.since, h.log.Watermark(), 1, 1<<20)
			if truncated != tc.truncated {
				t.Fatalf("%s: group %s after %d: truncated = %v, want %v", when, tc.gid, tc.since, truncated, tc.truncated)
			}
			var next int64
			if len(items) > 0 {
				next = items[0].Cursor
			}
			if next != tc.next {
				t.Fatalf("%s: group %s after %d: first cursor %d, want %d", when, tc.gid, tc.since, next, tc.next)
			}
		}
	}
	check("after the purge")
	h.restart()
	check("after a restart")
	h.load()
	check("after a restart and Load")
	// A second purge moves each group's mark to its own newest purged item.
	if res, err := h.log.Purge(h.ctx, at(2001)); err != nil || res.Items != 3 || res.Through != b8 {
		t.Fatalf("purge = %+v, %v; want 3 items through %d", res, err, b8)
	}
	for _, tc := range []struct {
		gid       string
		since     int64
		truncated bool
	}{
		{"a", a5, true}, {"a", a7, false}, {"b", a7, true}, {"b", b8, false}, {"c", 0, true}, {"c", c6, false}, {"quiet", 0, false},
	} {
		if _, truncated := h.read(tc.gid, tc.since, h.log.Watermark(), 1, 1<<20); truncated != tc.truncated {
			t.Fatalf("second purge: group %s after %d: truncated = %v, want %v", tc.gid, tc.since, truncated, tc.truncated)
		}
	}
}

func testPurgeMany(t *testing.T, h *harness) {
	h.createGroups(at(0), "a", "b")
	// More items than an implementation may delete in one go, in batches of mixed groups.
	var all []stream.Item
	for i := range 9 {
		items := events("a", fmt.Sprint(i), 500)
		for j := range items {
			if j%5 == 0 {
				items[j].Group = "b"
			}
		}
		all = append(all, h.append(at(i), items)...)
	}
	keep := h.append(at(100), events("a", "keep", 1))
	res, err := h.log.Purge(h.ctx, at(100))
	if err != nil {
		t.Fatal(err)
	}
	if res.Items != len(all) || res.Through != all[len(all)-1].Cursor {
		t.Fatalf("purge = %+v, want %d items through %d", res, len(all), all[len(all)-1].Cursor)
	}
	lastA, lastB := ofGroup(all, "a"), ofGroup(all, "b")
	for _, tc := range []struct {
		gid       string
		since     int64
		truncated bool
	}{
		{"a", lastA[len(lastA)-2].Cursor, true}, {"a", lastA[len(lastA)-1].Cursor, false},
		{"b", lastB[len(lastB)-2].Cursor, true}, {"b", lastB[len(lastB)-1].Cursor, false},
	} {
		if _, truncated := h.read(tc.gid, tc.since, h.log.Watermark(), 10, 1<<20); truncated != tc.truncated {
			t.Fatalf("group %s after %d: truncated = %v, want %v", tc.gid, tc.since, truncated, tc.truncated)
		}
	}
	if got, _ := h.readAll("a", 0); sameItems(got, keep) != nil {
		t.Fatalf("after the purge: %v", sameItems(got, keep))
	}
}

func testCursorAt(t *testing.T, h *harness) {
	h.createGroups(at(0), "a", "b")
	var all []stream.Item
	all = append(all, h.append(at(1000), []stream.Item{event("a", "1", "x"), event("b", "1", "x"), event("a", "2", "x")})...)
	all = append(all, h.append(at(2000), []stream.Item{event("b", "2", "x")})...)
	all = append(all, h.append(at(3000), []stream.Item{event("a", "3", "x"), event("a", "4", "x")})...)
	as := ofGroup(all, "a")
	w := h.log.Watermark()
	for _, tc := range []struct {
		t       time.Time
		through int64
		want    []stream.Item // what reading after the cursor up to through gives
	}{
		{at(999), w, as},
		{at(1000), w, as[2:]},
		{at(1999), w, as[2:]},
		{at(2500), w, as[2:]},
		{at(3000), w, nil},
		{at(9000), w, nil},
		{at(999), as[1].Cursor, as[:2]},
		{at(1000), as[2].Cursor - 1, nil},
		{at(999), as[0].Cursor - 1, nil},
	} {
		c, err := h.log.CursorAt(h.ctx, "a", tc.t, tc.through)
		if err != nil {
			t.Fatal(err)
		}
		if c > tc.through {
			t.Fatalf("cursor at %v through %d = %d, above through", tc.t, tc.through, c)
		}
		if len(tc.want) == 0 && c != tc.through {
			t.Fatalf("cursor at %v through %d = %d, want through when no item is later", tc.t, tc.through, c)
		}
		got, _ := h.read("a", c, tc.through, 100, 1<<20)
		if err := sameItems(got, tc.want); err != nil {
			t.Fatalf("reading after the cursor at %v through %d (%d): %v", tc.t, tc.through, c, err)
		}
	}
}

// testConcurrentReaders appends while readers follow each group, one at the head and one kept
// behind by a small limit. Every read is checked against the contract as it happens; at the end
// each reader must have seen exactly its group's items. The loops are bounded by counts.
func testConcurrentReaders(t *testing.T, h *harness) {
	groups := []string{"a", "b", "c"}
	h.createGroups(at(0), groups...)
	const batches = 150
	var (
		mu       sync.Mutex
		appended = map[string][]stream.Item{}
	)
	writerDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		for i := range batches {
			var items []stream.Item
			for j := range 1 + i%5 {
				items = append(items, event(groups[(i+j)%len(groups)], fmt.Sprint(i, "-", j), fmt.Sprintf(`{"i":%d}`, i)))
			}
			b := &stream.Batch{Now: at(i), Items: items}
			if err := h.log.Append(h.ctx, b); err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
			if w := h.log.Watermark(); w < b.Items[len(b.Items)-1].Cursor {
				t.Errorf("watermark %d after appending up to %d", w, b.Items[len(b.Items)-1].Cursor)
				return
			}
			mu.Lock()
			for _, it := range b.Items {
				appended[it.Group] = append(appended[it.Group], it)
			}
			mu.Unlock()
		}
	}()
	type reader struct {
		gid   string
		limit int
		seen  []stream.Item
	}
	var readers []*reader
	for _, gid := range groups {
		readers = append(readers, &reader{gid: gid, limit: 1000}, &reader{gid: gid, limit: 2})
	}
	for _, r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var since, lastWatermark int64
			done := false
			// While the writer runs, a bounded number of reads; then drain to the final watermark.
			for i := 0; ; i++ {
				if !done && i >= 2*batches {
					<-writerDone
					done = true
				}
				if !done {
					select {
					case <-writerDone:
						done = true
					default:
					}
				}
				final := done
				through := h.log.Watermark()
				if through < lastWatermark {
					t.Errorf("watermark went back from %d to %d", lastWatermark, through)
					return
				}
				lastWatermark = through
				items, truncated, err := h.log.ReadAfter(h.ctx, r.gid, since, through, r.limit, 1<<20)
				if err != nil {
					t.Errorf("read %s after %d: %v", r.gid, since, err)
					return
				}
				if err := checkRead(r.gid, since, through, r.limit, items); err != nil {
					t.Error(err)
					return
				}
				if truncated {
					t.Errorf("read %s after %d: truncated without a purge", r.gid, since)
					return
				}
				if w := h.log.Watermark(); len(items) > 0 && items[len(items)-1].Cursor > w {
					t.Errorf("read %s: cursor %d above the watermark %d", r.gid, items[len(items)-1].Cursor, w)
					return
				}
				r.seen = append(r.seen, items...)
				if len(items) > 0 {
					since = items[len(items)-1].Cursor
				} else if final {
					// The writer is done and the group is read to the final watermark.
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, r := range readers {
		if err := sameItems(r.seen, appended[r.gid]); err != nil {
			t.Fatalf("reader of %s with limit %d: %v", r.gid, r.limit, err)
		}
	}
}

func testClosed(t *testing.T, h *harness) {
	h.createGroups(at(0), "a")
	h.append(at(0), events("a", "x", 1))
	if err := h.log.Ping(h.ctx); err != nil {
		t.Fatalf("ping: %v", err)
	}
	h.close()
	err := h.log.Append(h.ctx, &stream.Batch{Now: at(1), Items: events("a", "late", 1)})
	if !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("append after close: err = %v, want stream.ErrClosed", err)
	}
	if err := h.log.Append(h.ctx, &stream.Batch{Now: at(1), Changes: []stream.Change{putNode(node("a", "n2", at(1)))}}); !errors.Is(err, stream.ErrClosed) {
		t.Fatalf("append of changes after close: err = %v, want stream.ErrClosed", err)
	}
	// What was committed before the close is there after reopening.
	h.restart()
	if got, _ := h.readAll("a", 0); len(got) != 1 {
		t.Fatalf("%d items after reopening, want 1", len(got))
	}
}
