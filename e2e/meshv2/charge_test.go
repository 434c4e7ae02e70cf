package meshv2e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
	"meshbox/testclock"
)

// from is an HTTP client whose connections leave from ip, a loopback alias standing in for
// one laptop of the classroom (Linux routes all of 127/8 to lo).
func from(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

// postGQL posts one GraphQL request with hc and decodes the answer into out.
func postGQL(t *testing.T, hc *http.Client, base, query string, vars map[string]any, out any) int {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	resp, err := hc.Post(base+"/graphql", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("POST /graphql: %v", err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode the answer of /graphql: %v", err)
	}
	return resp.StatusCode
}

// rtSocket is a real-time socket as the aws-appsync client uses it.
type rtSocket struct {
	t   *testing.T
	ctx context.Context
	ws  *websocket.Conn
}

type rtReply struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Payload struct {
		Errors []struct {
			ErrorType string `json:"errorType"`
			ErrorCode int    `json:"errorCode"`
		} `json:"errors"`
	} `json:"payload"`
}

func dialRealtime(t *testing.T, ctx context.Context, base string, hc *http.Client) *rtSocket {
	t.Helper()
	u := "ws" + strings.TrimPrefix(base, "http") + "/graphql/realtime"
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"graphql-ws"}, HTTPClient: hc})
	if err != nil {
		t.Fatalf("dial the real-time endpoint: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return &rtSocket{t: t, ctx: ctx, ws: ws}
}

func (s *rtSocket) send(v any) {
	s.t.Helper()
	b, _ := json.Marshal(v)
	if err := s.ws.Write(s.ctx, websocket.MessageText, b); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// reply reads up to the next answer to a message: keep-alives and subscription data are
// skipped unless data is asked for.
func (s *rtSocket) reply(data bool) rtReply {
	s.t.Helper()
	for {
		_, b, err := s.ws.Read(s.ctx)
		if err != nil {
			s.t.Fatalf("read: %v", err)
		}
		var r rtReply
		if err := json.Unmarshal(b, &r); err != nil {
			s.t.Fatalf("decode %s: %v", b, err)
		}
		if r.Type == "ka" || (r.Type == "data") != data {
			continue
		}
		return r
	}
}

func (s *rtSocket) start(id, gid string) {
	s.t.Helper()
	q := `subscription($g:ID!,$d:String!){onMessageInGroup(groupId:$g,domain:$d){groupId batchEvent{events{name}}}}`
	data, _ := json.Marshal(map[string]any{"query": q, "variables": map[string]string{"g": gid, "d": "class"}})
	s.send(map[string]any{"id": id, "type": "start", "payload": map[string]any{
		"data": string(data), "extensions": map[string]any{"authorization": map[string]string{"x-api-key": "any", "host": "h"}},
	}})
}

// TestRealtimeMessagesPayTheAddressRate (issue 22 row 9, Mesh v2 real-time): a pupil's
// laptop (127.0.0.2) opens one /graphql/realtime socket and floods it with start and stop
// messages. Each costs its address one request of --ip-rate, as the POST /graphql it stands
// for does (Mesh v2 callers have no credential of their own), so with 5/s (burst 10) the
// upgrade, connection_init and eight messages pass and the rest are refused the way AppSync
// refuses a start: an error for the message's id, errorType TooManyRequestsException,
// errorCode 429, on a socket that stays open. A classmate on its own laptop (127.0.0.3)
// meanwhile creates a group, subscribes and fires an event that reaches it. The clock is
// frozen, so nothing refills while a slow machine runs the test; it moves once at the end,
// and the pupil's socket serves again. Before messages were charged, all 100 were answered.
func TestRealtimeMessagesPayTheAddressRate(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	a := app.StartTestWith(t, func(c *config.Config) {
		c.IPRate = 5 // burst 10
		c.PublishRate = 0
	}, app.Options{Now: clock.Now})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pupil, classmate := from("127.0.0.2"), from("127.0.0.3")

	// The classmate's group (one request of its address's ten).
	var created struct {
		Data   struct{ CreateGroup struct{ ID string } }
		Errors []any
	}
	postGQL(t, classmate, a.URL(), `mutation{createGroup(name:"class",hostId:"classmate",domain:"class",useWebSocket:true){id}}`, nil, &created)
	gid := created.Data.CreateGroup.ID
	if gid == "" {
		t.Fatalf("createGroup: %v", created.Errors)
	}

	// The pupil's socket: the upgrade and connection_init are two of its ten.
	flooder := dialRealtime(t, ctx, a.URL(), pupil)
	flooder.send(map[string]string{"type": "connection_init"})
	if r := flooder.reply(false); r.Type != "connection_ack" {
		t.Fatalf("connection_init: %+v", r)
	}
	const flood = 100
	accepted, refused := 0, 0
	for i := range flood {
		if i == flood/2 {
			// The classmate, on its own laptop, during the flood: its socket (upgrade,
			// connection_init, start) and a publish over HTTP, five of its ten.
			victim := dialRealtime(t, ctx, a.URL(), classmate)
			victim.send(map[string]string{"type": "connection_init"})
			if r := victim.reply(false); r.Type != "connection_ack" {
				t.Fatalf("the classmate's connection_init: %+v", r)
			}
			victim.start("mine", gid)
			if r := victim.reply(false); r.Type != "start_ack" {
				t.Fatalf("the classmate's subscription: %+v", r)
			}
			var fired struct{ Errors []any }
			fire := `mutation($g:ID!){fireEventsByNode(groupId:$g,domain:"class",nodeId:"classmate",events:[{eventName:"hello",payload:"",firedAt:"2026-12-07T09:00:00.000Z"}]){groupId}}`
			if st := postGQL(t, classmate, a.URL(), fire, map[string]any{"g": gid}, &fired); st != http.StatusOK || len(fired.Errors) > 0 {
				t.Fatalf("the classmate's event during the flood: %d %v", st, fired.Errors)
			}
			if r := victim.reply(true); r.ID != "mine" {
				t.Fatalf("the classmate's subscription got %+v, want its event", r)
			}
		}
		id := fmt.Sprintf("s%d", i-i%2) // start s0, stop s0, start s2, stop s2, …
		if i%2 == 0 {
			flooder.start(id, gid)
		} else {
			flooder.send(map[string]string{"id": id, "type": "stop"})
		}
		r := flooder.reply(false)
		if r.Type == "error" && len(r.Payload.Errors) == 1 && r.Payload.Errors[0].ErrorType == "TooManyRequestsException" {
			if r.ID != id || r.Payload.Errors[0].ErrorCode != http.StatusTooManyRequests {
				t.Fatalf("message %d refused as %+v, want id %s and errorCode 429", i, r, id)
			}
			refused++
			continue
		}
		if want := map[bool]string{true: "start_ack", false: "complete"}[i%2 == 0]; r.Type != want || r.ID != id {
			t.Fatalf("message %d: %+v, want %s or a refusal", i, r, want)
		}
		accepted++
	}
	if accepted != 8 || refused != flood-8 {
		t.Fatalf("%d of %d real-time messages accepted, %d refused; the address's burst of 10 allows 8 after the upgrade and connection_init", accepted, flood, refused)
	}
	// The socket stayed open: once the budget refills, it is served again.
	clock.Advance(time.Second)
	flooder.start("after", gid)
	if r := flooder.reply(false); r.Type != "start_ack" {
		t.Fatalf("a start a second after the flood: %+v, want start_ack", r)
	}
}
