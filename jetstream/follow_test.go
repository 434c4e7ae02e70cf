package jetstream_test

import (
	"context"
	"testing"
	"time"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/stream"
)

// follower reads what a log's Follow delivers.
type follower struct {
	t  *testing.T
	ch <-chan stream.Entry
}

func follow(t *testing.T, l *jetstream.Log) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return &follower{t: t, ch: l.Follow(ctx)}
}

func (f *follower) next() stream.Entry {
	f.t.Helper()
	select {
	case en := <-f.ch:
		return en
	case <-time.After(20 * time.Second):
		f.t.Fatal("the follower delivered nothing")
		return stream.Entry{}
	}
}

// through returns every entry up to the barrier at position pos (written by Position).
func (f *follower) through(pos int64) []stream.Entry {
	f.t.Helper()
	var out []stream.Entry
	for {
		en := f.next()
		out = append(out, en)
		if en.Seq >= pos {
			return out
		}
	}
}

func itemNames(ens []stream.Entry) string {
	var items []stream.Item
	for _, en := range ens {
		items = append(items, en.Items...)
	}
	return names_(items)
}

// A follower delivers every group's records but only the wanted groups' items; a group it
// starts to want gets a marker first, whose Through covers every item stored before (readable
// from the log) and whose LastItem is the group's newest item; a group it no longer wants
// gets no items once the follower started again.
func TestFollowDeliversWantedGroupsOnly(t *testing.T) {
	t.Parallel()
	open := openOn(natstest.Run(t), 1)
	name := uniqueName()
	w, l := open(t, name), open(t, name)
	ctx := context.Background()
	now := time.Now()
	first := &stream.Batch{Now: now, Changes: []stream.Change{
		{Kind: stream.PutGroup, Group: group("g1", now)}, {Kind: stream.PutGroup, Group: group("g2", now)},
	}, Items: []stream.Item{event("g1", "a1"), event("g2", "b1")}}
	appendOK(t, w, first)
	f := follow(t, l)
	barrier := func() []stream.Entry {
		t.Helper()
		pos, err := w.Position(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return f.through(pos)
	}

	got := barrier()
	changes := 0
	for _, en := range got {
		if en.Change != nil {
			changes++
		}
		if en.Through < en.Seq {
			t.Fatalf("entry at %d covers only %d", en.Seq, en.Through)
		}
	}
	if changes != 2 || itemNames(got) != "" {
		t.Fatalf("wanting nothing, the follower delivered %d changes and items %q; want both groups' records, no item", changes, itemNames(got))
	}

	l.Want("g1", true)
	mark := f.next()
	if mark.Followed != "g1" || mark.LastItem != first.Items[0].Cursor || mark.Through < first.Items[0].Cursor || mark.Items != nil {
		t.Fatalf("marker %+v; want g1 followed through at least %d, its newest item %d", mark, first.Items[0].Cursor, first.Items[0].Cursor)
	}
	if items, _ := readAll(t, l, "g1", 0); names_(items) != "a1" {
		t.Fatalf("read of g1 after its marker: %q", names_(items))
	}
	appendOK(t, w, &stream.Batch{Now: now, Items: []stream.Item{event("g1", "a2"), event("g2", "b2")}})
	if got := itemNames(barrier()); got != "a2" {
		t.Fatalf("wanting g1, the follower delivered items %q; want a2", got)
	}

	l.Want("g1", false)
	l.Want("g2", true)
	b2 := readLast(t, w, "g2")
	mark = f.next()
	if mark.Followed != "g2" || mark.LastItem != b2 {
		t.Fatalf("marker %+v; want g2 with its newest item %d", mark, b2)
	}
	appendOK(t, w, &stream.Batch{Now: now, Items: []stream.Item{event("g1", "a3"), event("g2", "b3")}})
	if got := itemNames(barrier()); got != "b3" {
		t.Fatalf("wanting g2 only, the follower delivered items %q; want b3", got)
	}
	if l.Wanted() != 1 {
		t.Fatalf("the log wants %d groups, want 1", l.Wanted())
	}
}

func readLast(t *testing.T, l *jetstream.Log, gid string) int64 {
	t.Helper()
	items, _ := readAll(t, l, gid, 0)
	if len(items) == 0 {
		t.Fatalf("%s has no items", gid)
	}
	return items[len(items)-1].Cursor
}
