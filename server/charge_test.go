package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
	"meshbox/testclock"
)

// callFromRetry is client.call from another address; the answer is prefixed with its Retry-After.
func callFromRetry(t *testing.T, hc *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Retry-After") + " " + string(raw)
}

// wsReply is an answer to a message on the native WebSocket.
type wsReply struct {
	Type  string          `json:"type"`
	ID    json.RawMessage `json:"id"`
	Error *struct {
		Code       string `json:"code"`
		RetryAfter int    `json:"retryAfter"`
	} `json:"error"`
}

// nextReply reads the socket up to the next ack or error, skipping pushed items.
func nextReply(t *testing.T, ws *websocket.Conn) wsReply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("read the WebSocket: %v", err)
		}
		var r wsReply
		if err := json.Unmarshal(data, &r); err != nil {
			t.Fatalf("decode %s: %v", data, err)
		}
		if r.Type == "ack" || r.Type == "error" {
			return r
		}
	}
}

// TestWebSocketMessagesPayTheNodeRate (issue 22 row 9, native WebSocket): a pupil's node
// floods its open WebSocket (from its own laptop, 127.0.0.2) with heartbeat, publish and data
// messages. Each message costs the node one request of --node-rate, as the HTTP request it
// stands for does, so with a budget of 1/s (burst 2) all but one are refused, each with the
// 429 the HTTP request gets (rate_limited, a retryAfter), on a socket that stays open. The
// refused messages cost the group nothing: a classmate (127.0.0.3) publishes within the
// group's small budget throughout, and the flooder's own HTTP requests are refused too (one
// budget, whichever way the request comes). The clock is frozen, so nothing refills while a
// slow machine runs the test; it moves once at the end, and the socket serves again.
// Before messages were charged, all 200 were acknowledged.
func TestWebSocketMessagesPayTheNodeRate(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	a := app.StartTestWith(t, func(cfg *config.Config) {
		cfg.NodeRate = 1   // burst 2
		cfg.GroupRate = 10 // burst 20: the flood's 200 messages would spend it ten times over
		cfg.PublishRate, cfg.IPRate = 0, 0
	}, app.Options{Now: clock.Now})
	c := &client{t: t, base: a.URL()}
	host := c.create("class")
	pupil := c.join(host.Group.ID, "pupil")
	classmate := c.join(host.Group.ID, "classmate")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// The upgrade is the node's first request of its burst of two.
	u := groupURL(wsBase(a.URL()), host.Group.ID, "/ws?token="+pupil.Token)
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: httpFrom("127.0.0.2")})
	if err != nil {
		t.Fatalf("dial the WebSocket from 127.0.0.2: %v", err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1)
	other := httpFrom("127.0.0.3")
	events := groupURL(a.URL(), host.Group.ID, "/events")

	kinds := []string{
		`{"type":"heartbeat","id":%d}`,
		`{"type":"publish","id":%d,"events":[{"name":"spam"}]}`,
		`{"type":"data","id":%d,"data":{"k":"v"}}`,
	}
	const flood = 200
	acked, refused := map[string]int{}, map[string]int{}
	for i := range flood {
		kind := kinds[i%len(kinds)]
		if err := ws.Write(ctx, websocket.MessageText, fmt.Appendf(nil, kind, i)); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		r := nextReply(t, ws)
		if string(r.ID) != fmt.Sprint(i) {
			t.Fatalf("message %d answered with id %s", i, r.ID)
		}
		name := strings.Split(kind, `"`)[3]
		switch {
		case r.Type == "ack":
			acked[name]++
		case r.Error != nil && r.Error.Code == "rate_limited" && r.Error.RetryAfter >= 1:
			refused[name]++
		default:
			t.Fatalf("message %d (%s): %+v, want an ack or rate_limited with a retryAfter", i, name, r.Error)
		}
		// The classmate publishes from its own laptop halfway and at the end, its burst of
		// two: had the refused messages been charged to the group, its budget (20) would be
		// gone.
		if i == flood/2 || i == flood-1 {
			if st, raw := callFromRetry(t, other, "POST", events, classmate.Token, `{"events":[{"name":"hello"}]}`); st != http.StatusOK {
				t.Fatalf("the classmate's publish during the flood (message %d): %d %s", i, st, raw)
			}
		}
	}
	total := 0
	for _, n := range acked {
		total += n
	}
	// The burst of two: the upgrade, then one message.
	if total != 1 {
		t.Fatalf("%d of %d WebSocket messages accepted (%v) with a node budget of 1/s: they are not charged", total, flood, acked)
	}
	for _, name := range []string{"heartbeat", "publish", "data"} {
		if refused[name] == 0 {
			t.Errorf("no %s message was refused (refused %v)", name, refused)
		}
	}
	// One budget: the node's HTTP heartbeat is refused too, with Retry-After.
	hb := groupURL(a.URL(), host.Group.ID, "/heartbeat")
	if st, raw := callFromRetry(t, httpFrom("127.0.0.2"), "POST", hb, pupil.Token, ""); st != http.StatusTooManyRequests || !strings.HasPrefix(raw, "1 ") {
		t.Fatalf("the flooder's HTTP heartbeat: %d %s, want 429 with Retry-After 1", st, raw)
	}
	// The socket stayed open: once the budget refills, it is served again.
	clock.Advance(time.Second)
	if err := ws.Write(ctx, websocket.MessageText, []byte(`{"type":"heartbeat","id":"after"}`)); err != nil {
		t.Fatalf("write after the flood: %v", err)
	}
	if r := nextReply(t, ws); r.Type != "ack" {
		t.Fatalf("a heartbeat a second after the flood: %s %+v, want an ack", r.Type, r.Error)
	}
}
