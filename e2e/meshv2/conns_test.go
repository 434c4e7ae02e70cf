package meshv2e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
)

// TestRealtimeSocketsCountTowardTheConnectionCap opens Mesh v2 real-time sockets and a native
// WebSocket from one address: they share --max-conns-per-ip, which counts every connection.
func TestRealtimeSocketsCountTowardTheConnectionCap(t *testing.T) {
	t.Parallel()
	a := app.StartTest(t, func(c *config.Config) { c.MaxConnsPerIP = 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rt := "ws" + strings.TrimPrefix(a.URL(), "http") + "/graphql/realtime"
	dial := func(url string, opts *websocket.DialOptions) (*websocket.Conn, int) {
		c, resp, err := websocket.Dial(ctx, url, opts)
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		if err != nil {
			return nil, status
		}
		t.Cleanup(func() { c.CloseNow() })
		return c, status
	}
	// The group is created first: the cap counts every connection of the address, so at the
	// cap even a plain request is refused (its idle keep-alive connection makes way for the
	// sockets).
	var created struct {
		Group struct{ ID string }
		Token string
	}
	if code := post(t, a.URL()+"/api/v1/groups", "", map[string]string{"name": "class"}, &created); code != http.StatusCreated {
		t.Fatalf("create group: %d", code)
	}
	// The request's keep-alive connection is closed and gone before the sockets open, so the
	// cap holds exactly the sockets (how an idle connection makes way is the server's own test).
	http.DefaultClient.CloseIdleConnections()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if open, _ := a.Server.ConnsFrom("127.0.0.1"); open == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the request's connection never closed")
		}
		time.Sleep(time.Millisecond)
	}
	sub := &websocket.DialOptions{Subprotocols: []string{"graphql-ws"}}
	first, _ := dial(rt, sub)
	if first == nil {
		t.Fatal("first real-time socket refused")
	}
	if c, _ := dial(rt, sub); c == nil {
		t.Fatal("second real-time socket refused")
	}
	if c, status := dial(rt, sub); c != nil || status != http.StatusTooManyRequests {
		t.Fatalf("third real-time socket: status %d", status)
	}
	// A native stream from the same address is over the cap too.
	native := "ws" + strings.TrimPrefix(a.URL(), "http") + "/api/v1/groups/" + created.Group.ID + "/ws?token=" + created.Token
	if c, status := dial(native, nil); c != nil || status != http.StatusTooManyRequests {
		t.Fatalf("native WebSocket over the cap: status %d", status)
	}
	// Closing a real-time socket frees its place, once the server has seen it go.
	first.Close(websocket.StatusNormalClosure, "")
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, status := dial(native, nil)
		if c != nil {
			break
		}
		if status != http.StatusTooManyRequests || time.Now().After(deadline) {
			t.Fatalf("native WebSocket after a real-time socket closed: status %d", status)
		}
	}
}
