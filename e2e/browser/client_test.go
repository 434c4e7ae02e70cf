package browser_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"meshbox/jetstream/natstest"
)

// joined is what the harness's T.watch returns for a new client.
type joined struct {
	Group  string `json:"group"`
	Node   string `json:"node"`
	Cursor int64  `json:"cursor"`
}

var transports = []string{"ws", "sse", "poll"}

// createIn makes a MeshClient in the tab with MeshClient.create and registers it as id.
func createIn(tb *tab, id, opts string) joined {
	tb.t.Helper()
	var j joined
	tb.eval(fmt.Sprintf(`MeshClient.create('', %s).then((m) => T.watch(%s, m))`, opts, jsString(id)), &j)
	return j
}

// joinIn makes a MeshClient in the tab with MeshClient.join and registers it as id.
func joinIn(tb *tab, id, group, opts string) joined {
	tb.t.Helper()
	var j joined
	tb.eval(fmt.Sprintf(`MeshClient.join('', %s, %s).then((m) => T.watch(%s, m))`, jsString(group), opts, jsString(id)), &j)
	return j
}

func waitConnected(tb *tab, id string, timeout time.Duration) {
	tb.t.Helper()
	tb.waitTrue(fmt.Sprintf(`T.c[%[1]s].status === 'connected'`, jsString(id)), fmt.Sprintf(`T.state(%s)`, jsString(id)), timeout)
}

func transportOf(tb *tab, id string) string {
	tb.t.Helper()
	var s string
	tb.eval(fmt.Sprintf(`T.c[%s].transport`, jsString(id)), &s)
	return s
}

// eventsOf returns "name=payload" of every event the client delivered whose name starts with prefix.
func eventsOf(tb *tab, id, prefix string) []string {
	tb.t.Helper()
	var got []string
	tb.eval(fmt.Sprintf(`T.events(%s, %s)`, jsString(id), jsString(prefix)), &got)
	return got
}

// assertCursorsIncrease fails unless the client delivered items in strictly increasing cursor
// order, which also rules out duplicates.
func assertCursorsIncrease(tb *tab, id string) {
	tb.t.Helper()
	var bad []int64
	tb.eval(fmt.Sprintf(`T.items[%s].flatMap((it, i, a) => i > 0 && a[i-1].cursor >= it.cursor ? [a[i-1].cursor, it.cursor] : [])`, jsString(id)), &bad)
	if len(bad) > 0 {
		tb.t.Errorf("%s/%s: items out of order or repeated at cursors %v", tb.name, id, bad)
	}
}

func seq(prefix string, n int, payload func(int) string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d=%s", prefix, i, payload(i))
	}
	return out
}

// publishJS publishes prefix00..prefixNN from client id, all at once so they share the outgoing
// queue, and resolves when every one was acknowledged.
func publishJS(id, prefix string, n int) string {
	return fmt.Sprintf(`Promise.all(Array.from({length: %d}, (_, i) => T.c[%s].publish(%s + String(i).padStart(2, '0'), 'p' + i)))`, n, jsString(id), jsString(prefix))
}

// client is a MeshClient registered in a tab as id.
type client struct {
	tb *tab
	id string
}

// resumed waits until each client has the q events and is connected, then checks that it got
// the e events and then the q events, each once and in order, and is on transport tr again.
func resumed(t *testing.T, clients []client, wantE, wantQ []string, tr string) {
	t.Helper()
	for _, c := range clients {
		c.tb.waitTrue(fmt.Sprintf(`T.events(%s, 'q').length >= %d && T.c[%[1]s].status === 'connected'`, jsString(c.id), len(wantQ)), fmt.Sprintf(`T.state(%s)`, jsString(c.id)), 45*time.Second)
		if got := eventsOf(c.tb, c.id, "e"); !slices.Equal(got, wantE) {
			t.Errorf("%s: events before %v, want %v", c.id, got, wantE)
		}
		if got := eventsOf(c.tb, c.id, "q"); !slices.Equal(got, wantQ) {
			t.Errorf("%s: events queued meanwhile %v, want %v", c.id, got, wantQ)
		}
		assertCursorsIncrease(c.tb, c.id)
		if got := transportOf(c.tb, c.id); got != tr {
			t.Errorf("%s reconnected over %q, want %q", c.id, got, tr)
		}
	}
}

