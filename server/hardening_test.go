package server_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
	"meshbox/testclock"
)

// rawRequest writes head (and part of a body) on a fresh connection and returns what the
// server answers; a closed connection reads as "". safety bounds a server that never answers,
// so the test fails instead of hanging.
func rawRequest(t *testing.T, base, head string, safety time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(safety))
	line, err := bufio.NewReader(c).ReadString('\n')
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("the server held a stalled body for %v: %q", safety, head)
	}
	return line
}

// TestStalledBodyIsCut sends bodies that stop mid-way, with a length and chunked, to the native
// API and to /graphql: each is cut at the body deadline and answered (or closed), so a
// connection is never held by a body that does not come.
func TestStalledBodyIsCut(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.BodyTimeout = 200 * time.Millisecond })
	g := c.create("slow")
	for _, tc := range []struct{ name, head, want string }{
		{"create with a length", "POST /api/v1/groups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":", "HTTP/1.1 408"},
		{"publish chunked", "POST /api/v1/groups/" + g.Group.ID + "/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + g.Token + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"eve", "HTTP/1.1 408"},
		{"graphql", "POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"query\":\"", "HTTP/1.1 4"},
	} {
		if got := rawRequest(t, c.base, tc.head, 10*time.Second); got != "" && !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: answered %q, want %s… or a closed connection", tc.name, got, tc.want)
		}
	}
	// A body that does arrive in time is served as usual, and so is the next request.
	if st, raw := c.call("POST", "/api/v1/groups", "", map[string]any{"name": "fine"}, nil); st != http.StatusCreated {
		t.Fatalf("create after the stalled ones: %d %s", st, raw)
	}
}

