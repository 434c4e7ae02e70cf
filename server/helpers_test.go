package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"meshbox/app"
	"meshbox/config"
)

// client is a test's handle on a real meshbox.
type client struct {
	t    testing.TB
	base string
}

func newServer(t testing.TB, edit func(*config.Config)) (*app.App, *client) {
	t.Helper()
	a := app.StartTest(t, edit)
	return a, &client{t: t, base: a.URL()}
}

// call sends a JSON request and decodes the JSON answer into out (when not nil); it returns
// the status and the raw body.
func (c *client) call(method, path, token string, body any, out any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			c.t.Fatalf("%s %s: decode %s: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode, raw
}

type joined struct {
	Group struct {
		ID     string `json:"id"`
		Domain string `json:"domain"`
		Host   string `json:"host"`
	} `json:"group"`
	Node struct {
		ID string `json:"id"`
	} `json:"node"`
	Token  string `json:"token"`
	Cursor int64  `json:"cursor"`
}

type item struct {
	Cursor  int64             `json:"cursor"`
	Kind    string            `json:"kind"`
	Node    string            `json:"node"`
	Name    string            `json:"name"`
	Payload *string           `json:"payload"`
	Data    map[string]string `json:"data"`
	Reason  string            `json:"reason"`
	At      string            `json:"at"`
}

type page struct {
	Items     []item `json:"items"`
	Next      int64  `json:"next"`
	Truncated bool   `json:"truncated"`
	Gone      string `json:"gone"`
}

func (c *client) create(name string) joined {
	c.t.Helper()
	var j joined
	if st, raw := c.call("POST", "/api/v1/groups", "", map[string]any{"name": name}, &j); st != http.StatusCreated {
		c.t.Fatalf("create: %d %s", st, raw)
	}
	return j
}

func (c *client) join(gid, name string) joined {
	c.t.Helper()
	var j joined
	if st, raw := c.call("POST", "/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": name}, &j); st != http.StatusCreated {
		c.t.Fatalf("join: %d %s", st, raw)
	}
	return j
}

func (c *client) publish(j joined, names ...string) []int64 {
	c.t.Helper()
	evs := make([]map[string]any, len(names))
	for i, n := range names {
		evs[i] = map[string]any{"name": n, "payload": "p-" + n}
	}
	var out struct {
		Cursors []int64 `json:"cursors"`
	}
	if st, raw := c.call("POST", "/api/v1/groups/"+j.Group.ID+"/events", j.Token, map[string]any{"events": evs}, &out); st != http.StatusOK {
		c.t.Fatalf("publish: %d %s", st, raw)
	}
	return out.Cursors
}
