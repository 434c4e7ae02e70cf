package meshv2

import (
	"fmt"
	"meshbox/testclock"
	"slices"
	"strings"
	"testing"
	"time"
)

// meshNode replays what the Smalruby client (polling-client.js, event-sender.js) does with
// its poll position: lastFetchTime starts empty when polling starts, the first poll sends
// the client's clock, a poll that brings events moves it to the last event's cursor (its
// own events included, which it then drops), and a recordEventsByNode moves it to nextSince.
type meshNode struct {
	s         *testServer
	id, gid   string
	polling   bool
	lastFetch string
	got       []string // "node:event" received from other nodes, in order
	seq       int
	// skew is the client's clock error. Two first polls from one address with the very same
	// time string are taken for one client's, so each test client's clock differs.
	skew time.Duration
}

func (n *meshNode) poll(t *testing.T) {
	t.Helper()
	if n.lastFetch == "" {
		n.lastFetch = time.Now().Add(n.skew).UTC().Format(awsTimeLayout)
	}
	res := obj(t, n.s.ok(t, "pollGroupData", qPoll, map[string]any{"groupId": n.gid, "domain": "classroom", "since": n.lastFetch}))
	events := list(t, res["events"])
	for _, e := range events {
		ev := obj(t, e)
		if ev["firedByNodeId"] != n.id {
			n.got = append(n.got, ev["firedByNodeId"].(string)+":"+ev["name"].(string))
		}
	}
	if len(events) > 0 {
		n.lastFetch = obj(t, events[len(events)-1])["cursor"].(string)
	}
}

// fire sends the node's next event as the client does: fire over WebSocket, record when polling.
func (n *meshNode) fire(t *testing.T) string {
	t.Helper()
	n.seq++
	name := fmt.Sprintf("e%d", n.seq)
	vars := map[string]any{"groupId": n.gid, "domain": "classroom", "nodeId": n.id, "events": []map[string]any{
		{"eventName": name, "firedAt": time.Now().UTC().Format(awsTimeLayout), "orderKey": fmt.Sprintf("20260101000000-%07d", n.seq)},
	}}
	if !n.polling {
		n.s.ok(t, "fireEventsByNode", qFire, vars)
		return n.id + ":" + name
	}
	rec := obj(t, n.s.ok(t, "recordEventsByNode", qRecord, vars))
	if next, _ := rec["nextSince"].(string); next != "" {
		n.lastFetch = next
	}
	return n.id + ":" + name
}

func TestPollingMembersGetEveryEventOnce(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{}, b)
		gid := s.group(t, true)
		host := &meshNode{s: s, id: "host", gid: gid}
		ws := &meshNode{s: s, id: "ws", gid: gid}
		s.ok(t, "joinGroup", qJoin, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "ws", "useWebSocket": true})
		var pollers []*meshNode
		var want []string
		for i, id := range []string{"p1", "p2", "p3"} {
			// Forced polling: the member asks false; the group answers WebSocket, and the
			// client polls anyway.
			j := obj(t, s.ok(t, "joinGroup", qJoin, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": id, "useWebSocket": false}))
			if j["useWebSocket"] != true || j["pollingIntervalSeconds"] != 2.0 {
				t.Fatalf("joinGroup = %v", j)
			}
			p := &meshNode{s: s, id: id, gid: gid, polling: true, skew: time.Duration(i) * time.Second}
			// An event between the join and the first poll, which starts from the client's
			// clock, is not lost.
			want = append(want, host.fire(t))
			p.poll(t)
			pollers = append(pollers, p)
		}
		nodes := append([]*meshNode{host, ws}, pollers...)
		for round := range 4 {
			// Every node fires; pollers poll in between, in a different order each round.
			for i, n := range nodes {
				want = append(want, n.fire(t))
				if p := pollers[(i+round)%len(pollers)]; i%2 == round%2 {
					p.poll(t)
				}
			}
			for _, p := range pollers {
				p.poll(t)
			}
		}
		for j, p := range pollers {
			p.poll(t)
			var others []string
			for i, w := range want {
				// Not its own events, nor the host's events of before its join (the i-th
				// was fired right after the i-th poller joined).
				if strings.HasPrefix(w, p.id+":") || i < j {
					continue
				}
				others = append(others, w)
			}
			if !slices.Equal(p.got, others) {
				t.Errorf("%s got\n%v\nwant\n%v", p.id, p.got, others)
			}
		}
	})
}

// presenceOf lists a group's present nodes as "node/transport", from the fake's record or
// the hub the dashboard reads.
func presenceOf(b Backend, gid string) []string {
	var out []string
	switch b := b.(type) {
	case *fakeBackend:
		for _, k := range b.presence() {
			if rest, ok := strings.CutPrefix(k, gid+"/"); ok {
				out = append(out, rest)
			}
		}
	case *StoreBackend:
		for node, ts := range b.hub.Transports(gid) {
			for _, tr := range ts {
				out = append(out, node+"/"+tr)
			}
		}
	}
	slices.Sort(out)
	return out
}

func TestMeshNodesArePresent(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{}, b)
		clock := testclock.New()
		s.h.root.roster.now = clock.Now

		// A polling group: the host and a member that asked for WebSocket both poll.
		gid := s.group(t, false)
		j := obj(t, s.ok(t, "joinGroup", qJoin, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1", "useWebSocket": true}))
		if j["useWebSocket"] != false {
			t.Fatalf("joinGroup = %v", j)
		}
		host := &meshNode{s: s, id: "host", gid: gid, polling: true}
		m1 := &meshNode{s: s, id: "m1", gid: gid, polling: true, skew: -time.Minute}
		host.poll(t)
		m1.poll(t)
		if got := presenceOf(b, gid); !slices.Equal(got, []string{"host/graphql_poll", "m1/graphql_poll"}) {
			t.Fatalf("presence = %v", got)
		}
		// Polling within the interval keeps a node present; one that stops is not.
		clock.Advance(3 * time.Second)
		host.poll(t)
		clock.Advance(3 * time.Second)
		s.h.root.roster.sweep()
		if got := presenceOf(b, gid); !slices.Equal(got, []string{"host/graphql_poll"}) {
			t.Fatalf("presence after m1 stopped polling = %v", got)
		}

		// A WebSocket group: a subscription is its node's presence until it stops.
		s2 := newTestServer(t, Config{}, b)
		g2 := obj(t, s2.ok(t, "createGroup", qCreateGroup, map[string]any{"name": "h2", "hostId": "h2", "domain": "classroom", "useWebSocket": true}))["id"].(string)
		c := s2.dialRT(t, `{"host":"x","x-amz-date":"20260101T000000Z","x-api-key":"k"}`)
		c.handshake()
		c.start("sub", g2)
		c.expect("start_ack")
		if got := presenceOf(b, g2); !slices.Equal(got, []string{"h2/graphql_ws"}) {
			t.Fatalf("presence of a subscriber = %v", got)
		}
		c.send(map[string]string{"id": "sub", "type": "stop"})
		c.expect("complete")
		if got := presenceOf(b, g2); len(got) != 0 {
			t.Fatalf("presence after stop = %v", got)
		}
	})
}

func TestSinceEmptyReadsFromTheOldestEvent(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{}, b)
		gid := s.group(t, true)
		host := &meshNode{s: s, id: "host", gid: gid}
		host.fire(t)
		host.fire(t)
		evs := list(t, s.ok(t, "getEventsSince", qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": ""}))
		if len(evs) != 2 || obj(t, evs[0])["name"] != "e1" {
			t.Fatalf("since \"\" = %v", evs)
		}
	})
}
