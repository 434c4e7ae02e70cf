package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
	"meshbox/jetstream/natstest"
)

// item is what a reader gets of an item.
type item struct {
	Cursor int64  `json:"cursor"`
	Kind   string `json:"kind"`
	Name   string `json:"name"`
}

// reader is a native client following a group over one transport. Like a real client, it
// reconnects whenever its stream ends or fails, resuming after the last cursor it got, to the
// instance it is pointed at (moveTo points it at another).
type reader struct {
	t         *testing.T
	name      string
	transport string
	token     string
	gid       string

	mu         sync.Mutex
	base       string
	items      []item
	reconnects int
	stop       context.CancelFunc
}

func (r *reader) got() []item {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]item(nil), r.items...)
}

func (r *reader) last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.items) == 0 {
		return 0
	}
	return r.items[len(r.items)-1].Cursor
}

func (r *reader) add(items []item) {
	r.mu.Lock()
	r.items = append(r.items, items...)
	r.mu.Unlock()
}

func (r *reader) moveTo(base string) {
	r.mu.Lock()
	r.base = base
	r.mu.Unlock()
}

// start follows the group until the test ends.
func (r *reader) start(base string) {
	ctx, cancel := context.WithCancel(context.Background())
	r.stop = cancel
	r.base = base
	r.t.Cleanup(cancel)
	go func() {
		for ctx.Err() == nil {
			r.mu.Lock()
			base := r.base
			r.mu.Unlock()
			r.once(ctx, base)
			r.mu.Lock()
			r.reconnects++
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond): // a client's reconnect delay
			}
		}
	}()
}

// once reads over one connection until it ends.
func (r *reader) once(ctx context.Context, base string) {
	group := base + "/api/v1/groups/" + r.gid
	since := fmt.Sprint(r.last())
	switch r.transport {
	case "sse":
		req, _ := http.NewRequestWithContext(ctx, "GET", group+"/stream?since="+since+"&token="+r.token, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, "event: "); ok {
				event = v
			}
			if v, ok := strings.CutPrefix(line, "data: "); ok && event != "reset" && event != "shutdown" && event != "" {
				var it item
				if err := json.Unmarshal([]byte(v), &it); err == nil && it.Cursor > 0 {
					r.add([]item{it})
				}
			}
		}
	case "ws":
		c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(group, "http")+"/ws?since="+since+"&token="+r.token, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(-1)
		defer c.CloseNow()
		for {
			_, data, err := c.Read(ctx)
			if err != nil {
				return
			}
			var f struct {
				Type  string `json:"type"`
				Items []item `json:"items"`
			}
			if json.Unmarshal(data, &f) == nil && f.Type == "items" {
				r.add(f.Items)
			}
		}
	case "longpoll":
		for ctx.Err() == nil {
			req, _ := http.NewRequestWithContext(ctx, "GET", group+"/events?wait=30&since="+fmt.Sprint(r.last())+"&token="+r.token, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return
			}
			var p struct {
				Items []item `json:"items"`
			}
			err = json.NewDecoder(resp.Body).Decode(&p)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 {
				return
			}
			r.add(p.Items)
			r.mu.Lock()
			moved := r.base != base
			r.mu.Unlock()
			if moved {
				return
			}
		}
	}
}

// events are the names of the reader's event items, checking that cursors only increase.
func (r *reader) events() []string {
	r.t.Helper()
	var names []string
	items := r.got()
	for i, it := range items {
		if i > 0 && it.Cursor <= items[i-1].Cursor {
			r.t.Fatalf("%s: cursor %d after %d", r.name, it.Cursor, items[i-1].Cursor)
		}
		if it.Kind == "event" {
			names = append(names, it.Name)
		}
	}
	return names
}

