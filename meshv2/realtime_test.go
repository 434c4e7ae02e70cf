package meshv2

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

type rtClient struct {
	t  *testing.T
	ws *websocket.Conn
}

// dialRT opens /graphql/realtime as the aws-appsync client does; header is the JSON of the
// header query parameter, or "" for a bare probe.
func (s *testServer) dialRT(t *testing.T, header string) *rtClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/graphql/realtime"
	if header != "" {
		u += "?header=" + base64.StdEncoding.EncodeToString([]byte(header)) + "&payload=" + base64.StdEncoding.EncodeToString([]byte("{}"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"graphql-ws"}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "graphql-ws" {
		t.Fatalf("sub-protocol %q", got)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &rtClient{t: t, ws: ws}
}

func (c *rtClient) sendRaw(s string) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *rtClient) send(v any) {
	c.t.Helper()
	b, _ := json.Marshal(v)
	c.sendRaw(string(b))
}

type rtIn struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
}

// next reads the next message other than ka.
func (c *rtClient) next() rtIn {
	c.t.Helper()
	for {
		m := c.read(5 * time.Second)
		if m.Type != "ka" {
			return m
		}
	}
}

func (c *rtClient) read(d time.Duration) rtIn {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	_, b, err := c.ws.Read(ctx)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m rtIn
	if err := json.Unmarshal(b, &m); err != nil {
		c.t.Fatalf("server sent non-JSON %q", b)
	}
	return m
}

func (c *rtClient) expect(typ string) rtIn {
	c.t.Helper()
	m := c.next()
	if m.Type != typ {
		c.t.Fatalf("want %s, got %s %s", typ, m.Type, m.Payload)
	}
	return m
}

// handshake sends connection_init and checks the ack and the first ka.
func (c *rtClient) handshake() {
	c.t.Helper()
	c.send(map[string]string{"type": "connection_init"})
	ack := c.read(5 * time.Second)
	var p struct{ ConnectionTimeoutMs int64 }
	if ack.Type != "connection_ack" || json.Unmarshal(ack.Payload, &p) != nil || p.ConnectionTimeoutMs <= 0 {
		c.t.Fatalf("ack = %s %s", ack.Type, ack.Payload)
	}
	if m := c.read(5 * time.Second); m.Type != "ka" {
		c.t.Fatalf("want ka right after ack, got %s", m.Type)
	}
}

func (c *rtClient) start(id, gid string) {
	c.t.Helper()
	data, _ := json.Marshal(map[string]any{"query": qSubscribe, "variables": map[string]string{"groupId": gid, "domain": "classroom"}})
	c.send(map[string]any{"id": id, "type": "start", "payload": map[string]any{
		"data": string(data), "extensions": map[string]any{"authorization": map[string]string{"x-api-key": "k", "host": "h"}},
	}})
}

type rtData struct {
	Data struct {
		OnMessageInGroup struct {
			GroupID    string
			NodeStatus *struct {
				NodeID string
				Data   []struct{ Key, Value string }
			}
			BatchEvent *struct {
				FiredByNodeID string
				Events        []struct{ Name, Payload, Timestamp, OrderKey string }
			}
			GroupDissolve *struct{ Message string }
		}
	}
}

func (c *rtClient) data(id string) rtData {
	c.t.Helper()
	m := c.expect("data")
	if m.ID != id {
		c.t.Fatalf("data for %q, want %q", m.ID, id)
	}
	var d rtData
	if err := json.Unmarshal(m.Payload, &d); err != nil {
		c.t.Fatal(err)
	}
	return d
}

func errorType(t *testing.T, m rtIn) string {
	t.Helper()
	var p struct{ Errors []struct{ ErrorType string } }
	if err := json.Unmarshal(m.Payload, &p); err != nil || len(p.Errors) == 0 {
		t.Fatalf("error message without errors: %s", m.Payload)
	}
	return p.Errors[0].ErrorType
}

func TestRealtimeProbeOpens(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{APIKey: "secret"}, newFakeBackend())
	c := s.dialRT(t, "")
	if err := c.ws.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatalf("close probe: %v", err)
	}
}

func TestRealtimeKeepAlive(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{KeepAliveInterval: 50 * time.Millisecond}, newFakeBackend())
	c := s.dialRT(t, `{"host":"x","x-api-key":"any"}`)
	c.handshake()
	for range 3 {
		if m := c.read(2 * time.Second); m.Type != "ka" {
			t.Fatalf("want ka, got %s", m.Type)
		}
	}
}