// storedOnce fails unless the group's stream on the server at url (read with member c's token)
// holds the events whose names start with prefix exactly as want.
func storedOnce(t *testing.T, url, gid string, c client, prefix string, want []string) {
	t.Helper()
	var token string
	c.tb.eval(fmt.Sprintf(`T.c[%s]._token`, jsString(c.id)), &token)
	var got []string
	for _, n := range serverEventNames(t, url, gid, token) {
		if strings.HasPrefix(n, prefix) {
			got = append(got, n)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("the server's stream holds %v, want %v", got, want)
	}
}

func TestTwoClientsExchangeEventsAndDataOverEachTransport(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			alice := b.page(t, "alice", srv.URL)
			bob := b.page(t, "bob", srv.URL)
			g := createIn(alice, "a", fmt.Sprintf(`{name: 'exchange %s', nodeName: 'alice', transport: %s}`, tr, jsString(tr)))
			joinIn(bob, "b", g.Group, fmt.Sprintf(`{name: 'bob', transport: %s}`, jsString(tr)))
			waitConnected(alice, "a", 15*time.Second)
			waitConnected(bob, "b", 15*time.Second)
			if got := transportOf(alice, "a"); got != tr {
				t.Fatalf("alice uses %q, want %q", got, tr)
			}
			if got := transportOf(bob, "b"); got != tr {
				t.Fatalf("bob uses %q, want %q", got, tr)
			}

			const n = 30
			var ca, cb []int64
			alice.eval(publishJS("a", "a", n), &ca)
			bob.eval(publishJS("b", "b", n), &cb)
			alice.eval(`T.c.a.setData({score: '3', color: 'red'})`, nil)
			bob.eval(`T.c.b.setData({score: 7})`, nil)
			if len(ca) != n || len(cb) != n || !slices.IsSorted(ca) || !slices.IsSorted(cb) {
				t.Fatalf("acknowledged cursors: alice %v, bob %v", ca, cb)
			}

			wantA := seq("a", n, func(i int) string { return fmt.Sprintf("p%d", i) })
			wantB := seq("b", n, func(i int) string { return fmt.Sprintf("p%d", i) })
			for _, p := range []struct {
				tb *tab
				id string
			}{{alice, "a"}, {bob, "b"}} {
				p.tb.waitTrue(fmt.Sprintf(`T.events(%[1]s).length >= %d && [...T.c[%[1]s].nodes.values()].filter((n) => n.data.score).length === 2`, jsString(p.id), 2*n),
					fmt.Sprintf(`T.state(%s)`, jsString(p.id)), 20*time.Second)
				// Each publisher's events arrive once, in the order they were published.
				if got := eventsOf(p.tb, p.id, "a"); !slices.Equal(got, wantA) {
					t.Errorf("%s got alice's events %v, want %v", p.id, got, wantA)
				}
				if got := eventsOf(p.tb, p.id, "b"); !slices.Equal(got, wantB) {
					t.Errorf("%s got bob's events %v, want %v", p.id, got, wantB)
				}
				assertCursorsIncrease(p.tb, p.id)
				var data map[string]map[string]string
				p.tb.eval(fmt.Sprintf(`Object.fromEntries([...T.c[%s].nodes.values()].map((n) => [n.name, n.data]))`, jsString(p.id)), &data)
				if data["alice"]["score"] != "3" || data["alice"]["color"] != "red" || data["bob"]["score"] != "7" {
					t.Errorf("%s sees data %v", p.id, data)
				}
			}
			// Both readers saw the same stream.
			var sa, sb []int64
			alice.eval(`T.items.a.filter((i) => i.kind === 'event').map((i) => i.cursor)`, &sa)
			bob.eval(`T.items.b.filter((i) => i.kind === 'event').map((i) => i.cursor)`, &sb)
			if !slices.Equal(sa, sb) {
				t.Errorf("alice and bob saw different event streams:\n%v\n%v", sa, sb)
			}

			// Leaving shows up in the other's view, and the leaver stops cleanly.
			bob.eval(`T.c.b.leave()`, nil)
			bob.waitTrue(`T.c.b.status === 'closed'`, `T.state('b')`, 5*time.Second)
			alice.waitTrue(`T.c.a.nodes.size === 1 && T.items.a.some((i) => i.kind === 'leave')`, `T.state('a')`, 10*time.Second)
			for _, tb := range []*tab{alice, bob} {
				if errs := tb.consoleErrors(); len(errs) > 0 {
					t.Errorf("%s logged errors: %v", tb.name, errs)
				}
			}

			// Dissolving stops the host cleanly too.
			alice.eval(`T.c.a.dissolve()`, nil)
			alice.waitTrue(`T.c.a.status === 'closed' && T.statuses.a.at(-1).reason === 'dissolved'`, `T.state('a')`, 5*time.Second)
		})
	}
}