// TestThreeInstancesShareGroups runs three meshbox instances over a 3-node NATS cluster (R3):
// a group created on A is joined on B and C; readers on every transport spread over the
// instances get every item exactly once and in order; a limit holds across instances; readers
// of an instance that is shut down resume on another by cursor; with a NATS node gone, no
// acknowledged item is lost and writes go on.
func TestThreeInstancesShareGroups(t *testing.T) {
	t.Parallel()
	cluster := natstest.RunCluster(t, 3)
	const maxNodes = 9
	cfg := func(c *config.Config) {
		c.NATSURL, c.NATSReplicas, c.MaxNodesPerGroup, c.EventTTL = cluster.URLs(), 3, maxNodes, time.Hour
		c.PublishRate = 0
	}
	in := []*app.App{app.StartTest(t, cfg), app.StartTest(t, cfg), app.StartTest(t, cfg)}
	a, b, c := in[0], in[1], in[2]

	var host joined
	// Open to Mesh v2: a Smalruby poller reads the same stream on every instance (below).
	if code := call(t, "POST", a.URL()+"/api/v1/groups", "", map[string]any{"name": "class", "meshV2": true}, &host); code != 201 {
		t.Fatalf("create on A: %d", code)
	}
	gid := host.Group.ID
	group := func(x *app.App) string { return x.URL() + "/api/v1/groups/" + gid }
	waitFor(t, "B and C to know the group", func() bool {
		_, errB := b.Store.Group(gid)
		_, errC := c.Store.Group(gid)
		return errB == nil && errC == nil
	})

	// Six readers, members joined on B and C, reading over every transport on every instance.
	transports := []string{"sse", "ws", "longpoll"}
	var readers []*reader
	onC := map[*reader]bool{}
	for i := range 6 {
		var m joined
		joinOn := in[1+i%2]
		if code := call(t, "POST", group(joinOn)+"/nodes", "", map[string]any{"name": fmt.Sprint("pupil", i)}, &m); code != 201 {
			t.Fatalf("join %d: %d", i, code)
		}
		// Every transport on two instances: sse on A and B, ws on B and C, long-poll on C and A.
		at := (i + i/3) % 3
		r := &reader{t: t, name: fmt.Sprintf("%s on %c", transports[i%3], 'A'+at), transport: transports[i%3], token: m.Token, gid: gid}
		readers = append(readers, r)
		r.start(in[at].URL())
		onC[r] = at == 2
	}

	// The limit holds across instances: 1 host + 6 readers, and racing joins on all three
	// for the last 2 places.
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range 9 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code := call(t, "POST", group(in[i%3])+"/nodes", "", map[string]any{"name": "racer"}, nil)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[201] != maxNodes-7 || codes[201]+codes[409] != 9 {
		t.Fatalf("racing joins answered %v; want %d created, the rest 409", codes, maxNodes-7)
	}
	for _, x := range in {
		waitFor(t, "every instance to count the nodes", func() bool {
			g, err := x.Store.Group(gid)
			return err == nil && g.Nodes == maxNodes
		})
	}

	// The host publishes through every instance in turn.
	var acked []string
	publish := func(x *app.App, name string) {
		t.Helper()
		var ack struct {
			Cursors []int64 `json:"cursors"`
		}
		if code := call(t, "POST", group(x)+"/events", host.Token, map[string]any{"events": []map[string]string{{"name": name}}}, &ack); code != 200 {
			t.Fatalf("publish %s on %s: %d", name, x.URL(), code)
		}
		acked = append(acked, name)
	}
	waitAll := func(what string, rs []*reader) {
		t.Helper()
		for _, r := range rs {
			waitFor(t, r.name+" to get "+what, func() bool {
				ev := r.events()
				return len(ev) == len(acked)
			})
		}
	}
	for i := range 30 {
		publish(in[i%3], fmt.Sprint("e", i))
	}
	waitAll("the first events", readers)
	meshV2Events(t, c, gid, host.Group.Domain, acked)

	// A NATS node dies: writes go on (the stream elects a leader among the two left) and no
	// acknowledged item is lost.
	cluster.Stop(1)
	for i := 30; i < 45; i++ {
		publish(in[i%3], fmt.Sprint("e", i))
	}
	waitAll("the events written with a NATS node down", readers)

	// Instance C is shut down: its readers resume on A by cursor.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range readers {
		if onC[r] {
			r.moveTo(a.URL())
		}
	}
	for i := 45; i < 60; i++ {
		publish(in[i%2], fmt.Sprint("e", i))
	}
	waitAll("every event after C went away", readers)

	// A Mesh v2 poller on either remaining instance gets every event once, in order.
	meshV2Events(t, a, gid, host.Group.Domain, acked)
	meshV2Events(t, b, gid, host.Group.Domain, acked)
	for _, r := range readers {
		r.mu.Lock()
		t.Logf("%s: %d items, %d reconnects", r.name, len(r.items), r.reconnects)
		r.mu.Unlock()
		got := r.events()
		if strings.Join(got, ",") != strings.Join(acked, ",") {
			t.Fatalf("%s got %v\nwant %v", r.name, got, acked)
		}
	}
}

// meshV2Events reads the group's events as the Smalruby client's poll does (getEventsSince
// from the oldest retained) on instance x and checks that they are exactly want, in order.
func meshV2Events(t *testing.T, x *app.App, gid, domain string, want []string) {
	t.Helper()
	var out struct {
		Data struct {
			GetEventsSince []struct{ Name string }
		}
		Errors []any
	}
	q := `query($g:ID!,$d:String!){getEventsSince(groupId:$g,domain:$d,since:""){name}}`
	if code := call(t, "POST", x.URL()+"/graphql", "", map[string]any{"query": q, "variables": map[string]any{"g": gid, "d": domain}}, &out); code != 200 || len(out.Errors) > 0 {
		t.Fatalf("getEventsSince on %s: %d %v", x.URL(), code, out.Errors)
	}
	got := make([]string, len(out.Data.GetEventsSince))
	for i, e := range out.Data.GetEventsSince {
		got[i] = e.Name
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("Mesh v2 poll on %s got %v\nwant %v", x.URL(), got, want)
	}
}
