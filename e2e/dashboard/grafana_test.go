package dashboard_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// grafanaTarget is one query of the Grafana dashboard.
type grafanaTarget struct {
	panel, expr string
}

// grafanaTargets reads docs/grafana-dashboard.json and returns every panel's queries (rows'
// nested panels included), checking that each names the dashboard's data source variable.
func grafanaTargets(t *testing.T) []grafanaTarget {
	t.Helper()
	raw, err := os.ReadFile("../../docs/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Title      string `json:"title"`
		Type       string `json:"type"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels []json.RawMessage `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("docs/grafana-dashboard.json: %v", err)
	}
	var out []grafanaTarget
	var walk func([]json.RawMessage)
	walk = func(list []json.RawMessage) {
		for _, r := range list {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("panel %s: %v", r, err)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.Type != "prometheus" || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q does not use the dashboard's Prometheus data source variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				if strings.TrimSpace(tg.Expr) == "" {
					t.Errorf("panel %q query %s has no expression", p.Title, tg.RefID)
				}
				out = append(out, grafanaTarget{panel: p.Title, expr: tg.Expr})
			}
		}
	}
	walk(dash.Panels)
	return out
}

// rateInterval stands in for Grafana's $__rate_interval: Grafana makes it at least four scrape
// intervals (the data source's "scrape interval" setting), so that a rate always spans
// several samples. startPrometheus scrapes every 500 ms.
const rateInterval = "2s"

// grafanaVars replaces the dashboard's variables as Grafana would before it sends a query:
// $instance with "All" (its allValue, .*) and $__rate_interval with rateInterval.
var grafanaVars = strings.NewReplacer("$__rate_interval", rateInterval, "$instance", ".*")

// TestGrafanaDashboardQueriesWork runs every PromQL expression of docs/grafana-dashboard.json
// against a real Prometheus that scraped a real meshbox after traffic on every path the
// dashboard charts (streams, publishes, deliveries, a refused request, commits, purges): each
// must parse and return at least one series.
func TestGrafanaDashboardQueriesWork(t *testing.T) {
	t.Parallel()
	targets := grafanaTargets(t)
	if len(targets) < 20 {
		t.Fatalf("only %d queries in docs/grafana-dashboard.json", len(targets))
	}
	b := startBox(t, "--purge-interval", "500ms")
	prom := startPrometheus(t, b.base)
	prom.eventually(`up{job="meshbox"}`, func(v float64) bool { return v == 1 }, "meshbox is scraped")

	host := b.createGroup("grafana", "physics", "teacher")
	s := b.openSSE(b.join(host.Group.ID, "ada"))
	for i := range 5 {
		b.publish(host, fmt.Sprintf("e%d", i))
	}
	s.await("event", 5)
	b.setData(host, map[string]string{"step": "2"})
	_, _ = b.try(http.MethodPost, "/api/v1/groups/"+host.Group.ID+"/events", "bad-token", map[string]any{"events": []map[string]string{{"name": "x"}}})
	// Prometheus has scraped the traffic once its counters show it, and a purge pass has run.
	prom.eventually(`meshbox_items_appended_total{job="meshbox",kind="event"}`, func(v float64) bool { return v == 5 }, "events appended")
	prom.eventually(`meshbox_purge_last_run_timestamp_seconds{job="meshbox"}`, func(v float64) bool { return v > 0 }, "a purge pass")
	prom.eventually(`sum(meshbox_rejected_requests_total{job="meshbox"})`, func(v float64) bool { return v >= 1 }, "a refused request")

	for _, tg := range targets {
		q := grafanaVars.Replace(tg.expr)
		if strings.Contains(q, "$") {
			t.Errorf("panel %q: %s uses a variable the test does not stand in for", tg.panel, tg.expr)
			continue
		}
		n, err := prom.series(q)
		for deadline := time.Now().Add(20 * time.Second); err == nil && n == 0 && time.Now().Before(deadline); {
			time.Sleep(250 * time.Millisecond) // the next scrape
			n, err = prom.series(q)
		}
		switch {
		case err != nil:
			t.Errorf("panel %q: %s: %v", tg.panel, q, err)
		case n == 0:
			t.Errorf("panel %q: %s returned nothing after traffic", tg.panel, q)
		}
	}
}

// series runs an instant query and returns how many series it gave, or Prometheus's error
// (a query that does not parse, or cannot be evaluated).
func (p *promServer) series(q string) (int, error) {
	p.t.Helper()
	result, err := p.instant(q)
	return len(result), err
}
