package web

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/auth"
	"meshbox/hub"
	"meshbox/live"
	"meshbox/metrics"
	"meshbox/rules"
	"meshbox/rules/rulestest"
	"meshbox/stream"
)

// testBox is a real store, hub and metrics behind the web routes on an httptest server.
type testBox struct {
	store *rules.Engine
	hub   *hub.Hub
	m     *metrics.Metrics
	h     *Handler
	srv   *httptest.Server
}

func newTestBox(t *testing.T, adminToken string) *testBox {
	t.Helper()
	return newTestBoxWith(t, Config{AdminToken: adminToken, Version: "v-test"})
}

func newTestBoxWith(t *testing.T, cfg Config) *testBox {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := metrics.New("test", nil)
	store := rulestest.Open(t, "", rules.Options{Observer: m})
	hb := hub.New(store, hub.Options{})
	store.Start(rules.Hooks{OnCommit: hb.Publish, Active: hb.Active})
	h, err := New(cfg, store, hb, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	r := chi.NewRouter()
	r.Use(m.InstrumentHTTP)
	h.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		cancel()
		<-done
	})
	return &testBox{store: store, hub: hb, m: m, h: h, srv: srv}
}

func (b *testBox) do(t *testing.T, method, path, token string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, b.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (b *testBox) class(t *testing.T) (rules.Joined, rules.Joined) {
	t.Helper()
	return b.classOf(t, "science", "teacher", "ada", "score", "7")
}

// classOf creates a group with its host and one student who sets one data key.
func (b *testBox) classOf(t *testing.T, group, host, student, key, value string) (rules.Joined, rules.Joined) {
	t.Helper()
	ctx := context.Background()
	h, err := b.store.CreateGroup(ctx, rules.NewGroup{Domain: "room1", Name: group, HostName: host})
	if err != nil {
		t.Fatal(err)
	}
	s, err := b.store.Join(ctx, h.Group.ID, rules.NewNode{Name: student})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SetData(ctx, h.Group.ID, s.Node.ID, map[string]string{key: value}, false); err != nil {
		t.Fatal(err)
	}
	return h, s
}

func TestStaticAssetsETag(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "")
	for _, tc := range []struct{ path, ctype string }{
		{"/", "text/html"},
		{"/assets/dashboard.js", "javascript"},
		{"/assets/dashboard.css", "text/css"},
		{"/favicon.svg", "image/svg+xml"},
		{"/meshbox.js", "javascript"},
	} {
		resp := b.do(t, http.MethodGet, tc.path, "")
		body, _ := io.ReadAll(resp.Body)
		etag := resp.Header.Get("ETag")
		if resp.StatusCode != 200 || etag == "" || len(body) == 0 || !strings.Contains(resp.Header.Get("Content-Type"), tc.ctype) {
			t.Fatalf("%s: status %d etag %q type %q len %d", tc.path, resp.StatusCode, etag, resp.Header.Get("Content-Type"), len(body))
		}
		req, _ := http.NewRequest(http.MethodGet, b.srv.URL+tc.path, nil)
		req.Header.Set("If-None-Match", etag)
		resp2, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp2.Body.Close()
		if resp2.StatusCode != http.StatusNotModified {
			t.Errorf("%s with If-None-Match: status %d, want 304", tc.path, resp2.StatusCode)
		}
	}
	if csp := b.do(t, http.MethodGet, "/", "").Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("dashboard CSP = %q", csp)
	}
	if resp := b.do(t, http.MethodHead, "/", ""); resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" {
		t.Errorf("HEAD /: status %d", resp.StatusCode)
	}
	for _, p := range []string{"/assets/nope.js", "/assets/../embed.go"} {
		if resp := b.do(t, http.MethodGet, p, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

func TestOverviewShowsClass(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "tok")
	host, student := b.class(t)
	sub := b.hub.Subscribe(host.Group.ID, student.Node.ID, "sse")
	defer sub.Close()
	if _, err := b.store.Publish(context.Background(), host.Group.ID, host.Node.ID, []rules.EventIn{{Name: "go"}, {Name: "stop"}}); err != nil {
		t.Fatal(err)
	}

	resp := b.do(t, http.MethodGet, "/api/v1/dashboard/overview", "tok")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var o Overview
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	if o.Version != "v-test" || !o.AdminEnabled || !o.Details || o.GroupsLive != 1 || o.NodesLive != 2 || len(o.JoinURLs) == 0 {
		t.Fatalf("overview header = %+v", o)
	}
	if o.Totals.Events != 2 || o.Totals.Items < 5 { // 2 joins, 1 data, 2 events
		t.Errorf("totals = %+v", o.Totals)
	}
	if o.Storage.DatabaseBytes == 0 || o.Storage.RetainedItems < 5 || o.Storage.Cursor == 0 {
		t.Errorf("storage = %+v", o.Storage)
	}
	if len(o.Domains) != 1 || o.Domains[0].Domain != "room1" || len(o.Domains[0].Groups) != 1 {
		t.Fatalf("domains = %+v", o.Domains)
	}
	g := o.Domains[0].Groups[0]
	if g.Name != "science" || g.Host != host.Node.ID || len(g.Nodes) != 2 {
		t.Fatalf("group = %+v", g)
	}
	var ada NodeView
	for _, n := range g.Nodes {
		if n.ID == student.Node.ID {
			ada = n
		}
	}
	if ada.Name != "ada" || ada.Data["score"] != "7" || strings.Join(ada.Transports, ",") != "sse" || ada.Host {
		t.Errorf("student = %+v", ada)
	}
}

// sseReader reads events from a dashboard stream.
type sseReader struct {
	t  *testing.T
	br *bufio.Reader
}

func (s *sseReader) next() (event, data string) {
	s.t.Helper()
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			s.t.Fatalf("read stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestStreamCarriesOverviewAndItems(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "tok")
	host, _ := b.class(t)

	resp := b.openDashboard(t, "?token=tok")
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	s := &sseReader{t: t, br: bufio.NewReader(resp.Body)}
	if ev, data := s.next(); ev != "hello" || !strings.Contains(data, `"adminEnabled":true`) || !strings.Contains(data, `"admin":true`) {
		t.Fatalf("first event %s %s", ev, data)
	}
	ev, data := s.next()
	var o Overview
	if ev != "overview" || json.Unmarshal([]byte(data), &o) != nil || o.GroupsLive != 1 {
		t.Fatalf("second event %s %.200s", ev, data)
	}

	cursors, err := b.store.Publish(context.Background(), host.Group.ID, host.Node.ID, []rules.EventIn{{Name: "beep"}})
	if err != nil {
		t.Fatal(err)
	}
	for { // overviews come meanwhile; the request's deadline bounds the wait
		ev, data := s.next()
		if ev == "overview" || ev == "items" && strings.Contains(data, `"backfill":true`) {
			continue
		}
		if ev != "items" {
			t.Fatalf("unexpected event %s", ev)
		}
		var msg struct {
			Items []struct {
				Group string
				Item  stream.Item
			}
		}
		if err := json.Unmarshal([]byte(data), &msg); err != nil {
			t.Fatal(err)
		}
		last := msg.Items[len(msg.Items)-1]
		if last.Group != host.Group.ID || last.Item.Name != "beep" || last.Item.Cursor != cursors[0] || last.Item.Kind != "event" {
			t.Fatalf("item = %+v", last)
		}
		break
	}
	// Every dashboard shares the one broadcaster; closing the stream unregisters it.
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for b.h.hub.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("closed stream still subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// openDashboard opens a dashboard stream held until the test ends (or a minute has passed, so
// a stream that never sends fails the test rather than hanging it).
func (b *testBox) openDashboard(t *testing.T, query string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/api/v1/dashboard/stream"+query, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func TestStreamLimit(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "")
	b.h.cfg.MaxStreams = 1
	b.openDashboard(t, "")
	if resp2 := b.do(t, http.MethodGet, "/api/v1/dashboard/stream", ""); resp2.StatusCode != http.StatusServiceUnavailable || resp2.Header.Get("Retry-After") == "" {
		t.Errorf("second dashboard: %d, want 503 with Retry-After", resp2.StatusCode)
	}
}

// Dashboard streams are long-lived connections like any other: one manager (package live) holds
// them under the per-address cap shared with every transport, except the teacher's, which have
// slots of their own.
func TestStreamSharesTheAddressCap(t *testing.T) {
	t.Parallel()
	b := newTestBoxWith(t, Config{AdminToken: "tok", Conns: live.New(context.Background(), live.Config{MaxPerAddr: 1})})
	b.openDashboard(t, "")
	second := b.do(t, http.MethodGet, "/api/v1/dashboard/stream", "")
	raw, _ := io.ReadAll(second.Body)
	if second.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(raw), "too_many_connections") || second.Header.Get("Retry-After") == "" {
		t.Errorf("second public dashboard of one address: %d %s", second.StatusCode, raw)
	}
	teacher := b.openDashboard(t, "?token=tok")
	if teacher.StatusCode != http.StatusOK {
		t.Errorf("the teacher's dashboard at the cap: %d, want 200", teacher.StatusCode)
	}
}

func TestQREndpoint(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "")
	resp := b.do(t, http.MethodGet, "/api/v1/dashboard/qr.svg?text=http%3A%2F%2F10.1.2.3%3A8080%2F", "")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(string(body), "<svg") {
		t.Errorf("qr: %d %q %.40s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	for _, q := range []string{"", "?text=", "?text=" + strings.Repeat("a", 201)} {
		if resp := b.do(t, http.MethodGet, "/api/v1/dashboard/qr.svg"+q, ""); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("qr %q: %d, want 400", q, resp.StatusCode)
		}
	}
}

// joinFor asks a handler configured with public, listen and machine what a request opened at
// host (the browser's address bar) should offer students.
func joinFor(t *testing.T, public, listen, host string, m *Machine) JoinInfo {
	t.Helper()
	return joinWith(t, Config{PublicURL: public, ListenAddr: listen, Machine: m}, host)
}

func joinWith(t *testing.T, cfg Config, host string) JoinInfo {
	t.Helper()
	h, err := New(cfg, nil, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Host = host
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	return h.join(r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local))))
}

