package server_test

import (
	"context"
	"net"
	"net/http"
	"runtime"
	"testing"
	"time"

	"meshbox/config"
)

// TestNoGoroutineOutlivesItsConnection opens and drops many streams of every transport, some
// of them badly (a WebSocket that sends garbage, a long-poll cancelled mid-wait, a client that
// sends half a request), and checks that the server's goroutines come back to where they were.
func TestNoGoroutineOutlivesItsConnection(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("leaks")
	c.publish(host, "warm-up")
	http.DefaultClient.CloseIdleConnections()
	// Taken at once: goroutines of the warm-up still ending only make the baseline higher,
	// and the check below more lenient, never wrong.
	base := runtime.NumGoroutine()

	for round := 0; round < 20; round++ {
		var streams []*stream
		for _, tr := range []string{trWS, trSSE, trLP} {
			streams = append(streams, openStream(t, a.URL(), tr, host, readerOpts{since: cur(host.Cursor)}))
		}
		ws, _, err := dialWS(context.Background(), a.URL(), host, readerOpts{})
		if err != nil {
			t.Fatal(err)
		}
		ws.Write(context.Background(), 1, []byte("{not json"))
		ws.CloseNow()
		conn, err := net.Dial("tcp", a.URL()[len("http://"):])
		if err != nil {
			t.Fatal(err)
		}
		conn.Write([]byte("GET /api/v1/groups HTTP/1.1\r\nHost: x\r\n")) // and never the rest
		conn.Close()
		c.publish(host, "during")
		for _, s := range streams {
			s.close()
		}
	}
	http.DefaultClient.CloseIdleConnections()
	eventually(t, 10*time.Second, "goroutines to come back", func() bool {
		return runtime.NumGoroutine() <= base+3
	})
}

// TestDeadWebSocketPeerIsDropped: a peer that stops answering pings (here: a client that never
// reads, so it never sends a pong) is dropped within two ping intervals, and its node no longer
// counts as present.
func TestDeadWebSocketPeerIsDropped(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) { cfg.PingInterval = 200 * time.Millisecond })
	host := c.create("dead-peer")
	ws, _, err := dialWS(context.Background(), a.URL(), host, readerOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	eventually(t, 2*time.Second, "the reader to be present", func() bool {
		return len(a.Hub.Transports(host.Group.ID)[host.Node.ID]) > 0
	})
	start := time.Now()
	eventually(t, 3*time.Second, "the silent peer to be dropped", func() bool {
		return len(a.Hub.Transports(host.Group.ID)[host.Node.ID]) == 0
	})
	if took := time.Since(start); took < 150*time.Millisecond {
		t.Fatalf("dropped after %v: before any ping could go unanswered", took)
	}
}
