package jetstream_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/stream"
)

// opener opens a log over the stream named name; calling it again with the same name opens
// another instance over the same stream (as a second meshbox would).
type opener func(t *testing.T, name string) *jetstream.Log

func openOn(c *natstest.Cluster, replicas int) opener {
	return func(t *testing.T, name string) *jetstream.Log {
		t.Helper()
		l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{
			Stream: strings.ToUpper(name), Subjects: name, Replicas: replicas, MaxBatch: 64,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		if _, err := l.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return l
	}
}

func TestLogSingleServer(t *testing.T) {
	t.Parallel()
	testContract(t, openOn(natstest.Run(t), 1))
}

func TestLogCluster(t *testing.T) {
	t.Parallel()
	testContract(t, openOn(natstest.RunCluster(t, 3), 3))
}

var names atomic.Int64

func uniqueName() string { return fmt.Sprintf("mb%d", names.Add(1)) }

func event(gid, name string) stream.Item {
	p := "payload " + name
	return stream.Item{Kind: stream.KindEvent, Group: gid, Node: "n1", Name: name, Payload: &p}
}

func appendOK(t *testing.T, l stream.Log, b *stream.Batch) {
	t.Helper()
	if err := l.Append(context.Background(), b); err != nil {
		t.Fatalf("append: %v", err)
	}
}

func readAll(t *testing.T, l stream.Log, gid string, since int64) ([]stream.Item, bool) {
	t.Helper()
	items, trunc, err := l.ReadAfter(context.Background(), gid, since, l.Watermark(), 10000, 0)
	if err != nil {
		t.Fatalf("read %s after %d: %v", gid, since, err)
	}
	return items, trunc
}

func names_(items []stream.Item) string {
	var s []string
	for _, it := range items {
		s = append(s, it.Name)
	}
	return strings.Join(s, ",")
}

func group(id string, at time.Time) stream.GroupRecord {
	return stream.GroupRecord{ID: id, Domain: "d", Name: "g " + id, Host: "h", CreatedAt: at, ExpiresAt: at.Add(time.Hour), HostSeenAt: at}
}

func testContract(t *testing.T, open opener) {
	base := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)

	t.Run("append assigns cursors and times; reads are ordered and bounded", func(t *testing.T) {
		t.Parallel()
		l := open(t, uniqueName())
		b := &stream.Batch{Now: base, Items: []stream.Item{event("a", "1"), event("b", "x"), event("a", "2")}}
		appendOK(t, l, b)
		c := []int64{b.Items[0].Cursor, b.Items[1].Cursor, b.Items[2].Cursor}
		if !(c[0] > 0 && c[0] < c[1] && c[1] < c[2]) {
			t.Fatalf("cursors %v not increasing", c)
		}
		if l.Watermark() < c[2] {
			t.Fatalf("watermark %d below last cursor %d", l.Watermark(), c[2])
		}
		// A batch stamped earlier than the one before gets the earlier batch's time.
		b2 := &stream.Batch{Now: base.Add(-time.Minute), Items: []stream.Item{event("a", "3")}}
		appendOK(t, l, b2)
		if b2.Items[0].At.Before(b.Items[2].At) || b2.Items[0].Cursor <= c[2] {
			t.Fatalf("item after %v/%d got %v/%d", b.Items[2].At, c[2], b2.Items[0].At, b2.Items[0].Cursor)
		}
		items, trunc := readAll(t, l, "a", 0)
		if got := names_(items); got != "1,2,3" || trunc {
			t.Fatalf("read a = %s (truncated %v), want 1,2,3", got, trunc)
		}
		full, err := items[0].Decode()
		if err != nil || *full.Payload != "payload 1" || full.Cursor != c[0] || !full.At.Equal(base) || full.Group != "a" {
			t.Fatalf("item decodes to %+v, %v", full, err)
		}
		if string(items[0].JSON) != string(b.Items[0].JSON) {
			t.Fatalf("read encoding %s differs from appended %s", items[0].JSON, b.Items[0].JSON)
		}
		// since and through bound the read, limit and maxBytes cut it.
		items, _, _ = l.ReadAfter(context.Background(), "a", c[0], c[2], 100, 0)
		if got := names_(items); got != "2" {
			t.Fatalf("read a in (%d, %d] = %s, want 2", c[0], c[2], got)
		}
		items, _, _ = l.ReadAfter(context.Background(), "a", 0, l.Watermark(), 2, 0)
		if got := names_(items); got != "1,2" {
			t.Fatalf("read a limit 2 = %s", got)
		}
		items, _, _ = l.ReadAfter(context.Background(), "a", 0, l.Watermark(), 100, 1)
		if got := names_(items); got != "1" {
			t.Fatalf("read a maxBytes 1 = %s", got)
		}
		items, _ = readAll(t, l, "nobody", 0)
		if len(items) != 0 {
			t.Fatalf("unknown group has items %s", names_(items))
		}
	})

	t.Run("a batch larger than MaxBatch is stored whole and in order", func(t *testing.T) {
		t.Parallel()
		l := open(t, uniqueName())
		b := &stream.Batch{Now: base}
		var want []string
		for i := range 150 {
			b.Items = append(b.Items, event("big", fmt.Sprint(i)))
			want = append(want, fmt.Sprint(i))
		}
		b.Changes = []stream.Change{{Kind: stream.PutGroup, Group: group("big", base)}}
		appendOK(t, l, b)
		items, _ := readAll(t, l, "big", 0)
		if got := names_(items); got != strings.Join(want, ",") {
			t.Fatalf("read %s", got)
		}
		for i, it := range items {
			if it.Cursor != b.Items[i].Cursor {
				t.Fatalf("item %d stored at %d, appended as %d", i, it.Cursor, b.Items[i].Cursor)
			}
		}
	})

	t.Run("state survives and another instance loads it", func(t *testing.T) {
		t.Parallel()
		name := uniqueName()
		l := open(t, name)
		g1, g2, g3 := group("g1", base), group("g2", base), group("g.3 odd/id", base)
		appendOK(t, l, &stream.Batch{Now: base, Changes: []stream.Change{
			{Kind: stream.PutGroup, Group: g1}, {Kind: stream.PutGroup, Group: g2}, {Kind: stream.PutGroup, Group: g3},
			{Kind: stream.PutNode, Node: stream.NodeRecord{Group: "g1", ID: "h", Name: "host", TokenHash: []byte{1, 2}, Data: map[string]string{"k": "v"}}},
			{Kind: stream.PutNode, Node: stream.NodeRecord{Group: "g1", ID: "m", Name: "member"}},
			{Kind: stream.PutNode, Node: stream.NodeRecord{Group: "g2", ID: "h", Name: "host2"}},
		}, Items: []stream.Item{{Kind: stream.KindJoin, Group: "g1", Node: "h"}}})
		g1.Name = "renamed"
		g2.EndedAt, g2.EndReason = base.Add(time.Minute), stream.ReasonHost
		end := &stream.Batch{Now: base.Add(time.Minute), Changes: []stream.Change{
			{Kind: stream.PutGroup, Group: g1}, {Kind: stream.PutGroup, Group: g2},
			{Kind: stream.DeleteNode, Node: stream.NodeRecord{Group: "g1", ID: "m"}},
			{Kind: stream.DeleteGroup, Group: stream.GroupRecord{ID: g3.ID}},
		}, Items: []stream.Item{{Kind: stream.KindDissolve, Group: "g2", Reason: stream.ReasonHost}}}
		appendOK(t, l, end)
		wm := l.Watermark()

		other := open(t, name)
		st, err := other.Load(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.Watermark < wm {
			t.Fatalf("loaded watermark %d < %d", st.Watermark, wm)
		}
		got := map[string]stream.GroupRecord{}
		for _, g := range st.Groups {
			got[g.ID] = g
		}
		if len(got) != 2 || got["g1"].Name != "renamed" || got["g2"].EndReason != stream.ReasonHost {
			t.Fatalf("loaded groups %+v", st.Groups)
		}
		if got["g2"].LastCursor != end.Items[0].Cursor {
			t.Fatalf("ended group's last cursor %d, want its dissolve item %d", got["g2"].LastCursor, end.Items[0].Cursor)
		}
		if !got["g1"].CreatedAt.Equal(base) {
			t.Fatalf("created at %v", got["g1"].CreatedAt)
		}
		nodes := map[string]stream.NodeRecord{}
		for _, n := range st.Nodes {
			nodes[n.Group+"/"+n.ID] = n
		}
		if len(nodes) != 2 || nodes["g1/h"].Data["k"] != "v" || string(nodes["g1/h"].TokenHash) != "\x01\x02" || nodes["g2/h"].Name != "host2" {
			t.Fatalf("loaded nodes %+v", st.Nodes)
		}
		// The new instance reads what the first appended, and appends after it.
		items, _ := readAll(t, other, "g2", 0)
		if len(items) != 1 || items[0].Kind != stream.KindDissolve {
			t.Fatalf("other instance reads %+v", items)
		}
		b := &stream.Batch{Now: base, Items: []stream.Item{event("g1", "later")}}
		appendOK(t, other, b)
		if b.Items[0].Cursor <= wm || !b.Items[0].At.Equal(base.Add(time.Minute)) {
			t.Fatalf("append on the loaded instance got %d at %v (watermark %d)", b.Items[0].Cursor, b.Items[0].At, wm)
		}
	})

	t.Run("purge deletes old items, marks truncation per group, never reuses cursors", func(t *testing.T) {
		t.Parallel()
		name := uniqueName()
		l := open(t, name)
		appendOK(t, l, &stream.Batch{Now: base, Changes: []stream.Change{{Kind: stream.PutGroup, Group: group("p", base)}, {Kind: stream.PutGroup, Group: group("q", base)}}})
		old := &stream.Batch{Now: base, Items: []stream.Item{event("p", "old1"), event("q", "qold"), event("p", "old2")}}
		appendOK(t, l, old)
		mid := &stream.Batch{Now: base.Add(time.Minute), Items: []stream.Item{event("q", "qnew")}}
		appendOK(t, l, mid)
		fresh := &stream.Batch{Now: base.Add(2 * time.Minute), Items: []stream.Item{event("p", "new")}}
		appendOK(t, l, fresh)

		res, err := l.Purge(context.Background(), base.Add(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if res.Items != 3 || res.Through != old.Items[2].Cursor {
			t.Fatalf("purged %+v, want 3 items through %d", res, old.Items[2].Cursor)
		}
		items, trunc := readAll(t, l, "p", 0)
		if names_(items) != "new" || !trunc {
			t.Fatalf("p from 0: %s truncated %v", names_(items), trunc)
		}
		if _, trunc = readAll(t, l, "p", old.Items[2].Cursor); trunc {
			t.Fatal("a reader at p's newest purged item is not behind")
		}
		if _, trunc = readAll(t, l, "q", old.Items[1].Cursor); trunc {
			t.Fatal("q's reader past q's purged item is told of p's purge")
		}
		if _, trunc = readAll(t, l, "q", old.Items[0].Cursor); !trunc {
			t.Fatal("q's reader before q's purged item is not told")
		}
		if _, trunc = readAll(t, l, "unknown", 0); !trunc {
			t.Fatal("a reader of an unknown group behind the purge is not told")
		}
		if st := l.Stats(context.Background()); st.PurgedThrough != res.Through || !st.OldestItemAt.Equal(base.Add(time.Minute)) {
			t.Fatalf("stats %+v", st)
		}
		// Another instance learns the marks; cursors go on after the purged ones.
		other := open(t, name)
		if _, trunc = readAll(t, other, "p", 0); !trunc {
			t.Fatal("the other instance does not see p's truncation")
		}
		if _, trunc = readAll(t, other, "q", old.Items[1].Cursor); trunc {
			t.Fatal("the other instance sees q truncated past its mark")
		}
		b := &stream.Batch{Now: base.Add(3 * time.Minute), Items: []stream.Item{event("p", "after")}}
		appendOK(t, other, b)
		if b.Items[0].Cursor <= fresh.Items[0].Cursor {
			t.Fatalf("cursor %d reused (last was %d)", b.Items[0].Cursor, fresh.Items[0].Cursor)
		}
		// Nothing more is old enough.
		if res, err := l.Purge(context.Background(), base.Add(30*time.Second)); err != nil || res.Items != 0 {
			t.Fatalf("second purge %+v %v", res, err)
		}
	})

	t.Run("cursor at a time", func(t *testing.T) {
		t.Parallel()
		l := open(t, uniqueName())
		b1 := &stream.Batch{Now: base, Items: []stream.Item{event("c", "1")}}
		appendOK(t, l, b1)
		b2 := &stream.Batch{Now: base.Add(time.Second), Items: []stream.Item{event("c", "2")}}
		appendOK(t, l, b2)
		ctx := context.Background()
		if c, err := l.CursorAt(ctx, "c", base.Add(-time.Second), l.Watermark()); err != nil || c != b1.Items[0].Cursor-1 {
			t.Fatalf("cursor before all = %d %v", c, err)
		}
		if c, err := l.CursorAt(ctx, "c", base, l.Watermark()); err != nil || c != b2.Items[0].Cursor-1 {
			t.Fatalf("cursor at first = %d %v", c, err)
		}
		if c, err := l.CursorAt(ctx, "c", base.Add(time.Hour), l.Watermark()); err != nil || c != l.Watermark() {
			t.Fatalf("cursor after all = %d %v", c, err)
		}
	})

	t.Run("closed log refuses appends", func(t *testing.T) {
		t.Parallel()
		l := open(t, uniqueName())
		if err := l.Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
		l.Close()
		if err := l.Append(context.Background(), &stream.Batch{Now: base, Items: []stream.Item{event("x", "1")}}); err != stream.ErrClosed {
			t.Fatalf("append after close: %v", err)
		}
	})
}

// A NATS node dying loses no acknowledged item, and writes go on.
func TestClusterNodeLoss(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	l := openOn(c, 3)(t, "loss")
	var cursors []int64
	write := func(n int) {
		for i := range n {
			b := &stream.Batch{Now: time.Now(), Items: []stream.Item{event("g", fmt.Sprint(len(cursors))), event("g", "pair")}}
			if err := l.Append(context.Background(), b); err != nil {
				t.Fatalf("append %d: %v", i, err)
			}
			cursors = append(cursors, b.Items[0].Cursor, b.Items[1].Cursor)
		}
	}
	write(20)
	c.Stop(0)
	write(20)
	items, _ := readAll(t, l, "g", 0)
	if len(items) != len(cursors) {
		t.Fatalf("read %d items, acknowledged %d", len(items), len(cursors))
	}
	for i, it := range items {
		if it.Cursor != cursors[i] {
			t.Fatalf("item %d at %d, acknowledged at %d", i, it.Cursor, cursors[i])
		}
	}
}
