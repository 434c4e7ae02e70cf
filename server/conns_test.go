package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
)

// The connection tests: each attack comes from its own loopback address (Linux routes all
// of 127/8 to lo), the teacher from 127.0.0.1, a classmate from 127.0.0.3. The budget is
// small (--max-conns 64) so a flood is a few hundred connections.

const (
	teacherIP   = "127.0.0.1"
	classmateIP = "127.0.0.3"
	adminToken  = "teacher-token-0123456789abcdef"
)

// dialerFrom dials from ip, one laptop of the class.
func dialerFrom(ip string) *net.Dialer {
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
}

// clientFrom is a browser-like HTTP client (keep-alive) on ip.
func clientFrom(ip string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialerFrom(ip).DialContext}}
}

// hostOf is base's host:port.
func hostOf(base string) string { return strings.TrimPrefix(base, "http://") }

// callFrom sends a JSON request with cl and decodes the answer into out (when not nil).
func callFrom(t *testing.T, cl *http.Client, method, url, token string, body, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: decode %s: %v", method, url, raw, err)
		}
	}
	return resp.StatusCode, string(raw)
}

// idleConn opens a connection from ip, sends one request on it, reads the answer and leaves
// the connection open and silent (keep-alive): the row 2 attack. The connection is nil when
// the server refused it.
func idleConn(t *testing.T, base, ip, path string) (net.Conn, int) {
	t.Helper()
	c, err := dialerFrom(ip).Dial("tcp", hostOf(base))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a safety bound, not a synchronisation
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: meshbox\r\n\r\n"); err != nil {
		c.Close()
		return nil, 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetDeadline(time.Time{})
	t.Cleanup(func() { c.Close() })
	return c, resp.StatusCode
}

// sseConn opens an SSE stream from ip on its own connection and returns its body once the
// server answered 200; nil when it did not.
func sseConn(t *testing.T, base, ip, path string) *bufio.Reader {
	t.Helper()
	c, err := dialerFrom(ip).Dial("tcp", hostOf(base))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: meshbox\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		return nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		return nil
	}
	c.SetDeadline(time.Time{})
	return bufio.NewReader(resp.Body)
}

// readEvent reads SSE lines until one holding want, within a safety bound.
func readEvent(t *testing.T, body io.Reader, want string) string {
	t.Helper()
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var seen strings.Builder
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), want) {
				found <- sc.Text()
				return
			}
		}
		found <- "NOT FOUND in: " + seen.String()
	}()
	select {
	case line := <-found:
		return line
	case <-time.After(10 * time.Second):
		t.Fatalf("no %q on the stream", want)
		return ""
	}
}

// teacherOpensDashboard is what the teacher's browser does from 127.0.0.1: the page, its
// static files, the overview with the admin token and the admin stream; each must work.
func teacherOpensDashboard(t *testing.T, base string) {
	t.Helper()
	cl := clientFrom(teacherIP)
	defer cl.CloseIdleConnections()
	for _, p := range []string{"/", "/assets/dashboard.js", "/assets/dashboard.css", "/assets/i18n.js", "/favicon.svg"} {
		if st, body := callFrom(t, cl, "GET", base+p, "", nil, nil); st != http.StatusOK {
			t.Errorf("teacher: GET %s during the attack: %d %.200s", p, st, body)
		}
	}
	var o struct {
		Groups json.RawMessage `json:"groups"`
	}
	if st, body := callFrom(t, cl, "GET", base+"/api/v1/dashboard/overview", adminToken, nil, &o); st != http.StatusOK {
		t.Errorf("teacher: overview during the attack: %d %.200s", st, body)
	}
	if st, body := callFrom(t, cl, "GET", base+"/api/v1/admin/check", adminToken, nil, nil); st != http.StatusNoContent {
		t.Errorf("teacher: admin check during the attack: %d %.200s", st, body)
	}
	req, _ := http.NewRequest("GET", base+"/api/v1/dashboard/stream?token="+adminToken, nil)
	resp, err := clientFrom(teacherIP).Do(req)
	if err != nil {
		t.Fatalf("teacher: admin stream during the attack: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("teacher: admin stream during the attack: %d %.200s", resp.StatusCode, raw)
	}
	if line := readEvent(t, resp.Body, `"admin":`); !strings.Contains(line, `"admin":true`) {
		t.Errorf("teacher: the stream's hello is not the admin's: %s", line)
	}
}

// classmateJoinsAndPublishes is a pupil from 127.0.0.3 joining gid and publishing.
func classmateJoinsAndPublishes(t *testing.T, base, gid string) {
	t.Helper()
	cl := clientFrom(classmateIP)
	defer cl.CloseIdleConnections()
	var j joined
	if st, body := callFrom(t, cl, "POST", base+"/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": "classmate"}, &j); st != http.StatusCreated {
		t.Fatalf("classmate: join during the attack: %d %.200s", st, body)
	}
	ev := map[string]any{"events": []map[string]any{{"name": "hello", "payload": "from the classmate"}}}
	if st, body := callFrom(t, cl, "POST", base+"/api/v1/groups/"+gid+"/events", j.Token, ev, nil); st != http.StatusOK {
		t.Fatalf("classmate: publish during the attack: %d %.200s", st, body)
	}
}

