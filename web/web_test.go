package web

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/db"
	"meshbox/hub"
	"meshbox/metrics"
)

// testBox is a real store, hub and metrics behind the web routes on an httptest server.
type testBox struct {
	store *db.Store
	hub   *hub.Hub
	m     *metrics.Metrics
	h     *Handler
	srv   *httptest.Server
}

func newTestBox(t *testing.T, adminToken string) *testBox {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := metrics.New("test", nil)
	store, err := db.Open(ctx, filepath.Join(t.TempDir(), "meshbox.db"), db.Options{Observer: m})
	if err != nil {
		t.Fatal(err)
	}
	hb := hub.New(store, hub.Options{})
	store.Start(db.Hooks{OnCommit: hb.Publish, Active: hb.Active})
	h, err := New(Config{AdminToken: adminToken, Version: "v-test"}, store, hb, m, nil)
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
		if err := store.Close(); err != nil {
			t.Error(err)
		}
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

func (b *testBox) class(t *testing.T) (db.Joined, db.Joined) {
	t.Helper()
	ctx := context.Background()
	host, err := b.store.CreateGroup(ctx, db.NewGroup{Domain: "room1", Name: "science", HostName: "teacher"})
	if err != nil {
		t.Fatal(err)
	}
	student, err := b.store.Join(ctx, host.Group.ID, db.NewNode{Name: "ada"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.store.SetData(ctx, host.Group.ID, student.Node.ID, map[string]string{"score": "7"}, false); err != nil {
		t.Fatal(err)
	}
	return host, student
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
	b := newTestBox(t, "")
	host, student := b.class(t)
	sub := b.hub.Subscribe(host.Group.ID, student.Node.ID, "sse")
	defer sub.Close()
	if _, err := b.store.Publish(context.Background(), host.Group.ID, host.Node.ID, []db.EventIn{{Name: "go"}, {Name: "stop"}}); err != nil {
		t.Fatal(err)
	}

	resp := b.do(t, http.MethodGet, "/api/v1/dashboard/overview", "")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var o Overview
	if err := json.NewDecoder(resp.Body).Decode(&o); err != nil {
		t.Fatal(err)
	}
	if o.Version != "v-test" || o.AdminEnabled || o.GroupsLive != 1 || o.NodesLive != 2 || len(o.JoinURLs) == 0 {
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

func TestAdminActions(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin"
	b := newTestBox(t, token)
	host, student := b.class(t)
	gid := host.Group.ID

	if resp := b.do(t, http.MethodGet, "/api/v1/admin/check", ""); resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" {
		t.Errorf("check without token: %d", resp.StatusCode)
	}
	if resp := b.do(t, http.MethodGet, "/api/v1/admin/check", token); resp.StatusCode != http.StatusNoContent {
		t.Errorf("check with token: %d", resp.StatusCode)
	}
	before := b.m.Totals().Rejected
	for _, tok := range []string{"", "wrong", token + "x"} {
		resp := b.do(t, http.MethodDelete, "/api/v1/admin/groups/"+gid+"/nodes/"+student.Node.ID, tok)
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		if resp.StatusCode != http.StatusUnauthorized || e.Error.Code != "unauthorized" {
			t.Errorf("remove with token %q: %d %q", tok, resp.StatusCode, e.Error.Code)
		}
	}
	if got := b.m.Totals().Rejected - before; got != 3 {
		t.Errorf("rejected counter moved by %d, want 3", got)
	}
	if _, err := b.store.Node(gid, student.Node.ID); err != nil {
		t.Fatalf("refused removal still removed the node: %v", err)
	}

	if resp := b.do(t, http.MethodDelete, "/api/v1/admin/groups/"+gid+"/nodes/"+student.Node.ID, token); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("remove with token: %d", resp.StatusCode)
	}
	if _, err := b.store.Node(gid, student.Node.ID); !errors.Is(err, db.ErrNodeNotFound) {
		t.Errorf("node after removal: %v", err)
	}
	if resp := b.do(t, http.MethodDelete, "/api/v1/admin/groups/"+gid+"/nodes/"+student.Node.ID, token); resp.StatusCode != http.StatusNotFound {
		t.Errorf("second removal: %d, want 404", resp.StatusCode)
	}
	if resp := b.do(t, http.MethodDelete, "/api/v1/admin/groups/"+gid, token); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("dissolve: %d", resp.StatusCode)
	}
	if _, err := b.store.Group(gid); err == nil {
		t.Error("group still live after dissolve")
	}
	if resp := b.do(t, http.MethodDelete, "/api/v1/admin/groups/nope", token); resp.StatusCode != http.StatusNotFound {
		t.Errorf("dissolve unknown group: %d, want 404", resp.StatusCode)
	}
}

func TestAdminDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "")
	host, _ := b.class(t)
	for _, tok := range []string{"", "anything"} {
		if resp := b.do(t, http.MethodDelete, "/api/v1/admin/groups/"+host.Group.ID, tok); resp.StatusCode != http.StatusForbidden {
			t.Errorf("dissolve with token %q on a read-only box: %d, want 403", tok, resp.StatusCode)
		}
	}
	if _, err := b.store.Group(host.Group.ID); err != nil {
		t.Errorf("group ended on a read-only box: %v", err)
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

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/api/v1/dashboard/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
	s := &sseReader{t: t, br: bufio.NewReader(resp.Body)}
	if ev, data := s.next(); ev != "hello" || !strings.Contains(data, `"adminEnabled":true`) {
		t.Fatalf("first event %s %s", ev, data)
	}
	ev, data := s.next()
	var o Overview
	if ev != "overview" || json.Unmarshal([]byte(data), &o) != nil || o.GroupsLive != 1 {
		t.Fatalf("second event %s %.200s", ev, data)
	}

	cursors, err := b.store.Publish(context.Background(), host.Group.ID, host.Node.ID, []db.EventIn{{Name: "beep"}})
	if err != nil {
		t.Fatal(err)
	}
	overviews := 0
	for {
		ev, data := s.next()
		if ev == "overview" {
			if overviews++; overviews > 5 {
				t.Fatal("no items event after five overviews")
			}
			continue
		}
		if ev != "items" {
			t.Fatalf("unexpected event %s", ev)
		}
		var msg struct {
			Items []struct {
				Group string
				Item  db.Item
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
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for b.h.hub.count() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("closed stream still subscribed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStreamLimit(t *testing.T) {
	t.Parallel()
	b := newTestBox(t, "")
	b.h.cfg.MaxStreams = 1
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.srv.URL+"/api/v1/dashboard/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp2 := b.do(t, http.MethodGet, "/api/v1/dashboard/stream", ""); resp2.StatusCode != http.StatusServiceUnavailable || resp2.Header.Get("Retry-After") == "" {
		t.Errorf("second dashboard: %d, want 503 with Retry-After", resp2.StatusCode)
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

func TestJoinURLs(t *testing.T) {
	t.Parallel()
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	req := func(host string, tlsOn bool) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Host = host
		if tlsOn {
			r.TLS = &tls.ConnectionState{}
		}
		return r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, net.Addr(local)))
	}
	got := joinURLs(req("192.168.5.9:8080", false), "", "")
	if got[0] != "http://192.168.5.9:8080/" {
		t.Errorf("LAN host first: %v", got)
	}
	got = joinURLs(req("class.example:443", true), "http://box.school/", "")
	if got[0] != "http://box.school/" || got[1] != "https://class.example:443/" {
		t.Errorf("public URL then request host: %v", got)
	}
	got = joinURLs(req("localhost:8080", false), "", "")
	for _, u := range got {
		if strings.Contains(u, "localhost") && len(lanAddrs()) > 0 {
			t.Errorf("loopback offered although LAN addresses exist: %v", got)
		}
		if !strings.HasSuffix(u, ":8080/") {
			t.Errorf("address without the listening port: %v", got)
		}
	}
	// The mDNS name is offered too, after the box's IPv4 addresses.
	got = joinURLs(req("localhost:8080", false), "", "meshbox.local")
	named := slices.Index(got, "http://meshbox.local:8080/")
	if named < 0 {
		t.Errorf("mDNS name not offered: %v", got)
	}
	for _, u := range got[named+1:] {
		if a, err := netip.ParseAddrPort(strings.TrimSuffix(strings.TrimPrefix(u, "http://"), "/")); err == nil && a.Addr().Is4() {
			t.Errorf("IPv4 address %s after the mDNS name: %v", u, got)
		}
	}
	for _, h := range []string{"localhost:1", "127.0.0.1:80", "[::1]:80", "app.localhost"} {
		if !isLoopbackHost(h) {
			t.Errorf("%s not seen as loopback", h)
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