func TestDissolveStopsMembers(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			tb := b.page(t, "tab", srv.URL)
			g := createIn(tb, "host", fmt.Sprintf(`{name: 'dissolve', transport: %s}`, jsString(tr)))
			joinIn(tb, "m", g.Group, fmt.Sprintf(`{name: 'member', transport: %s}`, jsString(tr)))
			waitConnected(tb, "m", 15*time.Second)
			tb.eval(`T.c.host.dissolve()`, nil)
			tb.waitTrue(`T.c.m.status === 'closed' && T.items.m.at(-1).kind === 'dissolve'`, `T.state('m')`, 15*time.Second)
			var reason string
			tb.eval(`T.statuses.m.at(-1).reason`, &reason)
			if reason != "dissolved" {
				t.Errorf("member closed with reason %q, want dissolved", reason)
			}
			var code string
			tb.eval(`T.c.m.publish('late').then(() => 'sent', (e) => e.code)`, &code)
			if code == "sent" {
				t.Error("a closed client still publishes")
			}
		})
	}
}

// A client told by an answer that its group ended (a heartbeat's, a publish's: answers can
// come before the stream delivered the dissolve) still hands its listeners the items it had not
// delivered — more than one page of them — the dissolve last, before it closes; two such
// answers at once (a publish's and a heartbeat's) end it once, after the same reading.
func TestEndedGroupStillDeliversItsLastItems(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	tb := b.page(t, "tab", srv.URL)
	var got struct {
		Status string   `json:"status"`
		Reason string   `json:"reason"`
		Kinds  []string `json:"kinds"`
	}
	tb.eval(`(async () => {
  const host = await MeshClient.create('', {name: 'drain', transport: 'poll'});
  await host.publishMany(Array.from({length: 600}, (_, i) => ({name: 'last words', payload: i})));
  const res = await fetch('/api/v1/groups/' + host.groupId + '/nodes', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: '{"name": "late"}'});
  const joined = await res.json();
  joined.cursor = 0; // behind everything, as a member whose stream has not caught up
  const m = new MeshClient('', joined, {}); // never started: its own stream delivers nothing
  T.watch('late', m);
  await host.dissolve();
  const lib = await import('/meshbox.js');
  const ended = () => new lib.MeshError('group_ended', 'group has ended', 410);
  await Promise.all([m._fatal(ended()), m._fatal(ended())]);
  return {status: m.status, reason: T.statuses.late.at(-1).reason, kinds: T.items.late.map((i) => i.kind)};
})()`, &got)
	if got.Status != "closed" || got.Reason != "dissolved" {
		t.Fatalf("the client ended %s (%s), want closed (dissolved)", got.Status, got.Reason)
	}
	events := 0
	for _, k := range got.Kinds {
		if k == "event" {
			events++
		}
	}
	if n := len(got.Kinds); n == 0 || got.Kinds[n-1] != "dissolve" || events != 600 {
		t.Fatalf("the client handed over %d items, %d events, last %q; want all 600 events, the dissolve last", len(got.Kinds), events, got.Kinds[len(got.Kinds)-1:])
	}
}