func connTestServer(t *testing.T, edit func(*config.Config)) *app.App {
	t.Helper()
	return app.StartTest(t, func(cfg *config.Config) {
		cfg.MaxConns = 64
		cfg.AdminToken = adminToken
		if edit != nil {
			edit(cfg)
		}
	})
}

// Row 2 of issue 22: one laptop (127.0.0.2) opens hundreds of connections, sends one request
// on each and stays silent, holding them as idle keep-alive connections. The address's idle
// connections are the first to close when the teacher and a classmate connect, so the
// teacher's dashboard (page, static files, overview, admin stream) opens and the classmate
// joins and publishes. On the old code the idle connections held the budget and its reserve:
// every dashboard request got 503 busy or a closed connection.
func TestIdleKeepAliveFloodLeavesTheTeacherAndClassIn(t *testing.T) {
	t.Parallel()
	a := connTestServer(t, nil) // the default per-address cap (256) is above the budget: fairness decides
	host := newClientAt(t, a.URL(), "127.0.0.9").create("lesson")
	held := 0
	for range 300 {
		if c, st := idleConn(t, a.URL(), "127.0.0.2", "/api/v1/domain"); c != nil && st == http.StatusOK {
			held++
		}
	}
	// The attacker holds the budget, as idle connections.
	eventually(t, 10*time.Second, "the attacker's connections never went idle", func() bool {
		open, idle := a.Server.ConnsFrom("127.0.0.2")
		return open >= 60 && idle == open
	})
	teacherOpensDashboard(t, a.URL())
	classmateJoinsAndPublishes(t, a.URL(), host.Group.ID)
	if open, _ := a.Server.ConnsFrom("127.0.0.2"); open > 64 {
		t.Errorf("the attacker holds %d connections, more than the budget", open)
	}
	t.Logf("attacker was answered on %d of 300 connections", held)
}

