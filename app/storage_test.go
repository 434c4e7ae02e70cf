package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"meshbox/app"
)

// lockedBuffer collects the server's log lines from its goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// TestDiskPressure fills a database with a small size budget over HTTP: publishes get 507
// storage_full with Retry-After, reads continue, the purge makes room by deleting the oldest
// items and writes resume without a restart, every acknowledged item the purge kept is intact,
// the full state is logged per change rather than per request, and shutdown is clean.
func TestDiskPressure(t *testing.T) {
	cfg := app.TestConfig(t.TempDir())
	cfg.MaxDBSize = 1 << 20
	cfg.NodeByteRate, cfg.PublishRate = 0, 0 // the test fills the budget from one node
	cfg.PurgeInterval = time.Hour            // only a refused write wakes the purge
	logs := &lockedBuffer{}
	a, err := app.Start(context.Background(), cfg, slog.New(slog.NewTextHandler(logs, nil)), "test")
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			a.Shutdown(context.Background())
		}
	})
	base := a.URL()
	resp, err := http.Post(base+"/api/v1/groups", "application/json", strings.NewReader(`{"name":"g"}`))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Group struct{ ID string }
		Token string
	}
	json.NewDecoder(resp.Body).Decode(&j)
	resp.Body.Close()
	group := base + "/api/v1/groups/" + j.Group.ID
	payload := strings.Repeat("p", 8000)
	body := fmt.Sprintf(`{"events":[{"name":"e","payload":%q},{"name":"e","payload":%q}]}`, payload, payload)
	// The purge, woken past the high-water mark, usually keeps up with one publisher: a
	// publish larger than the whole budget is what is sure to be refused.
	huge := `{"events":[` + strings.Repeat(fmt.Sprintf(`{"name":"e","payload":%q},`, payload), 90) + fmt.Sprintf(`{"name":"e","payload":%q}]}`, payload)
	publishBody := func(body string) (*http.Response, []int64) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, group+"/events", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+j.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct {
			Cursors []int64
			Error   struct{ Code string }
		}
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != http.StatusOK && out.Error.Code != "storage_full" {
			t.Fatalf("publish: %d %s", resp.StatusCode, out.Error.Code)
		}
		return resp, out.Cursors
	}
	publish := func() (*http.Response, []int64) { t.Helper(); return publishBody(body) }

	var acked []int64
	refused := 0
	for i := 0; refused == 0; i++ {
		next := body
		if i >= 100 { // 1.6 MB sent into a 1 MiB budget
			next = huge
		}
		if i > 1000 {
			t.Fatal("1 MiB budget never filled")
		}
		resp, cursors := publishBody(next)
		if resp.StatusCode == http.StatusOK {
			acked = append(acked, cursors...)
			continue
		}
		refused++
		if resp.StatusCode != http.StatusInsufficientStorage || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("refused publish: %d, Retry-After %q; want 507 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	// Reads continue.
	resp, err = http.Get(group + fmt.Sprintf("/events?since=%d&limit=10&token=%s", acked[len(acked)-1]-1, j.Token))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("read on a full database: %v %v", resp.StatusCode, err)
	}
	resp.Body.Close()
	// The refused write woke the purge: writes resume without a restart.
	waitFor(t, "publishes to resume", func() bool {
		resp, cursors := publish()
		if resp.StatusCode == http.StatusOK {
			acked = append(acked, cursors...)
			return true
		}
		refused++
		return false
	})
	if resp, err := http.Get(base + "/readyz"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("readyz after recovery: %v %v", resp.StatusCode, err)
	}
	// Every acknowledged item after the purge mark is there, in order, with its payload.
	var got []int64
	since, truncated := int64(0), false
	for since < acked[len(acked)-1] {
		resp, err := http.Get(group + fmt.Sprintf("/events?since=%d&limit=100&token=%s", since, j.Token))
		if err != nil {
			t.Fatal(err)
		}
		var page struct {
			Items []struct {
				Cursor  int64
				Payload string
			}
			Next      int64
			Truncated bool
		}
		json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		truncated = truncated || page.Truncated
		for _, it := range page.Items {
			if it.Payload == payload {
				got = append(got, it.Cursor)
			}
		}
		if page.Next <= since {
			break
		}
		since = page.Next
	}
	if !truncated || len(got) == 0 {
		t.Fatalf("reader from the start: truncated %v, %d items; want truncated and the newest items", truncated, len(got))
	}
	var want []int64
	for _, c := range acked {
		if c >= got[0] {
			want = append(want, c)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("retained items %v, want the acknowledged %v", got, want)
	}
	if n := logs.count("request failed"); n > 0 {
		t.Errorf("%d refused requests logged as failures", n)
	}
	if full, room := logs.count("storage full: writes are refused"), logs.count("storage has room again"); full < 1 || full > room+1 || full > refused {
		t.Errorf("logged full %d times and room %d times for %d refused writes; want once per change", full, room, refused)
	}
	stopped = true
	if err := a.Shutdown(context.Background()); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if t.Failed() || testing.Verbose() {
		logs.mu.Lock()
		t.Logf("server log:\n%s", logs.b.String())
		logs.mu.Unlock()
	}
}
