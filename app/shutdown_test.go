package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
)

// TestShutdownEndsEveryStream opens one of every long-lived stream — the dashboard's SSE, a
// native SSE stream, a long-poll, a native WebSocket and a Mesh v2 real-time socket — and
// checks that a graceful stop ends them all and returns cleanly. Before the server's base
// context was cancelled first, the dashboard stream held shutdown until its deadline; the
// deadline here is far longer than any machine needs, so only a stream that never ends fails.
func TestShutdownEndsEveryStream(t *testing.T) {
	a := app.StartTest(t, nil)
	base := a.URL()
	resp, err := http.Post(base+"/api/v1/groups", "application/json", strings.NewReader(`{"name":"g"}`))
	if err != nil {
		t.Fatal(err)
	}
	var j struct {
		Group  struct{ ID string }
		Token  string
		Cursor int64
	}
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	group := base + "/api/v1/groups/" + j.Group.ID

	// open starts a streaming GET and waits for its first byte, so the handler is running.
	ended := make(chan string, 8)
	open := func(name, url string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadByte(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		go func() {
			io.Copy(io.Discard, br)
			resp.Body.Close()
			ended <- name
		}()
	}
	open("dashboard", base+"/api/v1/dashboard/stream")
	open("sse", group+"/stream?token="+j.Token)
	// A long-poll answers only at its end: it is waiting once the hub counts it as present.
	go func() {
		resp, err := http.Get(group + "/events?wait=3600&token=" + j.Token)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		ended <- "long-poll"
	}()
	waitFor(t, "the long-poll to wait", func() bool {
		for _, tr := range a.Hub.Transports(j.Group.ID) {
			if slices.Contains(tr, "longpoll") {
				return true
			}
		}
		return false
	})
	ctx := context.Background()
	ws, _, err := websocket.Dial(ctx, strings.Replace(group, "http", "ws", 1)+"/ws?token="+j.Token, nil)
	if err != nil {
		t.Fatal(err)
	}
	wsEnded := make(chan websocket.StatusCode, 1)
	go func() {
		_, _, err := ws.Read(ctx)
		wsEnded <- websocket.CloseStatus(err)
	}()

	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := a.Shutdown(stopCtx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	got := map[string]bool{}
	for range 3 {
		got[<-ended] = true
	}
	if code := <-wsEnded; code != websocket.StatusServiceRestart {
		t.Errorf("WebSocket closed with %v, want 1012 (service restart)", code)
	}
	t.Logf("streams ended: %v", got)
}

// waitFor polls cond until it holds: the condition is observable, its timing is not.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