// The per-address cap counts idle keep-alive connections: an address at its cap trades its
// oldest idle connection for a new one, and, holding only streams, is refused (429
// too_many_connections) — except for the teacher's requests from behind the same address (a
// class NAT), which use the reserve.
func TestPerAddressCapCountsIdleConnections(t *testing.T) {
	t.Parallel()
	a := connTestServer(t, func(cfg *config.Config) { cfg.MaxConnsPerIP = 8 })
	first, st := idleConn(t, a.URL(), "127.0.0.2", "/api/v1/domain")
	if first == nil || st != http.StatusOK {
		t.Fatalf("first connection: %d", st)
	}
	eventually(t, 10*time.Second, "the first connection never went idle", func() bool {
		_, idle := a.Server.ConnsFrom("127.0.0.2")
		return idle == 1
	})
	for i := range 30 {
		if c, st := idleConn(t, a.URL(), "127.0.0.2", "/api/v1/domain"); c == nil || st != http.StatusOK {
			t.Fatalf("connection %d at the cap: %d (its idle ones should make way)", i, st)
		}
		if open, _ := a.Server.ConnsFrom("127.0.0.2"); open > 8 {
			t.Fatalf("127.0.0.2 holds %d connections, over its cap of 8", open)
		}
	}
	// The first (oldest idle) connection was closed to make way.
	first.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := first.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatal("the oldest idle connection is still open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the oldest idle connection is still open")
	}

	// Eight streams: nothing of 127.0.0.2 is idle any more.
	host := newClientAt(t, a.URL(), "127.0.0.9").create("lesson")
	for i := range 8 {
		if sseConn(t, a.URL(), "127.0.0.2", "/api/v1/groups/"+host.Group.ID+"/stream?token="+host.Token) == nil {
			t.Fatalf("stream %d refused", i)
		}
	}
	eventually(t, 10*time.Second, "the idle connections never closed", func() bool {
		open, idle := a.Server.ConnsFrom("127.0.0.2")
		return open == 8 && idle == 0
	})
	cl := clientFrom("127.0.0.2")
	defer cl.CloseIdleConnections()
	if st, body := callFrom(t, cl, "GET", a.URL()+"/api/v1/domain", "", nil, nil); st != http.StatusTooManyRequests || !strings.Contains(body, "too_many_connections") {
		t.Errorf("a ninth connection of 127.0.0.2: %d %s, want 429 too_many_connections", st, body)
	}
	if st, body := callFrom(t, cl, "GET", a.URL()+"/api/v1/dashboard/overview", adminToken, nil, nil); st != http.StatusOK {
		t.Errorf("the teacher behind the same address: %d %.200s, want 200", st, body)
	}
}

// Row 3 of issue 22: four laptops (127.0.0.2–5), each under the per-address cap, fill the
// budget with SSE streams. The teacher's dashboard opens and a classmate (behind 127.0.0.3,
// with one of the attackers) joins and publishes: the heaviest addresses' oldest streams are
// closed with a busy event to make room. On the old code the teacher got 503 busy.
func TestStreamsOfAFewLaptopsLeaveTheTeacherAndClassIn(t *testing.T) {
	t.Parallel()
	a := connTestServer(t, func(cfg *config.Config) { cfg.MaxConnsPerIP = 20 })
	setup := newClientAt(t, a.URL(), "127.0.0.9")
	host := setup.create("lesson")
	busy := make(chan struct{}, 64) // an attacker stream read a busy event
	for _, ip := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		node := setup.join(host.Group.ID, "attacker-"+ip)
		for i := range 16 {
			body := sseConn(t, a.URL(), ip, "/api/v1/groups/"+host.Group.ID+"/stream?token="+node.Token)
			if body == nil {
				t.Fatalf("%s: stream %d refused before the budget was full", ip, i)
			}
			go func() { // ends when the stream does (at the latest when the test closes it)
				sc := bufio.NewScanner(body)
				for sc.Scan() {
					if sc.Text() == "event: busy" {
						busy <- struct{}{}
						return
					}
				}
			}()
		}
	}
	eventually(t, 10*time.Second, "the streams never filled the budget", func() bool { return a.Server.OpenConns() >= 64 })

	teacherOpensDashboard(t, a.URL())
	classmateJoinsAndPublishes(t, a.URL(), host.Group.ID)

	// The streams that made room were told why: a busy event, then the end of the stream.
	select {
	case <-busy:
	case <-time.After(10 * time.Second):
		t.Fatal("no attacker stream was closed with a busy event")
	}
}

// newClientAt is a client of base on ip for setting a lesson up (create, join).
func newClientAt(t *testing.T, base, ip string) *setupClient {
	return &setupClient{t: t, base: base, cl: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{DialContext: dialerFrom(ip).DialContext, DisableKeepAlives: true}}}
}

// setupClient creates and joins groups without holding connections open.
type setupClient struct {
	t    *testing.T
	base string
	cl   *http.Client
}

func (s *setupClient) create(name string) joined {
	var j joined
	raw, _ := json.Marshal(map[string]any{"name": name})
	resp, err := s.cl.Post(s.base+"/api/v1/groups", "application/json", bytes.NewReader(raw))
	if err != nil || resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("create: %v %v", err, resp)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&j)
	return j
}

func (s *setupClient) join(gid, name string) joined {
	var j joined
	raw, _ := json.Marshal(map[string]any{"name": name})
	resp, err := s.cl.Post(s.base+"/api/v1/groups/"+gid+"/nodes", "application/json", bytes.NewReader(raw))
	if err != nil || resp.StatusCode != http.StatusCreated {
		s.t.Fatalf("join: %v %v", err, resp)
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&j)
	return j
}

