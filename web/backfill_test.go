package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"meshbox/rules"
	"meshbox/stream"
)

// feedMessage is an items event as the page reads it.
type feedMessage struct {
	Items []struct {
		Group string
		Item  stream.Item
	}
	Next     int64
	Backfill bool
}

func decodeFeed(t *testing.T, data string) feedMessage {
	t.Helper()
	var m feedMessage
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		t.Fatalf("items event %.200s: %v", data, err)
	}
	return m
}

// TestPickBackfillBounds: the backfill keeps each group's newest items without a gap, at most
// perGroup of one group, items in all and bytes of JSON, in cursor order.
func TestPickBackfillBounds(t *testing.T) {
	t.Parallel()
	var items []stream.Item
	for c := int64(1); c <= 60; c++ {
		g := "quiet"
		if c%10 != 0 {
			g = "chatty" // nine items in ten
		}
		items = append(items, stream.Item{Cursor: c, Group: g, JSON: []byte(fmt.Sprintf(`{"cursor":%d,"pad":"%s"}`, c, strings.Repeat("x", 70)))})
	}
	size := len(items[10].JSON) // cursors of two digits: every item used is this long
	for _, tc := range []struct {
		name string
		lim  backfillLimits
		want []int64
	}{
		{name: "per group", lim: backfillLimits{perGroup: 3, items: 100, bytes: 1 << 20},
			want: []int64{40, 50, 57, 58, 59, 60}},
		{name: "in all", lim: backfillLimits{perGroup: 100, items: 4, bytes: 1 << 20},
			want: []int64{57, 58, 59, 60}},
		{name: "in bytes", lim: backfillLimits{perGroup: 100, items: 100, bytes: 5*size + size/2},
			want: []int64{56, 57, 58, 59, 60}},
		// Two per group, four in all: the quiet group's two newest are not pushed out by the
		// chatty group's many.
		{name: "a quiet group is not crowded out", lim: backfillLimits{perGroup: 2, items: 4, bytes: 1 << 20},
			want: []int64{50, 58, 59, 60}},
	} {
		got := pickBackfill(items[9:], tc.lim) // cursors 10 to 60: 10, 20 … 60 are the quiet group's
		var cs []int64
		bytes := 0
		for _, it := range got {
			cs = append(cs, it.Cursor)
			bytes += len(it.JSON)
		}
		if !slices.Equal(cs, tc.want) {
			t.Errorf("%s: picked %v, want %v", tc.name, cs, tc.want)
		}
		if bytes > tc.lim.bytes || len(got) > tc.lim.items {
			t.Errorf("%s: %d items of %d bytes, beyond %+v", tc.name, len(got), bytes, tc.lim)
		}
	}
	if got := pickBackfill(nil, backfillLimits{perGroup: 1, items: 1, bytes: 1}); len(got) != 0 {
		t.Errorf("nothing to pick from: %v", got)
	}
}