// TestJoinAddressesOfferTheMDNSName: a box advertised as meshbox.local offers that name after
// its addresses (older Android devices do not resolve .local names), never alone.
func TestJoinAddressesOfferTheMDNSName(t *testing.T) {
	t.Parallel()
	lan := fixedMachine(false, "eth0=192.168.1.20")
	got := joinWith(t, Config{ListenAddr: ":8080", Machine: lan, LANHost: "meshbox.local"}, "localhost:8080")
	if want := "http://192.168.1.20:8080/ http://meshbox.local:8080/"; strings.Join(got.URLs, " ") != want {
		t.Errorf("got %v, want %s", got.URLs, want)
	}
	got = joinWith(t, Config{ListenAddr: "127.0.0.1:8080", Machine: lan, LANHost: "meshbox.local"}, "127.0.0.1:8080")
	if strings.Contains(strings.Join(got.URLs, " "), "meshbox.local") {
		t.Errorf("bound to loopback, the mDNS name was offered: %v", got.URLs)
	}
}

func fixedMachine(container bool, addrs ...string) *Machine {
	var hs []HostAddr
	for _, a := range addrs {
		name, ip, _ := strings.Cut(a, "=")
		hs = append(hs, HostAddr{Interface: name, IP: netip.MustParseAddr(ip)})
	}
	return &Machine{Addrs: func() []HostAddr { return hs }, InContainer: container}
}