func TestAutoFallsBackWhenWebSocketIsRefused(t *testing.T) {
	b := newBrowser(t)

	t.Run("proxy refuses upgrades", func(t *testing.T) {
		srv := startMeshbox(t, settings{})
		p := newProxy(t, srv.URL)
		p.refuseUpgrade.Store(true)
		behind := b.page(t, "behind proxy", p.srv.URL)
		direct := b.page(t, "direct", srv.URL)
		g := createIn(behind, "a", `{name: 'fallback', nodeName: 'behind', transport: 'auto'}`)
		joinIn(direct, "b", g.Group, `{name: 'direct', transport: 'auto'}`)
		waitConnected(behind, "a", 20*time.Second)
		waitConnected(direct, "b", 20*time.Second)
		if got := transportOf(behind, "a"); got != "sse" {
			t.Fatalf("behind the proxy auto chose %q, want sse", got)
		}
		if got := transportOf(direct, "b"); got != "ws" {
			t.Fatalf("without the proxy auto chose %q, want ws", got)
		}
		exchange(t, behind, "a", direct, "b", 20)

		// The choice is remembered for the session: a second client goes straight to SSE.
		joinIn(behind, "a2", g.Group, `{name: 'second', transport: 'auto'}`)
		waitConnected(behind, "a2", 10*time.Second)
		var states []string
		behind.eval(`T.statuses.a2.map((s) => s.state + ':' + (s.transport || ''))`, &states)
		if len(states) == 0 || states[0] != "connected:sse" {
			t.Errorf("second client's statuses %v, want to start with connected:sse", states)
		}
	})

	t.Run("proxy refuses upgrades and event streams", func(t *testing.T) {
		srv := startMeshbox(t, settings{})
		p := newProxy(t, srv.URL)
		p.refuseUpgrade.Store(true)
		p.refuseSSE.Store(true)
		behind := b.page(t, "behind proxy", p.srv.URL)
		direct := b.page(t, "direct", srv.URL)
		g := createIn(behind, "a", `{name: 'fallback2', nodeName: 'behind', transport: 'auto'}`)
		joinIn(direct, "b", g.Group, `{name: 'direct', transport: 'sse'}`)
		waitConnected(behind, "a", 20*time.Second)
		waitConnected(direct, "b", 20*time.Second)
		if got := transportOf(behind, "a"); got != "poll" {
			t.Fatalf("behind the proxy auto chose %q, want poll", got)
		}
		exchange(t, behind, "a", direct, "b", 20)
	})

	t.Run("server refuses upgrades", func(t *testing.T) {
		srv := startMeshbox(t, settings{noWebSocket: true})
		x := b.page(t, "x", srv.URL)
		y := b.page(t, "y", srv.URL)
		g := createIn(x, "a", `{name: 'nows', nodeName: 'x', transport: 'auto'}`)
		joinIn(y, "b", g.Group, `{name: 'y', transport: 'auto'}`)
		waitConnected(x, "a", 20*time.Second)
		waitConnected(y, "b", 20*time.Second)
		for _, p := range []struct {
			tb *tab
			id string
		}{{x, "a"}, {y, "b"}} {
			if got := transportOf(p.tb, p.id); got != "sse" {
				t.Fatalf("%s chose %q against a server without WebSocket, want sse", p.id, got)
			}
		}
		exchange(t, x, "a", y, "b", 20)
	})
}

// exchange has both clients publish n events and checks each receives all 2n, once, in order.
func exchange(t *testing.T, ta *tab, a string, tbb *tab, bID string, n int) {
	t.Helper()
	ta.eval(publishJS(a, "x", n), nil)
	tbb.eval(publishJS(bID, "y", n), nil)
	wantX := seq("x", n, func(i int) string { return fmt.Sprintf("p%d", i) })
	wantY := seq("y", n, func(i int) string { return fmt.Sprintf("p%d", i) })
	for _, p := range []struct {
		tb *tab
		id string
	}{{ta, a}, {tbb, bID}} {
		p.tb.waitTrue(fmt.Sprintf(`T.events(%s, 'x').length + T.events(%[1]s, 'y').length >= %d`, jsString(p.id), 2*n), fmt.Sprintf(`T.state(%s)`, jsString(p.id)), 20*time.Second)
		if got := eventsOf(p.tb, p.id, "x"); !slices.Equal(got, wantX) {
			t.Errorf("%s: x events %v, want %v", p.id, got, wantX)
		}
		if got := eventsOf(p.tb, p.id, "y"); !slices.Equal(got, wantY) {
			t.Errorf("%s: y events %v, want %v", p.id, got, wantY)
		}
		assertCursorsIncrease(p.tb, p.id)
	}
}

