package live

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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
	seen := map[uint16]string{}
	for _, r := range []Reason{Ended, Shutdown, Slow, Reset, Internal, BadFrame, TooBig, Protocol, PeerGone, Busy} {
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
		s, err := m.Accept(w, r, "127.0.0.1", "ws", nil, nil)
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
		s.Serve(func(MessageType, []byte) (Reason, bool) { return Reason{}, false })
	}()
	cancel()
	_, _, err := client.Read(context.Background())
	if got := websocket.CloseStatus(err); got != websocket.StatusServiceRestart {
		t.Fatalf("close status %d (%v), want 1012", got, err)
	}
}

// streamPair starts an SSE stream on a real server; the handler hands the stream over and
// returns, as meshbox's adapters do.
func streamPair(t *testing.T, m *Manager, first []byte) (chan *Stream, *httptest.Server) {
	t.Helper()
	started := make(chan *Stream, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*") // set by middleware before the stream
		st, err := m.StartStream(w, r, "10.0.0.1", "sse", first, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusTooManyRequests)
			return
		}
		started <- st
	}))
	t.Cleanup(srv.Close)
	return started, srv
}

// getStream opens a stream of srv (see streamPair) with a real HTTP client: the response,
// to be closed by the caller, and the server's side.
func getStream(t *testing.T, srv *httptest.Server, started chan *Stream) (*http.Response, *Stream) {
	t.Helper()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return resp, <-started
}

// A stream's response is a proper chunked HTTP/1.1 response with the headers set before it,
// its events arrive as written, and it ends cleanly (the client reads EOF, not an error).
func TestStreamFramesAndEnd(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	started, srv := streamPair(t, m, AppendComment(AppendRetry(nil, 2*time.Second), "connected"))
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.StatusCode != 200 {
		t.Fatalf("status %d, content type %q", resp.StatusCode, ct)
	}
	if resp.Header.Get("Access-Control-Allow-Origin") != "*" || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
		t.Fatalf("headers %v, transfer encoding %v", resp.Header, resp.TransferEncoding)
	}
	st := <-started
	served := make(chan Reason, 1)
	go func() { served <- st.Serve() }()
	if err := st.Write(AppendEvent(AppendEvent(nil, 7, "event", []byte(`{"a":1}`)), -1, "overview", []byte(`{}`))); err != nil {
		t.Fatal(err)
	}
	st.Close(Ended)
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the stream to its end: %v", err)
	}
	const want = "retry: 2000\n\n: connected\n\nid: 7\nevent: event\ndata: {\"a\":1}\n\nevent: overview\ndata: {}\n\n"
	if string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	if why := <-served; why != Ended {
		t.Fatalf("served until %v, want %v", why, Ended)
	}
	st.Release(Ended)
}

// An HTTP/1.0 client gets a body that ends with the connection (no chunks).
func TestStreamToHTTP10(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	started, srv := streamPair(t, m, AppendComment(nil, "connected"))
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	st := <-started
	go st.Serve()
	st.Write(AppendEvent(nil, 1, "event", []byte(`{}`)))
	st.Close(Ended)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != ": connected\n\nid: 1\nevent: event\ndata: {}\n\n" || len(resp.TransferEncoding) != 0 {
		t.Fatalf("body %q (%v), transfer encoding %v", body, err, resp.TransferEncoding)
	}
	st.Release(Ended)
}

// A client that goes away ends the stream at once (not at the next write): its context ends
// and its address slot is free again.
func TestStreamEndsWhenTheClientLeaves(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{MaxPerAddr: 1})
	started, srv := streamPair(t, m, nil)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	st := <-started
	served := make(chan Reason, 1)
	go func() { served <- st.Serve() }()
	cancel()
	resp.Body.Close()
	if why := <-served; why != PeerGone {
		t.Fatalf("served until %v, want %v", why, PeerGone)
	}
	<-st.Context().Done()
	st.Release(PeerGone)
	if _, err := m.Open(context.Background(), "10.0.0.1", "sse"); err != nil {
		t.Fatalf("the address slot was not freed: %v", err)
	}
}