func TestJoinAddresses(t *testing.T) {
	t.Parallel()
	lan := fixedMachine(false, "docker0=172.17.0.1", "eth0=192.168.1.20", "eth0=2001:db8::20", "wlan0=10.0.0.5")
	for _, tc := range []struct {
		name, public, listen, host string
		m                          *Machine
		want                       JoinInfo
	}{
		{"public URL wins over everything", "http://box.school:8080", ":8080", "192.168.1.20:8080", lan,
			JoinInfo{URLs: []string{"http://box.school:8080/"}, Source: "public-url"}},
		{"teacher on the box itself: the LAN interfaces, never loopback or a bridge", "", ":8080", "localhost:8080", lan,
			JoinInfo{URLs: []string{"http://192.168.1.20:8080/", "http://10.0.0.5:8080/"}, Source: "network"}},
		{"the address the teacher used comes first", "", ":8080", "10.0.0.5:8080", lan,
			JoinInfo{URLs: []string{"http://10.0.0.5:8080/", "http://192.168.1.20:8080/"}, Source: "request"}},
		{"listening on one address offers only it", "", "192.168.1.20:8080", "localhost:8080", lan,
			JoinInfo{URLs: []string{"http://192.168.1.20:8080/"}, Source: "network"}},
		{"bound to loopback: only this computer, with a warning", "", "127.0.0.1:8080", "127.0.0.1:8080", lan,
			JoinInfo{URLs: []string{"http://127.0.0.1:8080/"}, Source: "this-computer", Warning: "loopback"}},
		{"a container's own address is all we know: say so", "", ":8080", "localhost:8080", fixedMachine(true, "eth0=10.88.0.8"),
			JoinInfo{URLs: []string{"http://10.88.0.8:8080/"}, Source: "network", Warning: "container"}},
		{"a container opened through the host's address: that one only", "", ":8080", "192.168.1.20:8080", fixedMachine(true, "eth0=10.88.0.8"),
			JoinInfo{URLs: []string{"http://192.168.1.20:8080/"}, Source: "request"}},
		{"only a bridge: offered, as nothing better exists", "", ":8080", "localhost:8080", fixedMachine(false, "docker0=172.17.0.1"),
			JoinInfo{URLs: []string{"http://172.17.0.1:8080/"}, Source: "network"}},
		{"IPv6 only when there is no IPv4", "", ":8080", "localhost:8080", fixedMachine(false, "eth0=2001:db8::20"),
			JoinInfo{URLs: []string{"http://[2001:db8::20]:8080/"}, Source: "network"}},
		{"no network at all", "", ":8080", "localhost:8080", fixedMachine(false),
			JoinInfo{URLs: []string{"http://localhost:8080/"}, Source: "this-computer", Warning: "no-network"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := joinFor(t, tc.public, tc.listen, tc.host, tc.m)
			if strings.Join(got.URLs, " ") != strings.Join(tc.want.URLs, " ") || got.Source != tc.want.Source || got.Warning != tc.want.Warning {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	for _, h := range []string{"localhost:1", "127.0.0.1:80", "[::1]:80", "app.localhost", "127.0.0.1"} {
		if !isLoopbackHost(h) {
			t.Errorf("%s not seen as loopback", h)
		}
	}
	for _, a := range []string{":8080", "0.0.0.0:8080", "[::]:8080", "192.168.1.20:8080"} {
		if ListensOnLoopback(a) {
			t.Errorf("%s seen as loopback-only", a)
		}
	}
}

func TestRates(t *testing.T) {
	t.Parallel()
	var r rates
	t0 := time.Unix(1000, 0)
	tot := func(ev, dv int64) metrics.Totals {
		return metrics.Totals{Appended: map[string]int64{"event": ev}, Delivered: dv}
	}
	r.sample(t0, tot(0, 0))
	r.sample(t0.Add(time.Second), tot(10, 400))
	r.sample(t0.Add(3*time.Second), tot(30, 400))
	v := r.view()
	if len(v.Events) != 2 || v.Events[0] != 10 || v.Events[1] != 10 || v.Deliveries[0] != 400 || v.Deliveries[1] != 0 {
		t.Errorf("rates = %+v", v)
	}
	for i := range rateWindow + 20 {
		r.sample(t0.Add(time.Duration(4+i)*time.Second), tot(30, 400))
	}
	if n := len(r.view().Events); n != rateWindow {
		t.Errorf("window holds %d samples, want %d", n, rateWindow)
	}
}

// secrets are what the class of TestWithoutTokenOnlyFigures writes: none may reach anyone
// without the admin token.
var secrets = []string{"secret-group", "secret-host", "secret-ada", "secret-key", "secret-value", "secret-event", "secret-payload"}

func (b *testBox) secretClass(t *testing.T) rules.Joined {
	t.Helper()
	host, _ := b.classOf(t, "secret-group", "secret-host", "secret-ada", "secret-key", "secret-value")
	return host
}

func leaks(text string) []string {
	var out []string
	for _, s := range secrets {
		if strings.Contains(text, s) {
			out = append(out, s)
		}
	}
	return out
}

// TestWithoutTokenOnlyFigures reads the overview and the stream without the admin token, with
// a wrong one and with it (header in any case, or ?token=): only the admin sees names, data and
// payloads; the others get the figures.
func TestWithoutTokenOnlyFigures(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "tok")
	host := b.secretClass(t)

	for _, tc := range []struct {
		name, path, token string
		details           bool
	}{
		{"no token", "/api/v1/dashboard/overview", "", false},
		{"wrong token", "/api/v1/dashboard/overview", "nope", false},
		{"token", "/api/v1/dashboard/overview", "tok", true},
		{"query token", "/api/v1/dashboard/overview?token=tok", "", true},
	} {
		resp := b.do(t, http.MethodGet, tc.path, tc.token)
		raw, _ := io.ReadAll(resp.Body)
		var o Overview
		if err := json.Unmarshal(raw, &o); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.name, resp.StatusCode, raw)
		}
		if o.GroupsLive != 1 || o.NodesLive != 2 {
			t.Errorf("%s: figures %d groups %d nodes, want 1 and 2", tc.name, o.GroupsLive, o.NodesLive)
		}
		if l := leaks(string(raw)); tc.details != (len(l) > 0) || o.Details != tc.details {
			t.Errorf("%s: details %v, secrets shown %v", tc.name, o.Details, l)
		}
	}

	// The stream without a token: hello, overviews, and never an item, even as events flow.
	resp := b.openDashboard(t, "")
	s := &sseReader{t: t, br: bufio.NewReader(resp.Body)}
	if ev, data := s.next(); ev != "hello" || !strings.Contains(data, `"admin":false`) {
		t.Fatalf("hello: %s %s", ev, data)
	}
	// An admin stream alongside shows when the published item has gone out to streams.
	aresp := b.openDashboard(t, "?token=tok")
	as := &sseReader{t: t, br: bufio.NewReader(aresp.Body)}
	as.next() // hello
	as.next() // overview
	if _, err := b.store.Publish(context.Background(), host.Group.ID, host.Node.ID, []rules.EventIn{{Name: "secret-event", Payload: ptr("secret-payload")}}); err != nil {
		t.Fatal(err)
	}
	for {
		ev, data := as.next()
		if ev == "items" && strings.Contains(data, "secret-payload") {
			break
		}
	}
	// Two overviews later the public stream has had every chance to carry the item.
	for overviews := 0; overviews < 3; {
		ev, data := s.next()
		if ev != "overview" {
			t.Fatalf("public stream got %q: %.200s", ev, data)
		}
		if l := leaks(data); len(l) > 0 {
			t.Fatalf("public overview shows %v", l)
		}
		overviews++
	}
}

func ptr(s string) *string { return &s }

// TestTeacherAlwaysGetsAStream fills every public dashboard slot: the teacher still connects.
func TestTeacherAlwaysGetsAStream(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "tok")
	b.h.cfg.MaxStreams = 1
	b.openDashboard(t, "")
	if resp2 := b.do(t, http.MethodGet, "/api/v1/dashboard/stream", ""); resp2.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("second public dashboard: %d, want 503", resp2.StatusCode)
	}
	aresp := b.openDashboard(t, "?token=tok")
	if aresp.StatusCode != http.StatusOK {
		t.Fatalf("teacher's dashboard with every public slot taken: %d", aresp.StatusCode)
	}
}