func TestReconnectAfterServerRestartLosesNothing(t *testing.T) {
	b := newBrowser(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			srv := startMeshbox(t, settings{})
			sender := b.page(t, "sender", srv.URL)
			reader := b.page(t, "reader", srv.URL)
			g := createIn(sender, "s", fmt.Sprintf(`{name: 'restart', nodeName: 'sender', transport: %s}`, jsString(tr)))
			joinIn(reader, "r", g.Group, fmt.Sprintf(`{name: 'reader', transport: %s}`, jsString(tr)))
			waitConnected(sender, "s", 15*time.Second)
			waitConnected(reader, "r", 15*time.Second)

			// Acknowledged before the restart.
			sender.eval(publishJS("s", "e", 10), nil)
			reader.waitTrue(`T.events('r', 'e').length >= 10`, `T.state('r')`, 15*time.Second)

			srv.stop(t)
			for _, p := range []struct {
				tb *tab
				id string
			}{{sender, "s"}, {reader, "r"}} {
				p.tb.waitTrue(fmt.Sprintf(`T.c[%s].status === 'reconnecting'`, jsString(p.id)), fmt.Sprintf(`T.state(%s)`, jsString(p.id)), 15*time.Second)
			}
			// Queued while the server is down; sent once it is back, in order.
			sender.eval(`T.pending.q = Promise.allSettled(Array.from({length: 5}, (_, i) => T.c.s.publish('q' + String(i).padStart(2, '0'), 'queued' + i))).then((r) => { T.settled.q = r.map((x) => x.status + (x.reason ? ' ' + x.reason.code : '')); }); true`, nil)
			reader.eval(`T.pending.d = T.c.r.setData({offline: 'yes'}).then(() => { T.settled.d = 'ok'; }, (e) => { T.settled.d = e.code; }); true`, nil)
			var queued int
			sender.eval(`T.c.s._queue.length`, &queued)
			if queued != 5 {
				t.Fatalf("sender queued %d operations while the server was down, want 5", queued)
			}

			srv.start(t)
			sender.waitTrue(`T.settled.q !== undefined`, `T.state('s')`, 45*time.Second)
			var settled []string
			sender.eval(`T.settled.q`, &settled)
			for _, s := range settled {
				if s != "fulfilled" {
					t.Fatalf("queued publishes settled as %v", settled)
				}
			}
			reader.waitTrue(`T.settled.d !== undefined`, `T.state('r')`, 45*time.Second)

			wantE := seq("e", 10, func(i int) string { return fmt.Sprintf("p%d", i) })
			wantQ := seq("q", 5, func(i int) string { return fmt.Sprintf("queued%d", i) })
			resumed(t, []client{{sender, "s"}, {reader, "r"}}, wantE, wantQ, tr)
			sender.waitTrue(`[...T.c.s.nodes.values()].some((n) => n.data.offline === 'yes')`, `T.state('s')`, 15*time.Second)

			// The server holds each queued event exactly once.
			storedOnce(t, srv.URL, g.Group, client{reader, "r"}, "q", []string{"q00", "q01", "q02", "q03", "q04"})
		})
	}
}