func TestRealtimeSubscription(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{}, b)
		gid := s.group(t, true)
		s.join(t, gid, "m1")
		c := s.dialRT(t, `{"host":"x","x-amz-date":"20260101T000000Z","x-api-key":"k"}`)
		c.handshake()
		c.start("sub-1", gid)
		if m := c.expect("start_ack"); m.ID != "sub-1" {
			t.Fatalf("start_ack id %q", m.ID)
		}

		s.ok(t, "reportDataByNode", qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"data": []map[string]string{{"key": "a", "value": "1"}, {"key": "b", "value": "2"}}})
		d := c.data("sub-1").Data.OnMessageInGroup
		if d.GroupID != gid || d.NodeStatus == nil || d.NodeStatus.NodeID != "m1" || len(d.NodeStatus.Data) != 2 || d.BatchEvent != nil {
			t.Fatalf("nodeStatus message = %+v", d)
		}
		// A second report sends the node's whole data, not only the change.
		s.ok(t, "reportDataByNode", qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"data": []map[string]string{{"key": "a", "value": "1"}, {"key": "b", "value": "3"}}})
		d = c.data("sub-1").Data.OnMessageInGroup
		if len(d.NodeStatus.Data) != 2 || d.NodeStatus.Data[1].Value != "3" {
			t.Fatalf("second nodeStatus = %+v", d.NodeStatus)
		}

		// Recorded events reach WebSocket subscribers too, as one batch, stamped with the
		// server's time as in the cloud; fired ones keep the client's firedAt.
		s.ok(t, "recordEventsByNode", qRecord, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"events": []map[string]any{
				{"eventName": "x", "payload": "1", "firedAt": "2026-01-01T00:00:00.100Z", "orderKey": "o1"},
				{"eventName": "y", "firedAt": "2026-01-01T00:00:00.400Z", "orderKey": "o2"},
			}})
		d = c.data("sub-1").Data.OnMessageInGroup
		if d.BatchEvent == nil || d.BatchEvent.FiredByNodeID != "m1" || len(d.BatchEvent.Events) != 2 ||
			strings.HasPrefix(d.BatchEvent.Events[0].Timestamp, "2026-01-01") || d.BatchEvent.Events[1].OrderKey != "o2" {
			t.Fatalf("batchEvent = %+v", d.BatchEvent)
		}
		s.ok(t, "fireEventsByNode", qFire, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"events": []map[string]any{{"eventName": "z", "firedAt": "2026-01-01T00:00:00.700Z", "orderKey": "o3"}}})
		d = c.data("sub-1").Data.OnMessageInGroup
		if d.BatchEvent == nil || len(d.BatchEvent.Events) != 1 || d.BatchEvent.Events[0].Timestamp != "2026-01-01T00:00:00.700Z" {
			t.Fatalf("fired batchEvent = %+v", d.BatchEvent)
		}

		c.send(map[string]string{"id": "sub-1", "type": "stop"})
		if m := c.expect("complete"); m.ID != "sub-1" {
			t.Fatalf("complete id %q", m.ID)
		}
		// Nothing more for a stopped subscription; a new one gets the dissolve.
		c.start("sub-2", gid)
		c.expect("start_ack")
		s.ok(t, "fireEventsByNode", qFire, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "host",
			"events": []map[string]any{{"eventName": "z", "firedAt": "2026-01-01T00:00:01.000Z"}}})
		if d := c.data("sub-2").Data.OnMessageInGroup; d.BatchEvent == nil || d.BatchEvent.Events[0].Name != "z" {
			t.Fatalf("fired event = %+v", d)
		}
		s.ok(t, "dissolveGroup", qDissolve, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host"})
		if d := c.data("sub-2").Data.OnMessageInGroup; d.GroupDissolve == nil || d.GroupDissolve.Message == "" {
			t.Fatalf("dissolve = %+v", d)
		}
		if m := c.expect("complete"); m.ID != "sub-2" {
			t.Fatalf("complete after dissolve for %q", m.ID)
		}
	})
}