// TestProbesAnswerWithConnectionsHoarded fills the connection budget with connections that
// send nothing: /healthz, /readyz and /metrics still answer, other requests are told to come
// back (503 with Retry-After), and once the hoarders go, service is normal again.
func TestProbesAnswerWithConnectionsHoarded(t *testing.T) {
	t.Parallel()
	a, c := newServer(t, func(cfg *config.Config) { cfg.MaxConns = 4 })
	var hoard []net.Conn
	for range 4 {
		conn, err := net.Dial("tcp", strings.TrimPrefix(c.base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		hoard = append(hoard, conn)
	}
	// The server accepts in order: once it counts four, the hoarders hold the budget.
	eventually(t, 5*time.Second, "the hoarding connections were never accepted", func() bool { return a.Server.OpenConns() >= 4 })
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := fresh.Get(c.base + p)
		if err != nil {
			t.Fatalf("%s with the budget exhausted: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s with the budget exhausted: %d", p, resp.StatusCode)
		}
	}
	resp, err := fresh.Get(c.base + "/api/v1/domain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("API call with the budget exhausted: %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	for _, conn := range hoard {
		conn.Close()
	}
	eventually(t, 5*time.Second, "API calls never recovered after the hoarders left", func() bool {
		resp, err := fresh.Get(c.base + "/api/v1/domain")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// TestFloodingNodeLeavesClassmatesAlone: two nodes share one address (a classroom NAT) with a
// small budget per node and per address. One floods and is refused; the other, within its own
// budget, gets zero 429s, as its requests are charged to it, not to the address, and the
// flooder's refused requests cost nobody anything.
func TestFloodingNodeLeavesClassmatesAlone(t *testing.T) {
	t.Parallel()
	clock := testclock.New() // frozen: no budget refills while the test runs, however slow
	a := app.StartTestWith(t, func(cfg *config.Config) {
		cfg.NodeRate, cfg.IPRate, cfg.PublishRate = 5, 5, 0 // bursts of 10
	}, app.Options{Now: clock.Now})
	c := &client{t: t, base: a.URL()}
	host := c.create("class")
	flooder := c.join(host.Group.ID, "flooder")
	refused := 0
	for i := range 60 {
		st, _ := c.call("POST", "/api/v1/groups/"+host.Group.ID+"/events", flooder.Token, `{"events":[{"name":"spam"}]}`, nil)
		if st == http.StatusTooManyRequests {
			refused++
		}
		if i%6 == 0 { // the classmate, in between: 10 requests in all, its whole burst
			if st, raw := c.call("POST", "/api/v1/groups/"+host.Group.ID+"/events", host.Token, `{"events":[{"name":"hello"}]}`, nil); st != http.StatusOK {
				t.Fatalf("classmate's publish %d: %d %s", i/6, st, raw)
			}
		}
	}
	if refused < 50 {
		t.Fatalf("the flooder was refused %d of 60 times, want at least 50", refused)
	}
	// Anonymous requests from the same address still have their own budget (3 used of 10).
	if st, raw := c.call("GET", "/api/v1/domain", "", nil, nil); st != http.StatusOK {
		t.Fatalf("anonymous request from the classroom address: %d %s", st, raw)
	}
}

// TestClassOnLongPollSeesNo429: 40 nodes of one group, all behind one address, each reading by
// long-poll while together they publish 3 events per node per second, for two seconds of an
// injected clock. Every reader wakes for every event (the worst case: 123 requests per node
// per second, nearly 5,000 from the address), and not one request is refused.
func TestClassOnLongPollSeesNo429(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	a := app.StartTestWith(t, nil, app.Options{Now: clock.Now})
	c := &client{t: t, base: a.URL()}
	const nodes, perNodePerSecond, seconds = 40, 3, 2
	host := c.create("class")
	class := []joined{host}
	for i := 1; i < nodes; i++ {
		class = append(class, c.join(host.Group.ID, fmt.Sprintf("n%d", i)))
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * nodes}}
	var (
		mu       sync.Mutex
		cond     = sync.NewCond(&mu)
		seen     = make([]int64, nodes)
		statuses = map[int]int{}
		requests int
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for i, j := range class {
		wg.Add(1)
		go func() {
			defer wg.Done()
			since := j.Cursor
			for ctx.Err() == nil {
				st, p, _, err := pollOnceWith(ctx, hc, a.URL(), j, cur(since), "10")
				if err != nil {
					return
				}
				mu.Lock()
				requests++
				statuses[st]++
				if st == http.StatusOK {
					since = p.Next
					seen[i] = since
				}
				cond.Broadcast()
				mu.Unlock()
			}
		}()
	}
	step := time.Second / (nodes * perNodePerSecond)
	for k := range nodes * perNodePerSecond * seconds {
		clock.Advance(step)
		pub := class[k%nodes]
		var out struct{ Cursors []int64 }
		st, raw := c.call("POST", "/api/v1/groups/"+host.Group.ID+"/events", pub.Token, `{"events":[{"name":"tick"}]}`, &out)
		mu.Lock()
		requests++
		statuses[st]++
		mu.Unlock()
		if st != http.StatusOK {
			t.Fatalf("publish %d: %d %s", k, st, raw)
		}
		mu.Lock()
		for i := 0; i < nodes; {
			if seen[i] >= out.Cursors[0] {
				i++
				continue
			}
			if statuses[http.StatusTooManyRequests] > 0 {
				break
			}
			cond.Wait()
		}
		refused := statuses[http.StatusTooManyRequests]
		mu.Unlock()
		if refused > 0 {
			t.Fatalf("after %d publishes: %d requests refused with 429 (statuses %v)", k+1, refused, statuses)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(statuses) != 1 || statuses[http.StatusOK] != requests {
		t.Fatalf("statuses %v of %d requests, want all 200", statuses, requests)
	}
	t.Logf("%d requests from one address over %d simulated seconds, none refused", requests, seconds)
}

// TestGroupCreationLimits: one client (X-Forwarded-For behind a trusted proxy) may hold only so
// many live groups, whatever the domains; the server only so many in total; and one client
// may create them only so fast (a frozen clock: nothing refills).
func TestGroupCreationLimits(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	a := app.StartTestWith(t, func(cfg *config.Config) {
		cfg.TrustProxy = true
		cfg.MaxGroupsPerClient, cfg.MaxGroups = 3, 5
	}, app.Options{Now: clock.Now})
	c := &client{t: t, base: a.URL()}
	create := func(from, domain string) (int, string) {
		req, _ := http.NewRequest("POST", c.base+"/api/v1/groups", strings.NewReader(`{"name":"g","domain":"`+domain+`"}`))
		req.Header.Set("X-Forwarded-For", from)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(raw)
	}
	for i := range 3 {
		if st, raw := create("10.0.0.1", fmt.Sprintf("d%d", i)); st != http.StatusCreated {
			t.Fatalf("group %d of the first client: %d %s", i, st, raw)
		}
	}
	if st, raw := create("10.0.0.1", "d-other"); st != http.StatusTooManyRequests || !strings.Contains(raw, "live groups") {
		t.Fatalf("a fourth group in a fourth domain: %d %s, want 429", st, raw)
	}
	for i := range 2 {
		if st, raw := create("10.0.0.2", "d0"); st != http.StatusCreated {
			t.Fatalf("group %d of the second client: %d %s", i, st, raw)
		}
	}
	if st, raw := create("10.0.0.3", "d9"); st != http.StatusTooManyRequests || !strings.Contains(raw, "this server") {
		t.Fatalf("a sixth group on the server: %d %s, want 429", st, raw)
	}

	// The creation rate: a burst of 60, then refused until the clock moves.
	b := app.StartTestWith(t, func(cfg *config.Config) {
		cfg.TrustProxy = true
		cfg.MaxGroupsPerClient, cfg.MaxGroups, cfg.MaxGroupsPerDomain = 1000, 1000, 1000
		cfg.MaxGroupsPerClientDomain, cfg.MaxNodesPerClient = 0, 0 // the rate alone
	}, app.Options{Now: clock.Now})
	c.base = b.URL()
	for i := range 60 {
		if st, raw := create("10.0.0.4", "burst"); st != http.StatusCreated {
			t.Fatalf("group %d of the burst: %d %s", i, st, raw)
		}
	}
	if st, raw := create("10.0.0.4", "burst"); st != http.StatusTooManyRequests || !strings.HasPrefix(raw, "1 ") {
		t.Fatalf("group 61 at once: %d %s, want 429 with Retry-After 1", st, raw)
	}
	clock.Advance(time.Second)
	if st, raw := create("10.0.0.4", "burst"); st != http.StatusCreated {
		t.Fatalf("a group a second later: %d %s", st, raw)
	}
}

// TestSnapshotNeedsAToken: node names and data are read with a member's token or the admin's.
func TestSnapshotNeedsAToken(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.AdminToken = "teacher" })
	g := c.create("g")
	other := c.create("other")
	path := "/api/v1/groups/" + g.Group.ID
	for _, tc := range []struct {
		token string
		want  int
	}{{"", 401}, {"wrong", 401}, {other.Token, 401}, {g.Token, 200}, {"teacher", 200}} {
		if st, raw := c.call("GET", path, tc.token, nil, nil); st != tc.want {
			t.Errorf("snapshot with token %q: %d %s, want %d", tc.token, st, raw, tc.want)
		}
	}
}

// TestBearerInAnyCase: the auth scheme is case-insensitive on the native API as on the admin
// routes.
func TestBearerInAnyCase(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.AdminToken = "teacher" })
	g := c.create("g")
	for _, h := range []string{"bearer " + g.Token, "BEARER " + g.Token, "Bearer " + g.Token, "bearer teacher"} {
		req, _ := http.NewRequest("GET", c.base+"/api/v1/groups/"+g.Group.ID, nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization: %.12s…: %d", h, resp.StatusCode)
		}
	}
}

// TestWebSocketInvalidUTF8Closes1007: a text frame that is not UTF-8 ends the connection with
// 1007, and nothing of it is stored.
func TestWebSocketInvalidUTF8Closes1007(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, nil)
	g := c.create("g")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(c.base, "http")+"/api/v1/groups/"+g.Group.ID+"/ws?token="+g.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	bad := []byte(`{"type":"publish","id":1,"events":[{"name":"x","payload":"` + "\xff\xfe" + `"}]}`)
	if err := ws.Write(ctx, websocket.MessageText, bad); err != nil {
		t.Fatal(err)
	}
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusInvalidFramePayloadData {
				t.Fatalf("connection ended with %v (%v), want 1007", got, err)
			}
			break
		}
		if strings.Contains(string(data), `"ack"`) {
			t.Fatalf("the invalid frame was stored: %s", data)
		}
	}
	var p page
	c.call("GET", fmt.Sprintf("/api/v1/groups/%s/events?since=%d", g.Group.ID, g.Cursor), g.Token, nil, &p)
	for _, it := range p.Items {
		if it.Kind == "event" {
			t.Fatalf("an event was stored: %+v", it)
		}
	}
}