// A client given several instances sharing groups (no load balancer in front of them) moves to
// the next when its instance goes away, and goes on by cursor there: on every transport,
// nothing acknowledged is lost, nothing is repeated, and what it queued meanwhile is sent once.
func TestClientMovesToAnotherInstance(t *testing.T) {
	b := newBrowser(t)
	nats := natstest.Run(t)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			a := startMeshbox(t, settings{natsURL: nats.URLs()})
			other := startMeshbox(t, settings{natsURL: nats.URLs()})
			bases := jsonString([]string{a.URL, other.URL})
			// The pages come from the other instance, so they outlive a.
			sender := b.page(t, "sender", other.URL)
			reader := b.page(t, "reader", other.URL)
			var g joined
			sender.eval(fmt.Sprintf(`MeshClient.create(%s, {name: 'move', nodeName: 'sender', transport: %s}).then((m) => T.watch('s', m))`, bases, jsString(tr)), &g)
			reader.eval(fmt.Sprintf(`MeshClient.join(%s, %s, {name: 'reader', transport: %s}).then((m) => T.watch('r', m))`, bases, jsString(g.Group), jsString(tr)), nil)
			waitConnected(sender, "s", 15*time.Second)
			waitConnected(reader, "r", 15*time.Second)
			var on string
			reader.eval(`T.c.r.baseURL`, &on)
			if on != a.URL {
				t.Fatalf("the reader started on %s, want the first instance %s", on, a.URL)
			}

			sender.eval(publishJS("s", "e", 10), nil)
			reader.waitTrue(`T.events('r', 'e').length >= 10`, `T.state('r')`, 15*time.Second)

			a.stop(t)
			// Published while the clients move: queued if the sender is between instances.
			sender.eval(`T.pending.q = Promise.allSettled(Array.from({length: 5}, (_, i) => T.c.s.publish('q' + String(i).padStart(2, '0'), 'moved' + i))).then((r) => { T.settled.q = r.map((x) => x.status + (x.reason ? ' ' + x.reason.code : '')); }); true`, nil)
			sender.waitTrue(`T.settled.q !== undefined`, `T.state('s')`, 45*time.Second)
			var settled []string
			sender.eval(`T.settled.q`, &settled)
			for _, s := range settled {
				if s != "fulfilled" {
					t.Fatalf("publishes during the move settled as %v", settled)
				}
			}
			wantE := seq("e", 10, func(i int) string { return fmt.Sprintf("p%d", i) })
			wantQ := seq("q", 5, func(i int) string { return fmt.Sprintf("moved%d", i) })
			clients := []client{{sender, "s"}, {reader, "r"}}
			resumed(t, clients, wantE, wantQ, tr)
			for _, c := range clients {
				var now string
				c.tb.eval(fmt.Sprintf(`T.c[%s].baseURL`, jsString(c.id)), &now)
				if now != other.URL {
					t.Errorf("%s talks to %s after the move, want %s", c.id, now, other.URL)
				}
			}
			// The stream holds each event of the move exactly once.
			storedOnce(t, other.URL, g.Group, client{reader, "r"}, "q", []string{"q00", "q01", "q02", "q03", "q04"})
		})
	}
}

// TestClientBaseURLList: several base URLs may be given as one comma-separated string; spaces
// and an empty entry (a trailing comma) are dropped rather than taken for "this page's origin",
// which only no URL at all means.
func TestClientBaseURLList(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	tb := b.page(t, "page", srv.URL)
	var got [][]string
	tb.eval(`(() => {
  const joined = {group: {id: 'g'}, node: {id: 'n'}, token: 't', cursor: 0};
  return [' http://a:1 , http://b:2,', ['http://a:1', ''], ''].map((u) => new MeshClient(u, joined, {}).baseURLs);
})()`, &got)
	want := [][]string{{"http://a:1", "http://b:2"}, {"http://a:1"}, {""}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("base URLs %q, want %q", got, want)
	}
}

// TestClientReturnsToARecoveredInstance: a client on the first of two instances loses both
// (it moves to the second, which is down too, and backs off); when the first comes back the
// client goes back to it, by cursor, rather than waiting on the second for ever.
func TestClientReturnsToARecoveredInstance(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			host := apiCreate(t, srv.URL, "return "+tr, "host")
			// Two ways to the one box stand for two instances sharing its groups.
			first, second := newProxy(t, srv.URL), newProxy(t, srv.URL)
			tb := b.page(t, "reader", srv.URL)
			tb.eval(fmt.Sprintf(`MeshClient.join(%s, %s, {name: 'reader', transport: %s, minBackoffMs: 200, maxBackoffMs: 1000}).then((m) => T.watch('r', m))`,
				jsonString([]string{first.srv.URL, second.srv.URL}), jsString(host.Group.ID), jsString(tr)), nil)
			waitConnected(tb, "r", 15*time.Second)

			first.setDown(true)
			second.setDown(true)
			tb.waitTrue(fmt.Sprintf(`T.c.r.baseURL === %s && T.statuses.r.at(-1).state === 'reconnecting'`, jsString(second.srv.URL)), `T.state('r')`, 30*time.Second)
			apiPublish(t, srv.URL, host, "while-away")
			first.setDown(false)
			tb.waitTrue(fmt.Sprintf(`T.c.r.baseURL === %s && T.c.r.status === 'connected'`, jsString(first.srv.URL)), `T.state('r')`, 30*time.Second)
			tb.waitTrue(`T.events('r', 'while-away').length === 1`, `T.state('r')`, 15*time.Second)
		})
	}
}

