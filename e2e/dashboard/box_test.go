package dashboard_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireTool finds an external program. Missing, it skips the test, or fails it under
// MESHBOX_E2E=1 so a CI run cannot pass by silently testing nothing.
func requireTool(t *testing.T, hint string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	if os.Getenv("MESHBOX_E2E") == "1" {
		t.Fatalf("MESHBOX_E2E=1 but %s is not installed (%s)", names[0], hint)
	}
	t.Skipf("%s not installed (%s); set MESHBOX_E2E=1 to make this a failure", names[0], hint)
	return ""
}

// client talks to a meshbox's native API as a test participant.
type client struct {
	t    *testing.T
	base string
}

func (c *client) call(method, path, token string, body any, want int, out any) {
	c.t.Helper()
	status, raw := c.try(method, path, token, body)
	if status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, raw)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
}

func (c *client) try(method, path, token string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		enc, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(enc)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// member is a node of a group as the API returned it.
type member struct {
	Group struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"group"`
	Node struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"node"`
	Token  string `json:"token"`
	Cursor int64  `json:"cursor"`
}

func (c *client) createGroup(domain, name, host string) member {
	c.t.Helper()
	var m member
	c.call(http.MethodPost, "/api/v1/groups", "", map[string]any{"domain": domain, "name": name, "nodeName": host}, http.StatusCreated, &m)
	return m
}

func (c *client) join(gid, name string) member {
	c.t.Helper()
	var m member
	c.call(http.MethodPost, "/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": name}, http.StatusCreated, &m)
	return m
}

func (c *client) publish(m member, names ...string) {
	c.t.Helper()
	evs := make([]map[string]string, len(names))
	for i, n := range names {
		evs[i] = map[string]string{"name": n, "payload": "p-" + n}
	}
	c.call(http.MethodPost, "/api/v1/groups/"+m.Group.ID+"/events", m.Token, map[string]any{"events": evs}, http.StatusOK, nil)
}

func (c *client) setData(m member, data map[string]string) {
	c.t.Helper()
	c.call(http.MethodPut, "/api/v1/groups/"+m.Group.ID+"/data", m.Token, map[string]any{"data": data}, http.StatusOK, nil)
}

// sseStream is an open native SSE stream of one member.
type sseStream struct {
	t      *testing.T
	cancel context.CancelFunc
	items  chan string // event kinds as they arrive
}

// openSSE subscribes m to its group's stream and records the kinds of the items it receives.
func (c *client) openSSE(m member) *sseStream {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	url := fmt.Sprintf("%s/api/v1/groups/%s/stream?since=%d&token=%s", c.base, m.Group.ID, m.Cursor, m.Token)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		c.t.Fatalf("open SSE: status %d", resp.StatusCode)
	}
	s := &sseStream{t: c.t, cancel: cancel, items: make(chan string, 1024)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				select {
				case s.items <- ev:
				default:
				}
			}
		}
	}()
	c.t.Cleanup(cancel)
	return s
}

// await waits for n items of kind.
func (s *sseStream) await(kind string, n int) {
	s.t.Helper()
	deadline := time.After(15 * time.Second)
	for got := 0; got < n; {
		select {
		case k := <-s.items:
			if k == kind {
				got++
			}
		case <-deadline:
			s.t.Fatalf("SSE: timed out waiting for %d %q items", n, kind)
		}
	}
}

// scrape fetches /metrics in the text format.
func (c *client) scrape() string {
	c.t.Helper()
	resp, err := http.Get(c.base + "/metrics")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		c.t.Fatalf("/metrics: status %d: %.200s", resp.StatusCode, raw)
	}
	return string(raw)
}

// screenshotDir is where browser tests put their screenshots; the directory is git-ignored.
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs("screenshots")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// publishPayload publishes one event with a payload.
func (c *client) publishPayload(m member, name, payload string) {
	c.t.Helper()
	c.call(http.MethodPost, "/api/v1/groups/"+m.Group.ID+"/events", m.Token, map[string]any{"events": []map[string]string{{"name": name, "payload": payload}}}, http.StatusOK, nil)
}

// get reads path (with token, when not empty) and returns the body of a 200 answer.
func (c *client) get(path, token string) string {
	c.t.Helper()
	st, raw := c.try(http.MethodGet, path, token, nil)
	if st != http.StatusOK {
		c.t.Fatalf("GET %s: %d %s", path, st, raw)
	}
	return string(raw)
}