// TestJoinOffersSmalruby: with the editor served, the join information names its path and the
// domain this caller lands in (the dashboard builds ADDRESS/smalruby/?mesh=DOMAIN from them);
// without it, neither.
func TestJoinOffersSmalruby(t *testing.T) {
	t.Parallel()
	lan := fixedMachine(false, "eth0=192.168.1.20")
	clients := auth.Clients{SharedDomain: "room-4b"}
	got := joinWith(t, Config{ListenAddr: ":8080", Machine: lan, Smalruby: "/smalruby/", Clients: clients}, "localhost:8080")
	if got.Smalruby != "/smalruby/" || got.Domain != "room-4b" || got.URLs[0] != "http://192.168.1.20:8080/" {
		t.Errorf("got %+v", got)
	}
	ipMode := auth.Clients{DomainMode: "ip", DomainSecret: "s"}
	if got := joinWith(t, Config{ListenAddr: ":8080", Machine: lan, Smalruby: "/smalruby/", Clients: ipMode}, "localhost:8080"); got.Domain != ipMode.Domain(httptest.NewRequest(http.MethodGet, "/", nil)) {
		t.Errorf("ip mode: domain %q", got.Domain)
	}
	if got := joinWith(t, Config{ListenAddr: ":8080", Machine: lan, Clients: clients}, "localhost:8080"); got.Smalruby != "" || got.Domain != "" {
		t.Errorf("without the editor: %+v", got)
	}
}