func TestRealtimeMalformedMessages(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{}, newFakeBackend())
	gid := s.group(t, true)
	c := s.dialRT(t, `{"host":"x","x-api-key":"k"}`)

	c.start("early", gid)
	if m := c.expect("error"); m.ID != "early" {
		t.Fatalf("start before init: %+v", m)
	}
	c.handshake()
	bad := []struct{ name, msg, kind string }{
		{"not JSON", `{"type":`, "MessageParsingError"},
		{"no type", `{"id":"1"}`, "MessageParsingError"},
		{"unknown type", `{"type":"subscribe","id":"1"}`, "UnsupportedOperation"},
		{"start without id", `{"type":"start","payload":{"data":"{}"}}`, "MessageParsingError"},
		{"start without payload", `{"type":"start","id":"2"}`, "MessageParsingError"},
		{"data not a request", `{"type":"start","id":"3","payload":{"data":"[1,2]"}}`, "MessageParsingError"},
		{"invalid query", `{"type":"start","id":"4","payload":{"data":"{\"query\":\"subscription { nope }\"}"}}`, errValidation},
		{"mutation", `{"type":"start","id":"6","payload":{"data":"{\"query\":\"mutation { createDomain }\"}"}}`, errValidation},
		{"query", `{"type":"start","id":"7","payload":{"data":"{\"query\":\"{ getNodeStatus(nodeId: \\\"x\\\") { nodeId } }\"}"}}`, "UnsupportedOperation"},
		{"stop without id", `{"type":"stop"}`, "MessageParsingError"},
	}
	for _, b := range bad {
		c.sendRaw(b.msg)
		m := c.expect("error")
		if got := errorType(t, m); got != b.kind {
			t.Fatalf("%s: errorType %s, want %s", b.name, got, b.kind)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageBinary, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if got := errorType(t, c.expect("error")); got != "UnsupportedOperation" {
		t.Fatalf("binary frame: %s", got)
	}
	// Stopping an unknown or finished subscription is answered with complete, not an error.
	c.sendRaw(`{"type":"stop","id":"5"}`)
	if m := c.expect("complete"); m.ID != "5" {
		t.Fatalf("stop of unknown id: %+v", m)
	}
	// A subscription to a missing group fails with the Mesh v2 error type.
	c.start("missing", "nope")
	if m := c.expect("error"); m.ID != "missing" || errorType(t, m) != errGroupNotFound {
		t.Fatalf("missing group: %s", m.Payload)
	}
	// A duplicate id is refused while the first runs.
	c.start("dup", gid)
	c.expect("start_ack")
	c.start("dup", gid)
	if m := c.expect("error"); errorType(t, m) != "DuplicatedOperation" {
		t.Fatalf("duplicate: %s", m.Payload)
	}
	// The connection and the server are still fine.
	s.ok(t, "reportDataByNode", qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "host",
		"data": []map[string]string{{"key": "k", "value": "v"}}})
	if d := c.data("dup").Data.OnMessageInGroup; d.NodeStatus == nil {
		t.Fatalf("after malformed input: %+v", d)
	}
}

func TestRealtimeAPIKey(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{APIKey: "secret"}, newFakeBackend())
	gid := s.group(t, true) // s.apiKey is "secret"

	c := s.dialRT(t, `{"host":"x","x-api-key":"wrong"}`)
	c.send(map[string]string{"type": "connection_init"})
	if m := c.read(5 * time.Second); m.Type != "connection_error" || errorType(t, m) != errUnauthenticated {
		t.Fatalf("wrong key: %s %s", m.Type, m.Payload)
	}

	ok := s.dialRT(t, `{"host":"x","x-api-key":"secret"}`)
	ok.handshake()
	data, _ := json.Marshal(map[string]any{"query": qSubscribe, "variables": map[string]string{"groupId": gid, "domain": "classroom"}})
	ok.send(map[string]any{"id": "s", "type": "start", "payload": map[string]any{
		"data": string(data), "extensions": map[string]any{"authorization": map[string]string{"x-api-key": "wrong"}},
	}})
	if m := ok.expect("error"); errorType(t, m) != errUnauthenticated {
		t.Fatalf("start with wrong key: %s", m.Payload)
	}
	ok.send(map[string]any{"id": "s", "type": "start", "payload": map[string]any{
		"data": string(data), "extensions": map[string]any{"authorization": map[string]string{"x-api-key": "secret"}},
	}})
	ok.expect("start_ack")
}

func TestRealtimeCloseTellsClientsToReconnect(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{}, newFakeBackend())
	gid := s.group(t, true)
	c := s.dialRT(t, `{"host":"x","x-api-key":"k"}`)
	c.handshake()
	c.start("s", gid)
	c.expect("start_ack")

	// The client keeps reading, as real clients do, so it answers the close handshake.
	readErr := make(chan error, 1)
	go func() {
		for {
			if _, _, err := c.ws.Read(context.Background()); err != nil {
				readErr <- err
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	err := <-readErr
	if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
		t.Fatalf("close status %v (%v)", got, err)
	}
	// Plain HTTP keeps working for in-flight requests until the server itself stops.
	if res := s.do(t, qCreateDomain, nil); res.Status != http.StatusOK {
		t.Fatalf("graphql after Close: %d", res.Status)
	}
}

// TestRealtimeTooBigArrivesAs1009 (issue 24 item 1 on the AppSync endpoint): a message over
// the real-time read limit ends the connection with 1009, and the client is told so: the
// close frame reaches it, not a reset that it would see as 1006.
func TestRealtimeTooBigArrivesAs1009(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{}, newFakeBackend())
	c := s.dialRT(t, `{"host":"x","x-api-key":"k"}`)
	c.handshake()
	c.sendRaw(`{"type":"ka","id":"` + strings.Repeat("x", rtReadLimit) + `"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := c.ws.Read(ctx); err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
				t.Fatalf("connection ended with %v (%v), want 1009", got, err)
			}
			return
		}
	}
}
