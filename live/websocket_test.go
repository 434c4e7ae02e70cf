package live

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
)

// serveEcho accepts sockets through m and echoes every message back, uppercased for text.
func serveEcho(t testing.TB, m *Manager, opts *AcceptOptions, limit int64) (*httptest.Server, chan Reason) {
	t.Helper()
	ended := make(chan Reason, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Accept(w, r, "127.0.0.1", "ws", opts, nil)
		if err != nil {
			return
		}
		if limit > 0 {
			s.SetReadLimit(limit)
		}
		go func() {
			why := s.Serve(func(typ MessageType, b []byte) (Reason, bool) {
				if typ == Text {
					b = []byte(strings.ToUpper(string(b)))
				}
				if string(b) == "BYE" {
					return Ended, true
				}
				s.writeFrame(ws.OpCode(typ), b)
				return Reason{}, false
			})
			s.Close(why)
			ended <- why
			s.Release(why)
		}()
	}))
	t.Cleanup(srv.Close)
	return srv, ended
}

// A real client's messages reach the handler whole (also fragmented ones, which the client
// sends for a message written in parts), in both types, and the answers reach the client.
func TestSocketMessages(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	srv, ended := serveEcho(t, m, nil, 0)
	c, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	ctx := context.Background()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("ab", 10_000)
	for i := 0; i < len(big); i += 1000 {
		w.Write([]byte(big[i : i+1000]))
	}
	w.Close()
	c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2})
	for _, want := range []string{"HELLO", strings.ToUpper(big), "\x00\x01\x02"} {
		typ, b, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want || (want[0] == 0) != (typ == websocket.MessageBinary) {
			t.Fatalf("got %v %d bytes, want %d bytes", typ, len(b), len(want))
		}
	}
	// A handler that ends the connection closes it with its reason.
	c.Write(ctx, websocket.MessageText, []byte("bye"))
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusCode(Ended.Code) {
		t.Fatalf("close %v, want %d", err, Ended.Code)
	}
	if why := <-ended; why != Ended {
		t.Fatalf("ended with %v", why)
	}
}

// A client's close is answered (its Close returns cleanly) and ends the reader; a message
// over the limit closes with 1009.
func TestSocketCloseHandshakeAndLimit(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	srv, ended := serveEcho(t, m, nil, 100)
	c, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("the close handshake failed: %v", err)
	}
	if why := <-ended; why != PeerGone {
		t.Fatalf("ended with %v, want %v", why, PeerGone)
	}
	c, _, err = websocket.Dial(context.Background(), "ws"+srv.URL[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(context.Background(), websocket.MessageText, []byte(strings.Repeat("x", 101)))
	_, _, err = c.Read(context.Background())
	if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("close %v, want 1009", err)
	}
	<-ended
}