// At shutdown a stream tells its client to come back in a second, then ends its body.
func TestStreamShutdownSaysGoodbye(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	m := New(ctx, Config{})
	started, srv := streamPair(t, m, nil)
	resp, st := getStream(t, srv, started)
	defer resp.Body.Close()
	go st.Serve()
	cancel()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "retry: 1000\n\nevent: shutdown\ndata: {\"type\":\"shutdown\"}\n\n"; string(body) != want {
		t.Fatalf("body %q, want %q", body, want)
	}
	st.Release(Shutdown)
	if err := m.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Evict closes the oldest stream of the address it names, with a busy goodbye and a retry
// hint, and leaves younger streams, other addresses' and the ones charged to nobody (the
// teacher's dashboard) alone.
func TestEvictClosesTheOldestStreamOfTheAddress(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	started, srv := streamPair(t, m, nil) // every stream of streamPair is 10.0.0.1's
	oldResp, old := getStream(t, srv, started)
	defer oldResp.Body.Close()
	youngResp, young := getStream(t, srv, started)
	defer youngResp.Body.Close()
	go old.Serve()
	go young.Serve()
	teacher, err := m.Open(context.Background(), "", "dashboard")
	if err != nil {
		t.Fatal(err)
	}
	defer teacher.Close()
	if m.Evict("10.0.0.2") || m.Evict("") {
		t.Fatal("Evict found a stream of an address that holds none")
	}
	if !m.Evict("10.0.0.1") {
		t.Fatal("Evict found no stream of 10.0.0.1")
	}
	body, err := io.ReadAll(oldResp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "retry: 5000\n\nevent: busy\ndata: {\"type\":\"busy\",\"reason\":\"" + Busy.Text + "\"}\n\n"; string(body) != want {
		t.Fatalf("evicted stream's body %q, want %q", body, want)
	}
	if old.Reason() != Busy {
		t.Fatalf("evicted stream ended for %q", old.Reason())
	}
	old.Release(Busy)
	if young.Context().Err() != nil {
		t.Fatal("the younger stream was closed too")
	}
	// The young one is next; then the address has none left.
	if !m.Evict("10.0.0.1") {
		t.Fatal("Evict found no second stream")
	}
	<-young.Context().Done()
	young.Release(Busy)
	if m.Evict("10.0.0.1") {
		t.Fatal("Evict found a stream after both closed")
	}
}

// unreadStream opens a stream of m whose client reads nothing (closed when the test ends).
func unreadStream(t *testing.T, m *Manager) *Stream {
	t.Helper()
	started, srv := streamPair(t, m, nil)
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	return <-started
}

// A stream whose client reads nothing is flagged and then dropped by the ticker, like a
// WebSocket: its blocked write fails.
func TestStalledStreamIsDropped(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{PingInterval: time.Hour, WriteTimeout: time.Hour})
	st := unreadStream(t, m)
	go st.Serve()
	stalled := make(chan error, 1)
	go func() { stalled <- st.Write(make([]byte, 64<<20)) }()
	for st.writeStart.Load() == 0 {
		runtime.Gosched()
	}
	start := time.Unix(0, st.writeStart.Load())
	if !st.stalled(start.Add(2*time.Hour), time.Hour) {
		t.Fatal("a blocked write is not seen as stalled")
	}
	st.Drop(Slow) // what the ticker does with it
	if err := <-stalled; err == nil {
		t.Fatal("the stalled write succeeded after the drop")
	}
	if st.Reason() != Slow {
		t.Fatalf("reason %v", st.Reason())
	}
	st.Release(Slow)
}

// Many connections of one address opening and closing at once never exceed its cap, and the
// address is forgotten once it has none (long-polls do this all day).
func TestPerAddressCapUnderChurn(t *testing.T) {
	t.Parallel()
	const limit = 8
	m := New(context.Background(), Config{MaxPerAddr: limit})
	var open, most atomic.Int64
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 300 {
				c, err := m.Open(context.Background(), "10.0.0.9", "longpoll")
				if err != nil {
					if !errors.Is(err, ErrTooManyConns) {
						t.Error(err)
					}
					continue
				}
				n := open.Add(1)
				for o := most.Load(); n > o && !most.CompareAndSwap(o, n); o = most.Load() {
				}
				open.Add(-1)
				c.Close()
			}
		}()
	}
	wg.Wait()
	if most.Load() > limit {
		t.Fatalf("%d connections of one address were open at once, cap %d", most.Load(), limit)
	}
	if _, ok := m.perAddr.Load("10.0.0.9"); ok {
		t.Fatal("an address with no connection is still counted")
	}
	for range limit {
		if _, err := m.Open(context.Background(), "10.0.0.9", "sse"); err != nil {
			t.Fatalf("after the churn: %v", err)
		}
	}
}