// TestJoinBehindAProxy: behind a trusted reverse proxy the join box offers the address the
// browser used (forwarded scheme and host); without --trust-proxy those headers change
// nothing, and a Host header that is no host is never offered.
func TestJoinBehindAProxy(t *testing.T) {
	t.Parallel()
	lan := fixedMachine(false, "eth0=192.168.1.20")
	ask := func(cfg Config, host string, headers ...string) JoinInfo {
		h, err := New(cfg, nil, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		for i := 0; i+1 < len(headers); i += 2 {
			r.Header.Set(headers[i], headers[i+1])
		}
		local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
		return h.join(r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local))))
	}
	fwd := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "mesh.school.example"}
	got := ask(Config{ListenAddr: ":8080", Machine: lan, Clients: auth.Clients{TrustProxy: true}}, "10.0.0.5:8080", fwd...)
	if got.URLs[0] != "https://mesh.school.example/" || got.Source != "request" {
		t.Errorf("behind a trusted proxy: %+v", got)
	}
	got = ask(Config{ListenAddr: ":8080", Machine: lan}, "10.0.0.5:8080", fwd...)
	if got.URLs[0] != "http://10.0.0.5:8080/" || strings.Contains(strings.Join(got.URLs, " "), "school") {
		t.Errorf("without --trust-proxy: %+v", got)
	}
	got = ask(Config{ListenAddr: ":8080", Machine: lan}, "a..b:8080")
	if strings.Contains(strings.Join(got.URLs, " "), "a..b") {
		t.Errorf("an implausible Host was offered: %+v", got)
	}
}