// The subprotocol the client offers and the server speaks is agreed.
func TestSocketSubprotocol(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	srv, _ := serveEcho(t, m, &AcceptOptions{Subprotocols: []string{"graphql-ws"}}, 0)
	c, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], &websocket.DialOptions{Subprotocols: []string{"graphql-ws"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if c.Subprotocol() != "graphql-ws" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
}

// Frames a client sends right behind its upgrade request (read ahead by the HTTP server) are
// not lost.
func TestSocketKeepsBytesSentWithTheUpgrade(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	srv, _ := serveEcho(t, m, nil, 0)
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	req := "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	var frame strings.Builder
	ws.WriteFrame(&frame, ws.MaskFrame(ws.NewTextFrame([]byte("early"))))
	if _, err := io.WriteString(nc, req+frame.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	h, err := ws.ReadHeader(br)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(br, p); err != nil || string(p) != "EARLY" {
		t.Fatalf("echo of the early frame: %q %v", p, err)
	}
}

// recLink records what the manager learns of a connection.
type recLink struct{ rtts chan time.Duration }

func (l *recLink) ObserveRTT(_ string, d time.Duration) { l.rtts <- d }
func (l *recLink) Stalled(bool)                         {}

// A ping answered by the client gives a round trip; a ping left unanswered until the next
// tick drops the socket (Reset).
func TestSocketPings(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	s, client := socketPair(t, m)
	l := &recLink{rtts: make(chan time.Duration, 4)}
	s.SetLink(l)
	go s.Serve(func(MessageType, []byte) (Reason, bool) { return Reason{}, false })
	reading := make(chan struct{})
	go func() { // the client answers pings while it reads
		close(reading)
		client.Read(context.Background())
	}()
	<-reading
	s.tick(time.Second)
	if d := <-l.rtts; d <= 0 {
		t.Fatalf("round trip %v", d)
	}
	if s.pingSent.Load() != 0 {
		t.Fatal("the answered ping is still awaited")
	}
	// A ping nobody answers: the peer is gone at the next tick.
	s.pingSent.Store(time.Now().UnixNano())
	s.tick(time.Second)
	if s.Reason() != Reset {
		t.Fatalf("reason %v, want %v", s.Reason(), Reset)
	}
}

// A fragmented message whose next fragment declares a length near 2^63 is refused as too big
// (1009), not added to what was read (which would overflow and allocate without bound).
func TestSocketRefusesAHugeFragment(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	srv, ended := serveEcho(t, m, nil, 1<<20)
	nc, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	key := base64.StdEncoding.EncodeToString([]byte("0123456789abcdef"))
	io.WriteString(nc, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+key+"\r\nSec-WebSocket-Version: 13\r\n\r\n")
	br := bufio.NewReader(nc)
	if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	first := ws.MaskFrame(ws.Frame{Header: ws.Header{OpCode: ws.OpText, Length: 10}, Payload: []byte("0123456789")})
	ws.WriteFrame(nc, first)
	ws.WriteHeader(nc, ws.Header{Fin: true, OpCode: ws.OpContinuation, Masked: true, Length: 1<<63 - 1})
	if why := <-ended; why != TooBig {
		t.Fatalf("ended with %v, want %v", why, TooBig)
	}
}

// A single frame bigger than the read chunk arrives whole (read in chunks as it comes).
func TestSocketReadsABigFrameWhole(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	srv, _ := serveEcho(t, m, nil, 1<<20)
	c, _, err := websocket.Dial(context.Background(), "ws"+srv.URL[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	big := strings.Repeat("abcdefgh", 100_000/8) // 100 kB, one frame
	if err := c.Write(context.Background(), websocket.MessageText, []byte(big)); err != nil {
		t.Fatal(err)
	}
	_, b, err := c.Read(context.Background())
	if err != nil || string(b) != strings.ToUpper(big) {
		t.Fatalf("echo of a 100 kB frame: %d bytes, %v", len(b), err)
	}
}

// Offer never waits for the client: once the socket's buffers are full it leaves the rest of
// the message to finish, and until finish has written it every other write waits, so the
// client gets each message whole and in order, the one written meanwhile last.
func TestOfferLeavesTheRestToFinish(t *testing.T) {
	t.Parallel()
	m := New(context.Background(), Config{})
	socks := make(chan *Socket, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, err := m.Accept(w, r, "127.0.0.1", "ws", nil, nil)
		if err != nil {
			return
		}
		socks <- s
		why := s.Serve(func(MessageType, []byte) (Reason, bool) { return Reason{}, false })
		s.Release(why)
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+srv.URL[4:], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(-1)
	s := <-socks

	// The client reads nothing yet: offer 256 KiB messages until one is not taken whole.
	var sent [][]byte
	var finish func() error
	for i := 0; finish == nil; i++ {
		if i == 1000 {
			t.Fatal("256 MiB offered and every message was taken at once")
		}
		msg := []byte(strings.Repeat(string(rune('a'+i%26)), 256<<10))
		f, err := s.Offer(msg)
		if err != nil {
			t.Fatal(err)
		}
		sent, finish = append(sent, msg), f
	}
	if s.writeStart.Load() == 0 {
		t.Fatal("the unfinished write is not timed: the stall check would not see it")
	}
	wrote := make(chan error, 1)
	go func() { wrote <- s.Write([]byte("after")) }()
	for s.waiting.Load() != 1 {
		select {
		case err := <-wrote:
			t.Fatalf("a write went out (%v) while a message was unfinished", err)
		case <-ctx.Done():
			t.Fatal("the other write never waited")
		default:
			runtime.Gosched()
		}
	}
	// Nor does an offer wait for another write in progress: all of it is left to finish.
	next, err := s.Offer([]byte("next"))
	if err != nil || next == nil {
		t.Fatalf("an offer behind an unfinished write: finish %v, err %v", next != nil, err)
	}
	finished := make(chan error, 1)
	go func() { finished <- finish() }()
	read := func(i int, want []byte) {
		t.Helper()
		_, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("message %d: %d bytes starting %q, want %d of %q", i, len(got), got[:min(len(got), 4)], len(want), want[:4])
		}
	}
	for i, want := range append(sent, []byte("after")) {
		read(i, want)
	}
	if err := errors.Join(<-finished, <-wrote, next()); err != nil {
		t.Fatal(err)
	}
	read(len(sent)+1, []byte("next"))
}
