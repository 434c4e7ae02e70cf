package dashboard_test

import (
	"bytes"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sample returns the value of one series (name plus labels in exposition order) or 0 when the
// series is absent, which is what a counter that never moved would read.
func sample(expo, series string) float64 {
	for _, line := range strings.Split(expo, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return 0
			}
			v, err := strconv.ParseFloat(f[0], 64)
			if err != nil {
				return 0
			}
			return v
		}
	}
	return 0
}

// TestMetricsMoveWithTraffic drives traffic through a real meshbox and checks that each
// counter and histogram moves by what that traffic should cause, including refusals and the
// purge, then lints the live exposition with promtool.
func TestMetricsMoveWithTraffic(t *testing.T) {
	t.Parallel()
	b := startBox(t, "--event-ttl", "1s", "--purge-interval", "200ms", "--max-payload", "1024")
	before := b.scrape()

	host := b.createGroup("metrics", "physics", "teacher")
	student := b.join(host.Group.ID, "ada")
	stream := b.openSSE(student)
	b.publish(host, "a", "b", "c", "d", "e")
	b.publish(host, "f", "g", "h")
	stream.await("event", 8)

	// Refusals: a wrong token, an oversized payload, malformed JSON.
	if st, _ := b.try(http.MethodPost, "/api/v1/groups/"+host.Group.ID+"/events", "not-a-token", map[string]any{"events": []map[string]string{{"name": "x"}}}); st != http.StatusUnauthorized {
		t.Errorf("wrong token: status %d, want 401", st)
	}
	big := map[string]any{"events": []map[string]string{{"name": "x", "payload": strings.Repeat("z", 2048)}}}
	if st, _ := b.try(http.MethodPost, "/api/v1/groups/"+host.Group.ID+"/events", host.Token, big); st != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized payload: status %d, want 413", st)
	}
	if st, _ := b.try(http.MethodPost, "/api/v1/groups", "", []byte(`{"name":`)); st != http.StatusBadRequest {
		t.Errorf("malformed JSON: status %d, want 400", st)
	}

	// Wait for the purge to remove the items (TTL 1 s, pass every 200 ms).
	var after string
	deadline := time.Now().Add(15 * time.Second)
	for {
		after = b.scrape()
		if sample(after, "meshbox_purged_items_total") >= 8 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("items were not purged: purged_items_total = %v", sample(after, "meshbox_purged_items_total"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	delta := func(series string) float64 { return sample(after, series) - sample(before, series) }
	atLeast := func(series string, want float64) {
		t.Helper()
		if got := delta(series); got < want {
			t.Errorf("%s moved by %v, want at least %v", series, got, want)
		}
	}
	exactly := func(series string, want float64) {
		t.Helper()
		if got := delta(series); got != want {
			t.Errorf("%s moved by %v, want %v", series, got, want)
		}
	}
	exactly(`meshbox_items_appended_total{kind="event"}`, 8)
	exactly(`meshbox_items_appended_total{kind="join"}`, 2)
	exactly(`meshbox_publish_requests_total{outcome="ok"}`, 2)
	atLeast(`meshbox_items_delivered_total{transport="sse"}`, 8)
	atLeast(`meshbox_delivery_writes_total{transport="sse"}`, 1)
	atLeast(`meshbox_delivery_latency_seconds_count{transport="sse"}`, 1)
	exactly(`meshbox_connections_accepted_total{transport="sse"}`, 1)
	atLeast(`meshbox_rejected_requests_total{reason="unauthorized"}`, 1)
	atLeast(`meshbox_rejected_requests_total{reason="too_large"}`, 1)
	atLeast(`meshbox_rejected_requests_total{reason="bad_request"}`, 1)
	atLeast(`meshbox_commit_batch_ops_count`, 4)
	atLeast(`meshbox_commit_batch_items_sum`, 10)
	atLeast(`meshbox_commit_duration_seconds_count`, 4)
	atLeast(`meshbox_purge_duration_seconds_count`, 1)
	atLeast(`meshbox_purged_items_total`, 8)
	exactly(`meshbox_http_requests_total{code="200",method="POST",route="/api/v1/groups/{gid}/events"}`, 2)
	exactly(`meshbox_http_requests_total{code="201",method="POST",route="/api/v1/groups"}`, 1)
	atLeast(`meshbox_http_request_duration_seconds_count{method="POST",route="/api/v1/groups/{gid}/events"}`, 4)
	if sample(after, `meshbox_connections_open{transport="sse"}`) != 1 {
		t.Errorf("connections_open{sse} = %v, want 1", sample(after, `meshbox_connections_open{transport="sse"}`))
	}
	if sample(after, "meshbox_groups_live") != 1 || sample(after, "meshbox_nodes_live") != 2 {
		t.Errorf("groups/nodes live = %v/%v, want 1/2", sample(after, "meshbox_groups_live"), sample(after, "meshbox_nodes_live"))
	}
	if sample(after, "meshbox_database_size_bytes") <= 0 {
		t.Error("database_size_bytes is not positive")
	}
	// Labels are exposed in name order: commit, goversion, version.
	if !strings.Contains(after, `meshbox_build_info{commit="`) || !strings.Contains(after, `goversion="go`) || !strings.Contains(after, `go_goroutines`) || !strings.Contains(after, `go_sql_open_connections{db_name="writer"}`) {
		t.Error("build info, Go collector or DB stats missing")
	}
	if strings.Contains(after, host.Group.ID) {
		t.Error("a group id leaked into metric labels")
	}

	promtool := requireTool(t, "apt-get install -y prometheus", "promtool")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader([]byte(after))
	if out, err := cmd.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("promtool check metrics on /metrics: %v\n%s", err, out)
	}
}
