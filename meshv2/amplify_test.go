package meshv2

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// dialAmplify opens /graphql/realtime as Amplify 6 does with an API key: no query string, the
// auth headers' JSON in a subprotocol `header-<base64url>` offered after graphql-ws.
func (s *testServer) dialAmplify(t *testing.T, headers string) *rtClient {
	t.Helper()
	u := "ws" + strings.TrimPrefix(s.URL, "http") + "/graphql/realtime"
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	proto := "header-" + base64.RawURLEncoding.EncodeToString([]byte(headers))
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"graphql-ws", proto}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	// The browser accepts only a protocol it offered; AppSync chooses graphql-ws, never the
	// header one, which would put the key in the answer.
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != "graphql-ws" {
		t.Fatalf("chosen sub-protocol %q, want graphql-ws", got)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &rtClient{t: t, ws: ws}
}

// TestRealtimeAmplifySubprotocolKey: with --api-key set, Amplify 6's key in the header-
// subprotocol opens the connection and its subscriptions; a wrong key there is refused at
// connection_init exactly as a wrong ?header= key is (fails on the code that read only the
// query: every Amplify connection got UnauthorizedException).
func TestRealtimeAmplifySubprotocolKey(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{APIKey: "secret"}, newFakeBackend())
	gid := s.group(t, true)

	bad := s.dialAmplify(t, `{"host":"box.local","x-amz-date":"20261207T000000Z","x-api-key":"wrong"}`)
	bad.send(map[string]string{"type": "connection_init"})
	if m := bad.read(5 * time.Second); m.Type != "connection_error" || errorType(t, m) != errUnauthenticated {
		t.Fatalf("wrong key in the subprotocol: %s %s", m.Type, m.Payload)
	}

	ok := s.dialAmplify(t, `{"host":"box.local","x-amz-date":"20261207T000000Z","x-api-key":"secret"}`)
	ok.handshake()
	// Amplify puts the same headers in each start's extensions.
	data, _ := json.Marshal(map[string]any{"query": qSubscribe, "variables": map[string]string{"groupId": gid, "domain": "classroom"}})
	ok.send(map[string]any{"id": "s", "type": "start", "payload": map[string]any{
		"data": string(data), "extensions": map[string]any{"authorization": map[string]string{"x-api-key": "secret", "host": "box.local"}},
	}})
	ok.expect("start_ack")
}

// TestRealtimeRefusesTextThatIsNotUTF8 (issue 24 item 3): a text frame that is not UTF-8 on
// /graphql/realtime fails the connection with 1007, as on the native endpoint (it used to be
// answered as a JSON parse error and the socket kept open).
func TestRealtimeRefusesTextThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{}, newFakeBackend())
	c := s.dialRT(t, `{"host":"x","x-api-key":"k"}`)
	c.handshake()
	c.sendRaw("{\"type\":\"ka\",\"id\":\"\xff\xfe\"}")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		if _, _, err := c.ws.Read(ctx); err != nil {
			if got := websocket.CloseStatus(err); got != websocket.StatusInvalidFramePayloadData {
				t.Fatalf("connection ended with %v (%v), want 1007", got, err)
			}
			return
		}
	}
}