// A stream's Offer never waits for the client: once the socket's buffers are full it leaves
// the rest of the chunk to finish, every other write waits until finish has written it, and
// the client reads each event whole and in order, the one written meanwhile last.
func TestStreamOfferLeavesTheRestToFinish(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{PingInterval: time.Hour})
	started, srv := streamPair(t, m, nil)
	resp, st := getStream(t, srv, started)
	defer resp.Body.Close()
	served := make(chan Reason, 1)
	go func() { served <- st.Serve() }()

	var want []byte
	var finish func() error
	for i := 0; finish == nil; i++ {
		if i == 1000 {
			t.Fatal("256 MiB offered and every event was taken at once")
		}
		ev := AppendEvent(nil, int64(i+1), "event", bytes.Repeat([]byte{byte('a' + i%26)}, 256<<10))
		f, err := st.Offer(ev)
		if err != nil {
			t.Fatal(err)
		}
		want, finish = append(want, ev...), f
	}
	after := AppendEvent(nil, -1, "after", []byte(`{}`))
	want = append(want, after...)
	wrote := make(chan error, 1)
	go func() { wrote <- st.Write(after) }()
	for st.waiting.Load() != 1 {
		select {
		case err := <-wrote:
			t.Fatalf("a write went out (%v) while an event was unfinished", err)
		default:
			runtime.Gosched()
		}
	}
	finished := make(chan error, 1)
	go func() { finished <- finish() }()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("the stream differs at byte %d of %d: %q, want %q", i, len(want), got[i:min(i+20, len(got))], want[i:min(i+20, len(want))])
	}
	if err := errors.Join(<-finished, <-wrote); err != nil {
		t.Fatal(err)
	}
	st.Close(Ended)
	if why := <-served; why != Ended {
		t.Fatalf("served until %v", why)
	}
	st.Release(Ended)
}

// stallRecorder is a Link that records, in order, the stall flags it was told of.
type stallRecorder struct {
	mu     sync.Mutex
	events []bool
}

func (r *stallRecorder) ObserveRTT(string, time.Duration) {}
func (r *stallRecorder) Stalled(stalled bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, stalled)
}

func (r *stallRecorder) flagged() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.events, true)
}

// A connection whose writes stall is shown stalled before the ticker drops it, whenever in
// the ticker's interval its write began to block: here just before a check, so that at the
// next one it has been blocked for more than an interval already. It is flagged then, and
// dropped (Slow) only at the check after.
func TestStallIsFlaggedBeforeTheDrop(t *testing.T) {
	t.Parallel()
	const every = time.Minute
	m := New(context.Background(), Config{PingInterval: every, WriteTimeout: every})
	st := unreadStream(t, m)
	rec := &stallRecorder{}
	st.SetLink(rec)
	go st.Serve()
	wrote := make(chan error, 1)
	go func() { wrote <- st.Write(make([]byte, 64<<20)) }() // far more than the buffers hold
	for st.writeStart.Load() == 0 {
		runtime.Gosched()
	}
	began := time.Unix(0, st.writeStart.Load())

	m.check(began.Add(every / 10)) // blocked for less than half an interval: nothing yet
	if rec.flagged() || st.Context().Err() != nil {
		t.Fatal("flagged or dropped after a tenth of an interval")
	}
	m.check(began.Add(every + every/10)) // blocked for more than an interval, never flagged
	if !rec.flagged() {
		t.Fatal("not flagged after more than an interval")
	}
	if st.Context().Err() != nil {
		t.Fatal("dropped at the check that first saw the stall: the dashboard never showed it")
	}
	m.check(began.Add(2*every + every/10))
	if err := <-wrote; err == nil {
		t.Fatal("the stalled write succeeded")
	}
	if why := st.Reason(); why != Slow {
		t.Fatalf("ended for %v, want %v", why, Slow)
	}
	st.Release(Slow)
}

// A stream over HTTP/2 (which cannot be taken over) is refused before anything is written,
// so the caller can still answer with a status; a failure once the headers went out is
// Answered.
func TestStreamRefusedBeforeHeadersWithoutHTTP1(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	rec := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/stream", nil)
	r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
	if _, err := m.StartStream(rec, r, "10.0.0.1", "sse", nil, nil); !errors.Is(err, ErrNoHijack) || Answered(err) {
		t.Fatalf("err %v (answered %v), want ErrNoHijack for the caller to answer", err, Answered(err))
	}
	if rec.Header().Get("Content-Type") != "" || rec.Body.Len() > 0 {
		t.Fatalf("something was written: %v %q", rec.Header(), rec.Body)
	}
	// An HTTP/1.1 writer that cannot be taken over: the headers were set, nothing is left to say.
	r = httptest.NewRequest(http.MethodGet, "/stream", nil)
	if _, err := m.StartStream(httptest.NewRecorder(), r, "10.0.0.1", "sse", nil, nil); !Answered(err) {
		t.Fatalf("err %v after the headers, want an answered one", err)
	}
	if c, err := m.Open(context.Background(), "10.0.0.1", "sse"); err != nil {
		t.Fatalf("the failed streams kept their address slots: %v", err)
	} else {
		c.Close()
	}
}
