package app_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
	"meshbox/jetstream/natstest"
)

// An instance holds and follows only the groups its clients use. Readers on every transport
// arrive on instance B for a group written through A for a while, and go on reading while A
// keeps writing: each gets every item once and in order, those written before B followed the
// group (from the log), while it started following it and after. Instance C, where nobody
// reads or writes the group, applies none of its items (its dashboard feed holds none) until
// a reader resumes there with a cursor from A, which C has not applied yet.
func TestReadersArriveOnAnInstanceThatDidNotFollowTheGroup(t *testing.T) {
	t.Parallel()
	nats := natstest.Run(t)
	cfg := func(c *config.Config) {
		c.NATSURL, c.EventTTL, c.PublishRate = nats.URLs(), time.Hour, 0
	}
	a, b, c := app.StartTest(t, cfg), app.StartTest(t, cfg), app.StartTest(t, cfg)

	var host joined
	if code := call(t, "POST", a.URL()+"/api/v1/groups", "", map[string]any{"name": "class"}, &host); code != 201 {
		t.Fatalf("create on A: %d", code)
	}
	gid := host.Group.ID
	group := a.URL() + "/api/v1/groups/" + gid
	// Every member joins through A: B and C write nothing of the group.
	transports := []string{"sse", "ws", "longpoll", "longpoll"}
	tokens := make([]string, len(transports))
	for i := range transports {
		var m joined
		if code := call(t, "POST", group+"/nodes", "", map[string]any{"name": fmt.Sprint("pupil", i)}, &m); code != 201 {
			t.Fatalf("join %d: %d", i, code)
		}
		tokens[i] = m.Token
	}
	for _, x := range []*app.App{b, c} {
		waitFor(t, "B and C to know the members", func() bool {
			g, err := x.Store.Group(gid)
			return err == nil && g.Nodes == len(transports)+1
		})
	}

	var mu sync.Mutex
	var acked []string
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			name := fmt.Sprint("e", i)
			if code := call(t, "POST", group+"/events", host.Token, map[string]any{"events": []map[string]string{{"name": name}}}, nil); code != 200 {
				t.Errorf("publish %s: %d", name, code)
				return
			}
			mu.Lock()
			acked = append(acked, name)
			mu.Unlock()
		}
	}
	ackedNow := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), acked...)
	}
	waitAll := func(what string, rs []*reader) {
		t.Helper()
		want := ackedNow()
		for _, r := range rs {
			waitFor(t, r.name+" to get "+what, func() bool { return len(r.events()) >= len(want) })
			if got := r.events(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("%s got %v\nwant %v", r.name, got, want)
			}
		}
	}

	publish(0, 20) // before B follows the group
	// The readers arrive on B while A goes on writing.
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); publish(20, 60) }()
	var onB []*reader
	for i, tr := range transports[:3] {
		r := &reader{t: t, name: tr + " on B", transport: tr, token: tokens[i], gid: gid}
		r.start(b.URL())
		onB = append(onB, r)
	}
	wg.Wait()
	publish(60, 80) // after
	waitAll("every event", onB)

	// A reader on A only: C has no reader and no writer of the group.
	onA := &reader{t: t, name: "longpoll on A", transport: "longpoll", token: tokens[3], gid: gid}
	onA.start(a.URL())
	waitAll("every event", []*reader{onA})
	if err := c.Store.Sync(t.Context()); err != nil { // C applied everything A committed
		t.Fatal(err)
	}
	if n := c.Store.Followed(); n != 0 {
		t.Fatalf("C follows %d groups, want none", n)
	}
	items, _, _ := c.Hub.ReadAll(0, 100000)
	for _, it := range items {
		if it.Group == gid {
			t.Fatalf("C, with no reader and no writer of the group, applied its item %s", it.JSON)
		}
	}

	// The reader on A resumes on C with the cursor A gave it, as a client does when its
	// instance goes away: a cursor of items C has not seen (most likely ahead of everything
	// C applied, which C then catches up with), and C follows the group from then on.
	publish(80, 90)
	waitAll("the events C never followed", []*reader{onA})
	onA.stop()
	t.Logf("resuming on C after %d, C applied through %d", onA.last(), c.Store.LastCursor())
	onC := &reader{t: t, name: "longpoll from A on C", transport: "longpoll", token: tokens[3], gid: gid}
	onC.items = onA.got()
	onC.start(c.URL())
	publish(90, 100)
	waitAll("every event", append(onB, onC))
	if n := c.Store.Followed(); n != 1 {
		t.Fatalf("C follows %d groups with a reader there, want 1", n)
	}
}