// TestSSEResetHasID: after a truncation the reset event carries an id, so a plain EventSource
// that reconnects sends the new cursor (Last-Event-ID) and is not reset again.
func TestSSEResetHasID(t *testing.T) {
	t.Parallel()
	a, c := newServer(t, func(cfg *config.Config) {
		unlimited(cfg)
		cfg.EventTTL = 200 * time.Millisecond
		cfg.PurgeInterval = 50 * time.Millisecond
	})
	host := c.create("reset")
	cursors := c.publish(host, "a", "b")
	eventually(t, 5*time.Second, "the items were never purged", func() bool {
		return a.Store.Stats(context.Background()).PurgedThrough >= cursors[1]
	})
	// events reads SSE events (id, event) until want of them have come.
	type event struct{ id, kind string }
	read := func(lastID string, want int, after func()) []event {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/api/v1/groups/%s/stream?token=%s", c.base, host.Group.ID, host.Token), nil)
		req.Header.Set("Last-Event-ID", lastID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if after != nil {
			after()
		}
		br := bufio.NewReader(resp.Body)
		var out []event
		var cur event
		for len(out) < want {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("read stream: %v (events so far %v)", err, out)
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case strings.HasPrefix(line, "id: "):
				cur.id = strings.TrimPrefix(line, "id: ")
			case strings.HasPrefix(line, "event: "):
				cur.kind = strings.TrimPrefix(line, "event: ")
			case line == "" && cur.kind != "":
				out = append(out, cur)
				cur = event{}
			}
		}
		return out
	}
	first := read(fmt.Sprint(host.Cursor), 1, nil)
	if first[0].kind != "reset" || first[0].id == "" {
		t.Fatalf("first event %+v, want a reset with an id", first[0])
	}
	// Reconnecting as EventSource does, with the reset's id: the next event is a new item.
	again := read(first[0].id, 1, func() { c.publish(host, "fresh") })
	if again[0].kind != "event" {
		t.Fatalf("after reconnecting with the reset's id got %+v, want the new event", again[0])
	}
}
