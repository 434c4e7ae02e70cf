package metrics

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func fixedStats() StatsFunc {
	return func(context.Context) (Stats, error) {
		return Stats{
			GroupsLive: 3, NodesLive: 17, RetainedItems: 1234,
			OldestRetainedAge: 90 * time.Second, DatabaseBytes: 4096, WALBytes: 8192,
			WriterQueueDepth: 2,
		}, nil
	}
}

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape status %d", rec.Code)
	}
	return rec.Body.String()
}

func TestCountersMove(t *testing.T) {
	t.Parallel()
	m := NewBuild(Build{Version: "v1.2.3", Commit: "0a1b2c3"}, nil)

	m.ConnOpened("ws")
	m.ConnOpened("ws")
	m.ConnOpened("sse")
	m.ConnClosed("ws")
	if got := testutil.ToFloat64(m.connOpen.WithLabelValues("ws")); got != 1 {
		t.Errorf("ws open = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.connAccepted.WithLabelValues("ws")); got != 2 {
		t.Errorf("ws accepted = %v, want 2", got)
	}

	m.ObserveAppended("event", 5)
	m.ObserveAppended("data", 2)
	m.ObserveAppended("event", 0) // no-op
	if got := testutil.ToFloat64(m.appended.WithLabelValues("event")); got != 5 {
		t.Errorf("appended event = %v, want 5", got)
	}

	m.ObservePublish("ok")
	m.ObservePublish("ok")
	m.ObservePublish("rejected")
	if got := testutil.ToFloat64(m.publishes.WithLabelValues("ok")); got != 2 {
		t.Errorf("publish ok = %v, want 2", got)
	}

	m.ObserveRejected("too_large")
	m.ObserveRejected("rate_limited")
	m.ObserveRejected("rate_limited")
	if got := testutil.ToFloat64(m.rejected.WithLabelValues("rate_limited")); got != 2 {
		t.Errorf("rejected rate_limited = %v, want 2", got)
	}

	m.ObserveDelivered("sse", 4, time.Now().Add(-20*time.Millisecond))
	m.ObserveDelivered("sse", 1, time.Now())
	m.ObserveDelivered("custom", 2, time.Now()) // a transport not pre-declared still counts
	if got := testutil.ToFloat64(m.delivered.WithLabelValues("sse")); got != 5 {
		t.Errorf("delivered sse = %v, want 5", got)
	}
	if got := testutil.ToFloat64(m.writes.WithLabelValues("sse")); got != 2 {
		t.Errorf("writes sse = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.delivered.WithLabelValues("custom")); got != 2 {
		t.Errorf("delivered custom = %v, want 2", got)
	}

	m.ObserveCommit(3, 40, 2*time.Millisecond)
	m.ObservePurge(100, 2, 7, 5*time.Millisecond)
	if got := testutil.ToFloat64(m.purgeItems); got != 100 {
		t.Errorf("purged items = %v, want 100", got)
	}

	out := scrape(t, m)
	for _, want := range []string{
		`meshbox_build_info{commit="0a1b2c3",goversion="go`,
		`version="v1.2.3"} 1`,
		`meshbox_delivery_latency_seconds_count{transport="sse"} 2`,
		`meshbox_commit_batch_ops_count 1`,
		`meshbox_commit_batch_items_sum 40`,
		`meshbox_commit_duration_seconds_count 1`,
		`meshbox_purge_duration_seconds_count 1`,
		`meshbox_purged_nodes_total 7`,
		`meshbox_connections_open{transport="graphql_ws"} 0`,
		`meshbox_rejected_requests_total{reason="unauthorized"} 0`,
		`go_goroutines`,
		`process_`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("exposition lacks %q", want)
		}
	}
	// The sse write 20 ms after commit must land above the 10 ms bucket.
	if !strings.Contains(out, `meshbox_delivery_latency_seconds_bucket{transport="sse",le="0.01"} 1`) {
		t.Errorf("latency histogram did not separate the slow write:\n%s", grep(out, "delivery_latency_seconds_bucket{transport=\"sse\""))
	}

	tot := m.Totals()
	if tot.Connections["ws"] != 1 || tot.Connections["sse"] != 1 || tot.Connections["longpoll"] != 0 {
		t.Errorf("totals connections = %v", tot.Connections)
	}
	if tot.Accepted != 3 || tot.Delivered != 7 || tot.Rejected != 3 || tot.Appended["event"] != 5 {
		t.Errorf("totals = %+v", tot)
	}
	if tot.PurgeRuns != 1 || tot.PurgedItems != 100 || tot.PurgedGroups != 2 || tot.LastPurgeAt.IsZero() || tot.LastPurgeTook != 5*time.Millisecond {
		t.Errorf("purge totals = %+v", tot)
	}
}

func grep(s, sub string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func TestStatsGauges(t *testing.T) {
	t.Parallel()
	m := New("dev", fixedStats())
	want := `
# HELP meshbox_nodes_live Nodes in groups that have not ended.
# TYPE meshbox_nodes_live gauge
meshbox_nodes_live 17
# HELP meshbox_oldest_retained_item_age_seconds Age of the oldest retained stream item; 0 when none is retained.
# TYPE meshbox_oldest_retained_item_age_seconds gauge
meshbox_oldest_retained_item_age_seconds 90
# HELP meshbox_database_wal_size_bytes Size of the SQLite write-ahead log file.
# TYPE meshbox_database_wal_size_bytes gauge
meshbox_database_wal_size_bytes 8192
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want),
		"meshbox_nodes_live", "meshbox_oldest_retained_item_age_seconds", "meshbox_database_wal_size_bytes"); err != nil {
		t.Fatal(err)
	}
}

func TestRegisterStatsLater(t *testing.T) {
	t.Parallel()
	m := New("dev", nil)
	if strings.Contains(scrape(t, m), "meshbox_groups_live") {
		t.Fatal("stats gauges present without a source")
	}
	if err := m.RegisterStats(fixedStats()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(scrape(t, m), "meshbox_groups_live 3") {
		t.Error("stats gauges missing after RegisterStats")
	}
	if err := m.RegisterStats(fixedStats()); err == nil {
		t.Error("a second stats source was accepted; its gauges would collide")
	}
}

func TestStatsErrorDropsGauges(t *testing.T) {
	t.Parallel()
	m := New("dev", StatsFunc(func(context.Context) (Stats, error) { return Stats{}, errors.New("database is closed") }))
	out := scrape(t, m)
	if strings.Contains(out, "meshbox_groups_live") {
		t.Error("gauges emitted although the source failed")
	}
	if !strings.Contains(out, "meshbox_stats_errors_total 1") {
		t.Errorf("stats error not counted:\n%s", grep(out, "stats_errors"))
	}
}

func TestInstrumentHTTPRoutePattern(t *testing.T) {
	t.Parallel()
	m := New("dev", nil)
	r := chi.NewRouter()
	r.Use(m.InstrumentHTTP)
	r.Get("/api/v1/groups/{gid}", func(w http.ResponseWriter, r *http.Request) {
		if chi.URLParam(r, "gid") == "missing" {
			http.Error(w, "no", http.StatusNotFound)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	for _, p := range []string{"/api/v1/groups/a", "/api/v1/groups/b", "/api/v1/groups/missing", "/nope/123"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("/api/v1/groups/{gid}", "GET", "200")); got != 2 {
		t.Errorf("200s on pattern = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues("/api/v1/groups/{gid}", "GET", "404")); got != 1 {
		t.Errorf("404s on pattern = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.httpRequests.WithLabelValues(unmatchedRoute, "GET", "404")); got != 1 {
		t.Errorf("unmatched 404s = %v, want 1", got)
	}
	out := scrape(t, m)
	if strings.Contains(out, `/api/v1/groups/a"`) || strings.Contains(out, "/nope/123") {
		t.Error("raw path leaked into labels")
	}
	if !strings.Contains(out, `meshbox_http_request_duration_seconds_count{method="GET",route="/api/v1/groups/{gid}"} 3`) {
		t.Errorf("duration histogram:\n%s", grep(out, "http_request_duration_seconds_count"))
	}
}

// TestInstrumentHTTPKeepsStreaming checks that SSE-style flushing and a hijack (what a
// WebSocket upgrade does) still work through the wrapper.
func TestInstrumentHTTPKeepsStreaming(t *testing.T) {
	t.Parallel()
	m := New("dev", nil)
	r := chi.NewRouter()
	r.Use(m.InstrumentHTTP)
	flushed := make(chan struct{})
	r.Get("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, ": hello\n\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush via controller: %v", err)
		}
		if _, ok := w.(http.Flusher); !ok {
			t.Error("wrapper is not an http.Flusher")
		}
		<-flushed // hold the response open: the client must have read the comment already
	})
	r.Get("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		hj, ok := w.(http.Hijacker)
		if !ok {
			t.Error("wrapper is not an http.Hijacker")
			return
		}
		c, brw, err := hj.Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\nhi")
		_ = brw.Flush()
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	resp, err := http.Get(srv.URL + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	close(flushed)
	_ = resp.Body.Close()
	if err != nil || line != ": hello\n" {
		t.Fatalf("streamed line = %q, %v", line, err)
	}

	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = io.WriteString(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\n\r\n")
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(conn)
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 101")) || !bytes.HasSuffix(got, []byte("hi")) {
		t.Fatalf("hijacked response = %q", got)
	}
	// The deferred metric is recorded after the handler returns; wait for it briefly.
	deadline := time.Now().Add(2 * time.Second)
	for testutil.ToFloat64(m.httpRequests.WithLabelValues("/upgrade", "GET", "101")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("hijacked request not counted with status 101")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPromtoolCheck runs Debian's promtool over a populated exposition. It is the linter
// Prometheus itself applies (naming, units, help text, counter suffixes).
func TestPromtoolCheck(t *testing.T) {
	t.Parallel()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("MESHBOX_E2E") == "1" {
			t.Fatal("promtool not found (apt-get install prometheus)")
		}
		t.Skip("promtool not installed; set MESHBOX_E2E=1 to require it")
	}
	m := New("v0.0.0-test", fixedStats())
	m.ConnOpened("ws")
	m.ObserveAppended("event", 3)
	m.ObserveDelivered("ws", 3, time.Now())
	m.ObserveCommit(1, 3, time.Millisecond)
	m.ObservePurge(1, 1, 1, time.Millisecond)
	m.ObserveRejected("too_large")
	m.ObservePublish("ok")
	r := chi.NewRouter()
	r.Use(m.InstrumentHTTP)
	r.Get("/x/{id}", func(http.ResponseWriter, *http.Request) {})
	r.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/x/1", nil))

	out := CheckWithPromtool(t, promtool, []byte(scrape(t, m)))
	if out != "" {
		t.Fatalf("promtool check metrics:\n%s", out)
	}
}

// CheckWithPromtool pipes an exposition into `promtool check metrics` and returns its
// complaints, empty when clean.
func CheckWithPromtool(t *testing.T, promtool string, exposition []byte) string {
	t.Helper()
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(exposition)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out) + err.Error()
	}
	return strings.TrimSpace(string(out))
}
