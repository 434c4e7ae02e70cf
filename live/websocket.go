package live

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Socket is a registered WebSocket connection: the manager pings it, drops it when its writes
// stall and closes it at shutdown. Writes are serialised here, so the stall detector always
// times the write in progress.
type Socket struct {
	*Conn
	writeGuard
	ws  *websocket.Conn
	log *slog.Logger

	closeOnce sync.Once
	reason    atomic.Pointer[Reason]
}

// AcceptOptions are the upgrade options of Accept.
type AcceptOptions = websocket.AcceptOptions

// Accept upgrades the request to a WebSocket registered as transport for client address addr.
// On error the client has been answered (an upgrade failure) or err is ErrTooManyConns or
// ErrShuttingDown, checked before the upgrade so the caller can answer it. The socket's
// context does not end with the request: a hijacked connection outlives its handler.
func (m *Manager) Accept(w http.ResponseWriter, r *http.Request, addr, transport string, opts *AcceptOptions, log *slog.Logger) (*Socket, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Socket{log: log}
	// Shutdown closes the socket with 1012 rather than cancelling its context: a read whose
	// context ends drops the connection without a close frame, and clients should be told to
	// reconnect. ready holds that close back until the upgrade is done.
	ready := make(chan struct{})
	c, err := m.open(context.Background(), addr, transport, func() { <-ready; s.Close(Shutdown) })
	if err != nil {
		return nil, err
	}
	s.Conn = c
	ws, err := websocket.Accept(smallBuffers{w}, r, opts)
	if err != nil {
		s.closeOnce.Do(func() {}) // the shutdown hook has no socket to close
		close(ready)
		c.Close()
		return nil, errUpgrade{err}
	}
	s.ws = ws
	m.watch(s, c)
	close(ready)
	return s, nil
}

// errUpgrade is a failed upgrade, already answered by the library.
type errUpgrade struct{ err error }

func (e errUpgrade) Error() string { return "websocket upgrade: " + e.err.Error() }
func (e errUpgrade) Unwrap() error { return e.err }

// Answered reports whether err from Accept has already been answered to the client.
func Answered(err error) bool {
	_, ok := err.(errUpgrade)
	return ok
}

// WS is the underlying connection, for reads and settings.
func (s *Socket) WS() *websocket.Conn { return s.ws }

// Write sends one text message. It arms no timer: a write that stalls is cut off by the
// manager's ticker (Slow), and Close ends a write in progress by closing the socket.
func (s *Socket) Write(b []byte) error {
	return s.write(s.Conn, func() error { return s.ws.Write(context.Background(), websocket.MessageText, b) })
}

// tick pings the peer (called by the manager's ticker, once per interval).
func (s *Socket) tick(every time.Duration) { go s.ping(every) }

func (s *Socket) ping(within time.Duration) {
	ctx, cancel := context.WithTimeout(s.ctx, within)
	defer cancel()
	start := time.Now()
	if err := s.ws.Ping(ctx); err != nil {
		if s.ctx.Err() == nil {
			s.Drop(Reset)
		}
		return
	}
	// Ping returns when the pong arrives: the time between is the round trip (plus the wait
	// for a write in progress, which a stalled socket's pong also waits for).
	s.ObserveRTT("ping", time.Since(start))
}

// Close ends the connection once, with a close frame carrying the reason, and unregisters it.
func (s *Socket) Close(why Reason) {
	s.closeOnce.Do(func() {
		s.reason.Store(&why)
		s.log.Debug("websocket closed", "code", int(why.Code), "reason", why.Text)
		s.ws.Close(why.Code, why.Text)
		s.end()
	})
}

// Drop ends the connection of a peer that no longer answers or reads, without the close
// handshake, which would wait for that peer.
func (s *Socket) Drop(why Reason) {
	s.closeOnce.Do(func() {
		s.reason.Store(&why)
		s.log.Debug("websocket dropped", "code", int(why.Code), "reason", why.Text)
		s.end()
	})
}

func (s *Socket) end() {
	s.cancel()
	s.ws.CloseNow()
	s.m.unwatch(s)
}

// Reason is why the socket ended, once it has; the zero Reason before.
func (s *Socket) Reason() Reason {
	if r := s.reason.Load(); r != nil {
		return *r
	}
	return Reason{}
}

// Release ends the socket (without a handshake, if it has not ended yet: its reader is done,
// so nobody would read the answer) and frees its registration; call it once the connection's
// goroutines are done.
func (s *Socket) Release(why Reason) {
	s.Drop(why)
	s.Conn.Close()
}

// WebSocket connection buffers. A connection keeps the buffers it is given at the upgrade for
// its whole life; net/http hands over 4 KiB for each direction, most of an idle connection's
// memory. Reading needs little (a reader gets only pongs; bigger client messages are read
// through it), and a frame of a few items fits the write buffer, so it still goes out in one
// write.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 1024
)

// smallBuffers gives websocket.Accept a hijacked connection with small buffers instead of
// net/http's; bytes the HTTP server had already read past the request are kept in front of the
// connection.
type smallBuffers struct{ http.ResponseWriter }

// Hijack takes the connection over from the HTTP server.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, wsReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		// Move them into the new buffer (Accept takes what is buffered, then reads the
		// connection): peeking reads them all from the bytes reader, none from the connection.
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), max(wsReadBuffer, n))
		if _, err := br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("websocket upgrade: keep buffered bytes: %w", err)
		}
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}