func TestResetAfterTruncation(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{eventTTL: time.Second, purgeInterval: 100 * time.Millisecond, tailItems: 4})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			host := apiCreate(t, srv.URL, "truncation "+tr, "host")
			p := newProxy(t, srv.URL)
			tb := b.page(t, "reader", p.srv.URL)
			joinIn(tb, "r", host.Group.ID, fmt.Sprintf(`{name: 'reader', transport: %s, minBackoffMs: 200, maxBackoffMs: 1000}`, jsString(tr)))
			waitConnected(tb, "r", 15*time.Second)
			apiPublish(t, srv.URL, host, "before")
			tb.waitTrue(`T.events('r', 'before').length === 1`, `T.state('r')`, 10*time.Second)

			p.setDown(true)
			tb.waitTrue(`T.c.r.status !== 'connected'`, `T.state('r')`, 15*time.Second)
			var cursor int64
			tb.eval(`T.c.r.cursor`, &cursor)
			// More than the tail holds, so the reader's cursor falls out of memory too.
			apiPublish(t, srv.URL, host, "missed1", "missed2", "missed3", "missed4", "missed5", "missed6", "missed7", "missed8")
			apiSetData(t, srv.URL, host, map[string]string{"phase": "after the gap"})
			// Wait until the server no longer holds what the reader missed.
			deadline := time.Now().Add(20 * time.Second)
			for !apiTruncated(t, srv.URL, host, cursor) {
				if time.Now().After(deadline) {
					t.Fatalf("server never reported truncation after cursor %d", cursor)
				}
				time.Sleep(100 * time.Millisecond)
			}
			p.setDown(false)

			tb.waitTrue(`T.resets.r === 1 && T.c.r.status === 'connected'`, `T.state('r')`, 20*time.Second)
			var phase string
			tb.eval(fmt.Sprintf(`T.c.r.nodes.get(%s).data.phase`, jsString(host.Node.ID)), &phase)
			if phase != "after the gap" {
				t.Errorf("after the reset the host's data is %q, want the fresh snapshot's", phase)
			}
			if got := eventsOf(tb, "r", "missed"); len(got) != 0 {
				t.Errorf("purged events were delivered: %v", got)
			}
			apiPublish(t, srv.URL, host, "later")
			tb.waitTrue(`T.events('r', 'later').length === 1`, `T.state('r')`, 15*time.Second)
			assertCursorsIncrease(tb, "r")
		})
	}
}

// apiJoined is the create/join answer as the Go side of a test reads it.
type apiJoined struct {
	Group struct {
		ID string `json:"id"`
	} `json:"group"`
	Node struct {
		ID string `json:"id"`
	} `json:"node"`
	Token  string `json:"token"`
	Cursor int64  `json:"cursor"`
}

func apiDo(t *testing.T, method, u, token string, body, out any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read: %v", method, u, err)
	}
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %s: %s", method, u, res.Status, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, u, raw, err)
		}
	}
}

func apiCreate(t *testing.T, base, name, nodeName string) apiJoined {
	t.Helper()
	var j apiJoined
	apiDo(t, http.MethodPost, base+"/api/v1/groups", "", map[string]any{"name": name, "nodeName": nodeName}, &j)
	return j
}

func apiPublish(t *testing.T, base string, j apiJoined, names ...string) {
	t.Helper()
	events := make([]map[string]string, len(names))
	for i, n := range names {
		events[i] = map[string]string{"name": n, "payload": "from go"}
	}
	apiDo(t, http.MethodPost, base+"/api/v1/groups/"+url.PathEscape(j.Group.ID)+"/events", j.Token, map[string]any{"events": events}, nil)
}

func apiSetData(t *testing.T, base string, j apiJoined, data map[string]string) {
	t.Helper()
	apiDo(t, http.MethodPut, base+"/api/v1/groups/"+url.PathEscape(j.Group.ID)+"/data", j.Token, map[string]any{"data": data}, nil)
}

// apiTruncated reports whether the server says items after since were purged.
func apiTruncated(t *testing.T, base string, j apiJoined, since int64) bool {
	t.Helper()
	var res struct {
		Truncated bool `json:"truncated"`
	}
	apiDo(t, http.MethodGet, fmt.Sprintf("%s/api/v1/groups/%s/events?since=%d&wait=0", base, url.PathEscape(j.Group.ID), since), j.Token, nil, &res)
	return res.Truncated
}

