package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"meshbox/jetstream/natstest"
	"meshbox/stream"
)

func ev(gid, name string) stream.Item {
	p := "payload " + name
	return stream.Item{Kind: stream.KindEvent, Group: gid, Node: "n1", Name: name, Payload: &p}
}

func names(items []stream.Item) string {
	var s []string
	for _, it := range items {
		s = append(s, it.Name)
	}
	return strings.Join(s, ",")
}

// readEvery reads a group after since in pages of limit items, checking that cursors increase.
func readEvery(t *testing.T, l *Log, gid string, since int64, limit int) []stream.Item {
	t.Helper()
	var all []stream.Item
	for {
		items, _, err := l.ReadAfter(context.Background(), gid, since, l.Watermark(), limit, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) == 0 {
			return all
		}
		for _, it := range items {
			if it.Cursor <= since {
				t.Fatalf("read after %d returned %d", since, it.Cursor)
			}
			since = it.Cursor
		}
		all = append(all, items...)
	}
}

// The items one batch appends to a group are one message, whatever their number; each item
// keeps a cursor of its own, and a reader resumes from any of them, in pages of any size.
func TestBatchOfAGroupIsOneMessage(t *testing.T) {
	t.Parallel()
	l := openTest(t)
	ctx := context.Background()
	before := streamMsgs(t, l)
	b := &stream.Batch{Now: time.Now()}
	for i := range 30 {
		b.Items = append(b.Items, ev("a", fmt.Sprint("e", i)))
	}
	b.Items = append(b.Items, ev("b", "other"))
	b.Items = append(b.Items, ev("a", "e30"))
	if err := l.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	// a's first 30 items, b's item, a's last: three runs, three messages, in one atomic batch.
	if n := streamMsgs(t, l) - before; n != 3 {
		t.Fatalf("a batch of 3 runs of items stored %d messages", n)
	}
	for i := 1; i < len(b.Items); i++ {
		if b.Items[i].Cursor <= b.Items[i-1].Cursor {
			t.Fatalf("cursor %d after %d", b.Items[i].Cursor, b.Items[i-1].Cursor)
		}
	}
	if w := l.Watermark(); w != b.Items[len(b.Items)-1].Cursor {
		t.Fatalf("watermark %d, last cursor %d", w, b.Items[len(b.Items)-1].Cursor)
	}
	var wantA []stream.Item
	for _, it := range b.Items {
		if it.Group == "a" {
			wantA = append(wantA, it)
		}
	}
	for _, limit := range []int{1, 2, 7, 31, 100} {
		got := readEvery(t, l, "a", 0, limit)
		if names(got) != names(wantA) {
			t.Fatalf("limit %d: read %s, want %s", limit, names(got), names(wantA))
		}
		for i := range got {
			if got[i].Cursor != wantA[i].Cursor || string(got[i].JSON) != string(wantA[i].JSON) {
				t.Fatalf("limit %d: item %d read as %d %s, appended as %d %s", limit, i, got[i].Cursor, got[i].JSON, wantA[i].Cursor, wantA[i].JSON)
			}
		}
	}
	// Resuming from the middle of a frame, and from a cursor that is no item's.
	for _, since := range []int64{wantA[4].Cursor, wantA[4].Cursor + 1, wantA[29].Cursor, wantA[29].Cursor + 1} {
		got := readEvery(t, l, "a", since, 3)
		var want []stream.Item
		for _, it := range wantA {
			if it.Cursor > since {
				want = append(want, it)
			}
		}
		if names(got) != names(want) {
			t.Fatalf("after %d: read %s, want %s", since, names(got), names(want))
		}
	}
	// Through the middle of a frame.
	got, _, err := l.ReadAfter(ctx, "a", 0, wantA[9].Cursor, 100, 1<<20)
	if err != nil || len(got) != 10 {
		t.Fatalf("read through the 10th item: %d items, %v", len(got), err)
	}
	// Another instance loads the newest cursor of the group and follows the frames item by item.
	other, err := Open(ctx, l.nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if w := other.Watermark(); w != l.Watermark() {
		t.Fatalf("watermark %d on another instance, %d here", w, l.Watermark())
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	other.pos.Store(0)
	other.Want("a", true)
	other.Want("b", true)
	var followed []stream.Item
	for en := range other.Follow(fctx) {
		followed = append(followed, en.Items...)
		if len(followed) == len(b.Items) {
			break
		}
	}
	if names(followed) != names(b.Items) {
		t.Fatalf("followed %s, appended %s", names(followed), names(b.Items))
	}
	for i := range followed {
		if followed[i].Cursor != b.Items[i].Cursor {
			t.Fatalf("followed item %d at %d, appended at %d", i, followed[i].Cursor, b.Items[i].Cursor)
		}
	}
}

// A run of items larger than a message may be is split into several frames.
func TestLargeRunIsSplit(t *testing.T) {
	t.Parallel()
	l := openTest(t)
	before := streamMsgs(t, l)
	big := strings.Repeat("x", 16<<10)
	b := &stream.Batch{Now: time.Now()}
	n := 2*l.maxFrameBytes()/len(big) + 3
	for i := range n {
		it := ev("a", fmt.Sprint("e", i))
		it.Payload = &big
		b.Items = append(b.Items, it)
	}
	if err := l.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if msgs := streamMsgs(t, l) - before; msgs < 3 || msgs > uint64(n)/4 {
		t.Fatalf("%d items of 16 KiB in %d messages", n, msgs)
	}
	if got := readEvery(t, l, "a", 0, 1000); names(got) != names(b.Items) {
		t.Fatalf("read %d items, appended %d", len(got), n)
	}
}

// legacyItem stores an item as meshbox did before frames: one message, no count, cursor =
// its sequence.
func legacyItem(t *testing.T, nc *nats.Conn, subj subjects, it stream.Item, at time.Time) int64 {
	t.Helper()
	j, err := js.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(subj.items(it.Group))
	m.Header.Set(hdrAt, strconv.FormatInt(at.UnixMilli(), 10))
	it.At = at
	m.Data = itemBody(it)
	ack, err := j.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return int64(ack.Sequence)
}

// A stream written before frames is read on: its items keep their cursors, items written
// after the upgrade get higher ones, a reader holding an old cursor resumes across the
// upgrade without a gap or a repeat, and the purge and CursorAt work across it.
func TestUpgradeFromOneItemPerMessage(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	ctx := context.Background()
	nc := c.Connect()
	// The stream as an older meshbox left it: its configuration, no layout mark, one item per
	// message.
	old, err := Open(ctx, nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.st.Purge(ctx, js.WithPurgeSubject(old.subj.layout())); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var legacy []int64
	for i := range 5 {
		legacy = append(legacy, legacyItem(t, nc, old.subj, ev("a", fmt.Sprint("old", i)), base.Add(time.Duration(i)*time.Second)))
	}
	legacyItem(t, nc, old.subj, ev("b", "oldb"), base.Add(5*time.Second))

	l, err := Open(ctx, nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Watermark != legacy[4]+1 {
		t.Fatalf("watermark %d after the upgrade, want the last old item's sequence %d", st.Watermark, legacy[4]+1)
	}
	got := readEvery(t, l, "a", 0, 2)
	if names(got) != "old0,old1,old2,old3,old4" {
		t.Fatalf("old items read as %s", names(got))
	}
	for i, it := range got {
		if it.Cursor != legacy[i] {
			t.Fatalf("old item %d at cursor %d, was %d", i, it.Cursor, legacy[i])
		}
	}
	b := &stream.Batch{Now: time.Now(), Items: []stream.Item{ev("a", "new0"), ev("a", "new1")}}
	if err := l.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	if b.Items[0].Cursor <= legacy[4]+1 {
		t.Fatalf("new item at %d, not after the old ones (%d)", b.Items[0].Cursor, legacy[4]+1)
	}
	// A reader that had read the third old item resumes with its cursor.
	if got := readEvery(t, l, "a", legacy[2], 1); names(got) != "old3,old4,new0,new1" {
		t.Fatalf("resumed across the upgrade: %s", names(got))
	}
	if got := readEvery(t, l, "a", legacy[4], 1); names(got) != "new0,new1" {
		t.Fatalf("resumed at the last old item: %s", names(got))
	}
	// Another instance started later reads the same mark.
	again, err := Open(ctx, nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if again.lay != l.lay {
		t.Fatalf("layout %+v on a later instance, %+v on the first", again.lay, l.lay)
	}
	// CursorAt across the upgrade: after the second old item's time, and after every old one.
	if cur, err := l.CursorAt(ctx, "a", base.Add(time.Second), l.Watermark()); err != nil || cur != legacy[1] {
		t.Fatalf("cursor at the second old item's time = %d (%v), want %d", cur, err, legacy[1])
	}
	if cur, err := l.CursorAt(ctx, "a", base.Add(time.Minute), l.Watermark()); err != nil || cur != b.Items[0].Cursor-1 {
		t.Fatalf("cursor after the old items = %d (%v), want %d", cur, err, b.Items[0].Cursor-1)
	}
	// The purge of the old items and the new ones.
	res, err := l.Purge(ctx, base.Add(30*time.Minute))
	if err != nil || res.Items != 6 || res.Through != legacy[4]+1 {
		t.Fatalf("purge of the old items = %+v, %v", res, err)
	}
	if items, trunc, err := l.ReadAfter(ctx, "a", legacy[1], l.Watermark(), 10, 1<<20); err != nil || !trunc || names(items) != "new0,new1" {
		t.Fatalf("read after a purged old cursor: %s truncated %v, %v", names(items), trunc, err)
	}
	res, err = l.Purge(ctx, time.Now().Add(time.Hour))
	if err != nil || res.Items != 2 || res.Through != b.Items[1].Cursor {
		t.Fatalf("purge of the new items = %+v, %v", res, err)
	}
}

// A stream whose layout mark names a layout this meshbox does not know is refused at start.
func TestUnknownLayoutIsRefused(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	ctx := context.Background()
	nc := c.Connect()
	l, err := Open(ctx, nc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(l.subj.layout())
	m.Data = []byte("cubes 12")
	if _, err := l.publish(ctx, []*nats.Msg{m}, "future"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, nc, Options{}); !errors.Is(err, ErrLayout) || !strings.Contains(err.Error(), "cubes") {
		t.Fatalf("open of a stream in an unknown layout: %v", err)
	}
}

// Cursors map to sequences and back, on both sides of the upgrade.
func TestLayoutCursors(t *testing.T) {
	y := layout{legacy: 100}
	var cs []int64
	for _, c := range []struct {
		seq int64
		i   int
	}{{99, 0}, {100, 0}, {101, 0}, {101, 1}, {101, maxFrameItems}, {102, 0}} {
		cur := y.cursor(c.seq, c.i)
		if y.seq(cur) != c.seq {
			t.Fatalf("cursor %d of (%d, %d) maps back to %d", cur, c.seq, c.i, y.seq(cur))
		}
		if cur > y.through(c.seq) {
			t.Fatalf("cursor %d of (%d, %d) above through(%d) = %d", cur, c.seq, c.i, c.seq, y.through(c.seq))
		}
		cs = append(cs, cur)
	}
	if !slices.IsSorted(cs) {
		t.Fatalf("cursors %v do not increase", cs)
	}
}

// Instances started at once on a cluster that just formed all open the new stream, and all
// agree on its layout (one of them wrote the mark, the others read it).
func TestInstancesStartingAtOnceAgreeOnTheLayout(t *testing.T) {
	t.Parallel()
	c := natstest.RunCluster(t, 3)
	logs := make([]*Log, 3)
	errs := make([]error, 3)
	done := make(chan int)
	for i := range logs {
		go func() {
			logs[i], errs[i] = Open(context.Background(), c.Connect(), Options{Replicas: 3})
			done <- i
		}()
	}
	for range logs {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		if logs[i].lay != logs[0].lay {
			t.Fatalf("instance %d has layout %+v, instance 0 %+v", i, logs[i].lay, logs[0].lay)
		}
	}
	if n := streamMsgs(t, logs[0]); n != 1 {
		t.Fatalf("%d messages after three instances opened the stream, want one layout mark", n)
	}
}
