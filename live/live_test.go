package live

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func TestPerAddressCapIsSharedByEveryTransport(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{MaxPerAddr: 2})
	a, err := m.Open(context.Background(), "10.0.0.1", "sse")
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Open(context.Background(), "10.0.0.1", "graphql_ws")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open(context.Background(), "10.0.0.1", "dashboard"); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("third connection of one address: %v, want ErrTooManyConns", err)
	}
	if c, err := m.Open(context.Background(), "10.0.0.2", "ws"); err != nil {
		t.Fatalf("another address: %v", err)
	} else {
		c.Close()
	}
	// Connections with slots of their own (the teacher's dashboard) are not charged.
	free, err := m.Open(context.Background(), "", "dashboard")
	if err != nil {
		t.Fatal(err)
	}
	free.Close()
	a.Close()
	a.Close() // idempotent: frees one slot, not two
	c, err := m.Open(context.Background(), "10.0.0.1", "longpoll")
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	if _, err := m.Open(context.Background(), "10.0.0.1", "ws"); !errors.Is(err, ErrTooManyConns) {
		t.Fatalf("a double close freed two slots: %v", err)
	}
	b.Close()
	c.Close()
}

func TestShutdownEndsConnectionsAndRefusesNewOnes(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, Config{})
	c, err := m.Open(context.Background(), "10.0.0.1", "sse")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	<-c.Context().Done()
	if !c.ShuttingDown() {
		t.Fatal("ShuttingDown is false after the manager's context ended")
	}
	if _, err := m.Open(context.Background(), "10.0.0.1", "sse"); !errors.Is(err, ErrShuttingDown) {
		t.Fatalf("open during shutdown: %v", err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Millisecond)
	if err := m.Wait(wctx); err == nil {
		t.Fatal("Wait returned with a connection still open")
	}
	wcancel()
	c.Close()
	if err := m.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestReasonsAreDistinct(t *testing.T) {
	t.Parallel()
	seen := map[websocket.StatusCode]string{}
	for _, r := range []Reason{Ended, Shutdown, Slow, Reset, Internal, BadFrame, PeerGone} {
		if other, dup := seen[r.Code]; dup {
			t.Errorf("%q and %q share close code %d", r.Text, other, r.Code)
		}
		seen[r.Code] = r.Text
	}
}

// socketPair accepts one WebSocket through m and returns it with the client's end, which
// never reads unless the test does.
func socketPair(t *testing.T, m *Manager) (*Socket, *websocket.Conn) {
	t.Helper()
	accepted := make(chan *Socket, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Accept(w, r, "127.0.0.1", "ws", &AcceptOptions{CompressionMode: websocket.CompressionDisabled}, nil)
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- s
	}))
	t.Cleanup(srv.Close)
	client, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseNow() })
	s := <-accepted
	t.Cleanup(func() { s.Release(PeerGone) })
	return s, client
}

// A write that stalls (the peer reads nothing) stays visible to the stall check while other
// writers (acks beside a flush) queue behind it: they neither clear nor move its start.
func TestConcurrentWriteDoesNotHideAStall(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	s, _ := socketPair(t, m)
	big := make([]byte, 64<<20) // far more than the socket buffers hold
	stalled := make(chan error, 1)
	go func() { stalled <- s.Write(big) }()
	for s.writeStart.Load() == 0 {
		runtime.Gosched()
	}
	start := time.Unix(0, s.writeStart.Load())
	ack := make(chan error, 1)
	go func() { ack <- s.Write([]byte(`{"type":"ack"}`)) }()
	for s.waiting.Load() == 0 {
		runtime.Gosched()
	}
	const d = time.Minute
	if !s.stalled(start.Add(d+time.Second), d) {
		t.Fatal("a waiting ack hid the stalled write")
	}
	if got := time.Unix(0, s.writeStart.Load()); !got.Equal(start) {
		t.Fatalf("the stall start moved from %v to %v", start, got)
	}
	// The pinger's verdict: dropped as a slow client, both writes end.
	s.Drop(Slow)
	if err := <-stalled; err == nil {
		t.Fatal("the stalled write succeeded after the drop")
	}
	<-ack
	if s.Reason() != Slow {
		t.Fatalf("reason %v, want %v", s.Reason(), Slow)
	}
}

func TestShutdownClosesSocketsWith1012(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, Config{})
	s, client := socketPair(t, m)
	go func() {
		// The server's reader, as every adapter has one: it answers the close handshake.
		for {
			if _, _, err := s.WS().Read(context.Background()); err != nil {
				return
			}
		}
	}()
	cancel()
	_, _, err := client.Read(context.Background())
	if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
		t.Fatalf("close status %d (%v), want 1012", got, err)
	}
}

func TestSSEFrames(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	rec := httptest.NewRecorder()
	out := m.StartSSE(rec, 2*time.Second)
	out.Comment("connected")
	out.Event(7, "event", []byte(`{"a":1}`))
	out.Event(-1, "overview", []byte(`{}`))
	if err := out.Flush(); err != nil {
		t.Fatal(err)
	}
	const want = "retry: 2000\n\n: connected\n\nid: 7\nevent: event\ndata: {\"a\":1}\n\nevent: overview\ndata: {}\n\n"
	if got := rec.Body.String(); got != want {
		t.Fatalf("frames %q, want %q", got, want)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("content type %q", ct)
	}
}