// Under pressure the heaviest address's idle connections close first, oldest first: with
// the budget nearly full, a connection from a lighter address (127.0.0.3) costs 127.0.0.2
// (40 idle connections) its oldest one, and 127.0.0.4 and .5 (10 each) keep all theirs.
func TestHeaviestAddressIdleConnectionsCloseFirst(t *testing.T) {
	t.Parallel()
	a := connTestServer(t, nil)
	var heavy []net.Conn
	for _, g := range []struct {
		ip string
		n  int
	}{{"127.0.0.2", 40}, {"127.0.0.4", 10}, {"127.0.0.5", 10}} {
		for i := range g.n {
			c, st := idleConn(t, a.URL(), g.ip, "/healthz")
			if c == nil || st != http.StatusOK {
				t.Fatalf("%s: connection %d: %d", g.ip, i, st)
			}
			// Each goes idle before the next opens, so the first is the one idle longest.
			eventually(t, 10*time.Second, "a connection never went idle", func() bool {
				_, idle := a.Server.ConnsFrom(g.ip)
				return idle == i+1
			})
			if g.ip == "127.0.0.2" {
				heavy = append(heavy, c)
			}
		}
	}
	// 60 of 64: the budget is nearly full. A classmate connects from a lighter address.
	cl := clientFrom(classmateIP)
	defer cl.CloseIdleConnections()
	if st, body := callFrom(t, cl, "GET", a.URL()+"/api/v1/domain", "", nil, nil); st != http.StatusOK {
		t.Fatalf("the classmate: %d %s", st, body)
	}
	heavy[0].SetReadDeadline(time.Now().Add(10 * time.Second)) // a safety bound: it is closed already
	if _, err := heavy[0].Read(make([]byte, 1)); err == nil {
		t.Fatal("127.0.0.2's oldest idle connection is still open")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("127.0.0.2's oldest idle connection is still open")
	}
	for ip, want := range map[string]int{"127.0.0.2": 39, "127.0.0.4": 10, "127.0.0.5": 10} {
		if open, _ := a.Server.ConnsFrom(ip); open != want {
			t.Errorf("%s holds %d connections, want %d", ip, open, want)
		}
	}
}

// When nothing can be closed (the budget is full of requests in progress: long-polls), the
// reserve serves the teacher: the dashboard page and its files, the overview and the admin
// stream with the token (TestTeacherKeepsAReservedConnection: kept past the reserve's
// window); other requests get 503 busy. On the old code the reserve served the probes only: the teacher got 503.
func TestTeacherUsesTheReserveWhenNothingCanBeClosed(t *testing.T) {
	t.Parallel()
	a := connTestServer(t, func(cfg *config.Config) { cfg.MaxConns = 16 })
	host := newClientAt(t, a.URL(), "127.0.0.9").create("lesson")
	node := newClientAt(t, a.URL(), "127.0.0.9").join(host.Group.ID, "poller")
	for range 16 {
		c, err := dialerFrom("127.0.0.2").Dial("tcp", hostOf(a.URL()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		// A long-poll waits (no item comes): its request stays in progress.
		io.WriteString(c, "GET /api/v1/groups/"+host.Group.ID+"/events?wait=30 HTTP/1.1\r\nHost: meshbox\r\nAuthorization: Bearer "+node.Token+"\r\n\r\n")
	}
	// Every long-poll is waiting (its request in progress) once the metrics count 16.
	eventually(t, 10*time.Second, "the long-polls never filled the budget", func() bool {
		return a.Metrics.Totals().Connections["longpoll"] >= 16
	})
	teacherOpensDashboard(t, a.URL())
	cl := clientFrom(classmateIP)
	defer cl.CloseIdleConnections()
	if st, body := callFrom(t, cl, "GET", a.URL()+"/api/v1/domain", "", nil, nil); st != http.StatusServiceUnavailable || !strings.Contains(body, "busy") {
		t.Errorf("a classmate's request with nothing to close: %d %s, want 503 busy", st, body)
	}
}