// TestStreamBackfillTeacherOnly: a teacher who opens the dashboard after a class has been
// sending gets the groups' recent items at once (after the overview that names the groups, in
// cursor order, marked as backfill); a dashboard without the token gets no item at all, then
// or later, and not one name or payload.
func TestStreamBackfillTeacherOnly(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "tok")
	host, student := b.classOf(t, "secret-group", "secret-host", "secret-ada", "secret-key", "secret-value")
	ctx := context.Background()
	sent, err := b.store.Publish(ctx, host.Group.ID, student.Node.ID, []rules.EventIn{{Name: "go", Payload: ptr("secret-payload-1")}, {Name: "go", Payload: ptr("secret-payload-2")}})
	if err != nil {
		t.Fatal(err)
	}

	// Without the token: hello, overviews, never items.
	public := &sseReader{t: t, br: bufio.NewReader(b.openDashboard(t, "").Body)}
	if ev, data := public.next(); ev != "hello" || !strings.Contains(data, `"admin":false`) {
		t.Fatalf("public first event %s %s", ev, data)
	}

	// A first teacher's dashboard, open while the class sent, gets the items live; once it has,
	// the feed is past them and a dashboard opened now can only show them by its backfill.
	first := &sseReader{t: t, br: bufio.NewReader(b.openDashboard(t, "?token=tok").Body)}
	for through := int64(0); through < sent[1]; {
		if ev, data := first.next(); ev == "items" {
			through = decodeFeed(t, data).Next
		}
	}

	teacher := &sseReader{t: t, br: bufio.NewReader(b.openDashboard(t, "?token=tok").Body)}
	if ev, _ := teacher.next(); ev != "hello" {
		t.Fatalf("teacher's first event %s", ev)
	}
	if ev, _ := teacher.next(); ev != "overview" {
		t.Fatalf("teacher's second event %s", ev)
	}
	ev, data := teacher.next()
	if ev != "items" {
		t.Fatalf("teacher's third event %s %.200s, want the backfill", ev, data)
	}
	m := decodeFeed(t, data)
	var cs []int64
	var payloads []string
	for _, e := range m.Items {
		if e.Group != host.Group.ID {
			t.Errorf("backfill item of group %q", e.Group)
		}
		cs = append(cs, e.Item.Cursor)
		if e.Item.Kind == "event" {
			payloads = append(payloads, *e.Item.Payload)
		}
	}
	if !m.Backfill || m.Next != sent[1] || !slices.IsSorted(cs) || len(cs) != 5 || cs[len(cs)-1] != sent[1] ||
		!slices.Equal(payloads, []string{"secret-payload-1", "secret-payload-2"}) {
		t.Fatalf("backfill = %s", data) // two joins, the data, two events
	}

	// Later items: the teacher gets them live; the public dashboard, across two overviews
	// after them, gets no items event and sees no detail.
	if _, err := b.store.Publish(ctx, host.Group.ID, student.Node.ID, []rules.EventIn{{Name: "go", Payload: ptr("secret-payload-3")}}); err != nil {
		t.Fatal(err)
	}
	for {
		ev, data := teacher.next()
		if ev == "items" && strings.Contains(data, "secret-payload-3") {
			break
		}
	}
	for overviews := 0; overviews < 2; {
		ev, data := public.next()
		if ev == "items" {
			t.Fatalf("the public dashboard got items: %.200s", data)
		}
		if strings.Contains(data, "secret-") {
			t.Fatalf("the public dashboard's %s event shows a detail: %.300s", ev, data)
		}
		if ev == "overview" {
			overviews++
		}
	}
}

// openFeed is one teacher's dashboard stream in TestStreamBackfillThenLiveNoDuplicate.
type openFeed struct {
	s       *sseReader
	seen    []int64
	through int64
}

// TestStreamBackfillThenLiveNoDuplicate opens teachers' dashboards while a class publishes:
// each one shows every item once, the backfill then the live items without a gap between them.
func TestStreamBackfillThenLiveNoDuplicate(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "tok")
	host, _ := b.class(t)
	b.h.backfillLim = backfillLimits{perGroup: 50, items: 50, bytes: 1 << 20}
	ctx := context.Background()

	const publishes = 300
	var mu sync.Mutex
	var published []int64
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range publishes {
			cs, err := b.store.Publish(ctx, host.Group.ID, host.Node.ID, []rules.EventIn{{Name: "tick"}})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			published = append(published, cs...)
			mu.Unlock()
			if i == 20 {
				close(started)
			}
		}
	}()
	<-started
	var feeds []*openFeed
	for range 4 { // opened one after the other while the class publishes
		f := &openFeed{s: &sseReader{t: t, br: bufio.NewReader(b.openDashboard(t, "?token=tok").Body)}}
		for ev := ""; ev != "items"; {
			var data string
			ev, data = f.s.next()
			if ev == "items" {
				m := decodeFeed(t, data)
				if !m.Backfill {
					t.Fatal("the first items event is not the backfill")
				}
				for _, e := range m.Items {
					f.seen = append(f.seen, e.Item.Cursor)
				}
				f.through = m.Next
			}
		}
		feeds = append(feeds, f)
	}
	<-done
	last := published[len(published)-1]
	for i, f := range feeds {
		for len(f.seen) == 0 || f.seen[len(f.seen)-1] < last {
			ev, data := f.s.next()
			if ev == "reset" {
				t.Fatalf("dashboard %d fell behind", i)
			}
			if ev != "items" {
				continue
			}
			for _, e := range decodeFeed(t, data).Items {
				f.seen = append(f.seen, e.Item.Cursor)
			}
		}
		for j := 1; j < len(f.seen); j++ {
			if f.seen[j] <= f.seen[j-1] {
				t.Fatalf("dashboard %d: cursor %d after %d (a duplicate or out of order)", i, f.seen[j], f.seen[j-1])
			}
		}
		// Every item published from the first one shown on is shown: no gap between the
		// backfill and the live items.
		for _, c := range published {
			if c >= f.seen[0] && !slices.Contains(f.seen, c) {
				t.Fatalf("dashboard %d (backfill through %d): item %d missing", i, f.through, c)
			}
		}
	}
}
