package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// freePort asks the kernel for an unused loopback port for a child process to listen on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a child process's output; tests read it while the process writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// promServer is a real Prometheus scraping one meshbox every 500 ms.
type promServer struct {
	t    *testing.T
	base string
	logs *syncBuffer
}

func startPrometheus(t *testing.T, target string) *promServer {
	t.Helper()
	bin := requireTool(t, "apt-get install -y prometheus", "prometheus")
	dir := t.TempDir()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 500ms
  scrape_timeout: 400ms
scrape_configs:
  - job_name: meshbox
    metrics_path: /metrics
    static_configs:
      - targets: [%q]
`, u.Host)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn",
	)
	logs := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start prometheus: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})
	p := &promServer{t: t, base: "http://" + addr, logs: logs}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s: %v\n%s", addr, err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// instant runs an instant query and returns its samples, or Prometheus's error (a query that
// does not parse, cannot be evaluated, or is not an instant vector).
func (p *promServer) instant(q string) ([]struct {
	Value [2]any `json:"value"`
}, error) {
	p.t.Helper()
	resp, err := http.Get(p.base + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("answer %s: %w", raw, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result is a %s, not an instant vector", r.Data.ResultType)
	}
	return r.Data.Result, nil
}

// query runs an instant query and returns the single value, or false when the result is empty.
func (p *promServer) query(q string) (float64, bool) {
	p.t.Helper()
	result, err := p.instant(q)
	if err != nil {
		p.t.Fatalf("query %s: %v", q, err)
	}
	if len(result) == 0 {
		return 0, false
	}
	s, _ := result[0].Value[1].(string)
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		p.t.Fatalf("query %s: value %q", q, s)
	}
	return v, true
}

// eventually waits until the query's value satisfies ok.
func (p *promServer) eventually(q string, ok func(float64) bool, what string) {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last float64
	var found bool
	for time.Now().Before(deadline) {
		if last, found = p.query(q); found && ok(last) {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	p.t.Errorf("%s: %s = %v (present %v)", what, q, last, found)
}

// TestPrometheusScrapesMeshbox runs a real Prometheus against a running meshbox and reads the
// connection and item counters back through Prometheus's query API after traffic.
func TestPrometheusScrapesMeshbox(t *testing.T) {
	t.Parallel()
	b := startBox(t)
	prom := startPrometheus(t, b.base)

	prom.eventually(`up{job="meshbox"}`, func(v float64) bool { return v == 1 }, "meshbox is scraped")

	host := b.createGroup("prom", "chemistry", "teacher")
	s1 := b.openSSE(b.join(host.Group.ID, "ada"))
	s2 := b.openSSE(b.join(host.Group.ID, "bob"))
	for i := range 6 {
		b.publish(host, fmt.Sprintf("e%d", i), fmt.Sprintf("f%d", i))
	}
	s1.await("event", 12)
	s2.await("event", 12)
	_, _ = b.try(http.MethodPost, "/api/v1/groups/"+host.Group.ID+"/events", "bad-token", map[string]any{"events": []map[string]string{{"name": "x"}}})

	prom.eventually(`meshbox_items_appended_total{job="meshbox",kind="event"}`, func(v float64) bool { return v == 12 }, "events appended")
	prom.eventually(`meshbox_connections_open{job="meshbox",transport="sse"}`, func(v float64) bool { return v == 2 }, "open SSE connections")
	prom.eventually(`meshbox_connections_accepted_total{job="meshbox",transport="sse"}`, func(v float64) bool { return v == 2 }, "accepted SSE connections")
	prom.eventually(`meshbox_items_delivered_total{job="meshbox",transport="sse"}`, func(v float64) bool { return v >= 24 }, "items delivered")
	prom.eventually(`sum(meshbox_rejected_requests_total{job="meshbox"})`, func(v float64) bool { return v >= 1 }, "rejected requests")
	prom.eventually(`meshbox_groups_live{job="meshbox"}`, func(v float64) bool { return v == 1 }, "live groups")
	prom.eventually(`histogram_quantile(0.99, sum by (le) (meshbox_delivery_latency_seconds_bucket{job="meshbox"}))`,
		func(v float64) bool { return v > 0 && v < 5 }, "p99 delivery latency")
	prom.eventually(`count(meshbox_build_info{job="meshbox",version="v0.0.0-e2e"})`, func(v float64) bool { return v == 1 }, "build info")
	if strings.Contains(prom.logs.String(), "level=error") {
		t.Errorf("prometheus logged errors:\n%s", prom.logs.String())
	}
}