// serverEventNames reads the group's whole retained stream over HTTP and returns event names.
func serverEventNames(t *testing.T, base, group, token string) []string {
	t.Helper()
	var names []string
	var since int64
	for range 100 {
		var res struct {
			Items []struct {
				Cursor int64  `json:"cursor"`
				Kind   string `json:"kind"`
				Name   string `json:"name"`
			} `json:"items"`
			Next int64 `json:"next"`
		}
		apiDo(t, http.MethodGet, fmt.Sprintf("%s/api/v1/groups/%s/events?since=%d&wait=0&limit=500", base, url.PathEscape(group), since), token, nil, &res)
		if len(res.Items) == 0 {
			return names
		}
		for _, it := range res.Items {
			if it.Kind == "event" {
				names = append(names, it.Name)
			}
		}
		since = max(res.Next, res.Items[len(res.Items)-1].Cursor)
	}
	t.Fatal("stream did not end after 100 pages")
	return nil
}

func TestOutgoingQueueIsBounded(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	p := newProxy(t, srv.URL)
	tb := b.page(t, "tab", p.srv.URL)
	createIn(tb, "c", `{name: 'queue', transport: 'sse', maxQueue: 3, maxQueueAgeMs: 1500, minBackoffMs: 200, maxBackoffMs: 500}`)
	waitConnected(tb, "c", 15*time.Second)
	p.setDown(true)
	tb.waitTrue(`T.c.c.status === 'reconnecting'`, `T.state('c')`, 15*time.Second)

	// Three fit; the fourth is refused at once.
	tb.eval(`T.settled.q = []; for (let i = 0; i < 4; i++) T.c.c.publish('q' + i).then(() => T.settled.q.push('sent ' + i), (e) => T.settled.q.push(e.code + ' ' + i)); true`, nil)
	tb.waitTrue(`T.settled.q.length >= 1`, `T.settled.q`, 5*time.Second)
	var first []string
	tb.eval(`T.settled.q`, &first)
	if !slices.Equal(first, []string{"queue_full 3"}) {
		t.Fatalf("with a full queue: %v, want only the fourth refused", first)
	}
	// The three that waited too long are refused as expired, not sent later.
	tb.waitTrue(`T.settled.q.length === 4`, `T.settled.q`, 10*time.Second)
	var all []string
	tb.eval(`T.settled.q`, &all)
	if !slices.Equal(all, []string{"queue_full 3", "queue_expired 0", "queue_expired 1", "queue_expired 2"}) {
		t.Fatalf("after maxQueueAgeMs: %v", all)
	}

	// Once connected again, new publishes go through and the expired ones never appear.
	p.setDown(false)
	waitConnected(tb, "c", 15*time.Second)
	tb.eval(`T.c.c.publish('after')`, nil)
	tb.waitTrue(`T.events('c', 'after').length === 1`, `T.state('c')`, 10*time.Second)
	if got := eventsOf(tb, "c", "q"); len(got) != 0 {
		t.Errorf("expired publishes were sent: %v", got)
	}
}

func TestHeartbeatsFollowTheServersInterval(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{memberHeartbeat: time.Second})
	p := newProxy(t, srv.URL)
	host := apiCreate(t, srv.URL, "heartbeats", "host")
	tb := b.page(t, "tab", p.srv.URL)
	joinIn(tb, "m", host.Group.ID, `{name: 'member', transport: 'poll'}`)
	waitConnected(tb, "m", 15*time.Second)
	var interval float64
	tb.eval(`T.c.m._heartbeatSeconds`, &interval)
	if interval != 1 {
		t.Fatalf("client heartbeat interval %vs, want the server's 1s", interval)
	}
	// Three heartbeats come, and not faster than the interval: a lower bound on the time
	// they take, which a busy machine can only lengthen (no upper bound on timing).
	before, start := p.heartbeats.Load(), time.Now()
	deadline := start.Add(30 * time.Second)
	for p.heartbeats.Load()-before < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d heartbeats in 30 s at a 1 s interval", p.heartbeats.Load()-before)
		}
		tb.eval(`T.c.m.status`, new(string)) // a round trip to the page: waits without sleeping
	}
	if took := time.Since(start); took < 1500*time.Millisecond {
		t.Errorf("3 heartbeats in %v at a 1 s interval", took)
	}
}
