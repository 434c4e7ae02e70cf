package live

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Socket is a registered WebSocket connection: the manager pings it, drops it when its writes
// stall and closes it at shutdown. It is built on gobwas/ws's frame functions rather than on
// a connection object, so that an idle socket holds only what it needs: the network
// connection, this struct and one reader goroutine parked at a shallow depth (Serve), no
// buffers (frames are built in pooled buffers and read straight from the connection) and no
// timer. Writes are serialised here, so the stall detector always times the write in
// progress.
type Socket struct {
	*Conn
	writeGuard
	nc        net.Conn
	raw       syscall.RawConn // nc's descriptor, for writes that never wait (Offer); nil: none
	log       *slog.Logger
	readLimit atomic.Int64
	pre       []byte // bytes the HTTP server read past the upgrade request, read first

	// pingSent is the send time (unix nanos) of the ping awaiting its pong, 0 when none;
	// the pong carries it back, which times the round trip.
	pingSent  atomic.Int64
	sentClose atomic.Bool // a close frame went out: nothing more may be written
	dropped   atomic.Bool // ended without the handshake: the peer is gone, no lingering
	ending
}

// AcceptOptions are the upgrade options of Accept.
type AcceptOptions struct {
	// Subprotocols are those the server speaks; the first one the client offers is chosen.
	Subprotocols []string
}

// MessageType is a WebSocket data message's type.
type MessageType int

// The data message types.
const (
	Text   MessageType = MessageType(ws.OpText)
	Binary MessageType = MessageType(ws.OpBinary)
)

// defaultReadLimit bounds a client message when SetReadLimit was not called.
const defaultReadLimit = 32 << 10

// readChunk is how much of a frame's payload is read (and allocated) at a time.
const readChunk = 32 << 10

// closeWait is how long a socket that sent its close frame waits for the client's, and how
// long a closing connection lingers for the client's end (see linger).
const closeWait = 2 * time.Second

// lingerMax bounds what a lingering close reads and throws away: a client that keeps sending
// after the close is cut off there (or at closeWait) rather than read for ever.
const lingerMax = 1 << 20

// Accept upgrades the request to a WebSocket registered as transport for client address addr.
// On error the client has been answered (an upgrade failure) or err is ErrTooManyConns or
// ErrShuttingDown, checked before the upgrade so the caller can answer it. The socket's
// context does not end with the request: a hijacked connection outlives its handler. The
// caller runs Serve on some goroutine and calls Release when done.
func (m *Manager) Accept(w http.ResponseWriter, r *http.Request, addr, transport string, opts *AcceptOptions, log *slog.Logger) (*Socket, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts == nil {
		opts = &AcceptOptions{}
	}
	s := &Socket{log: log}
	s.readLimit.Store(defaultReadLimit)
	// Shutdown closes the socket with 1012 rather than cancelling its context: clients should
	// be told to reconnect. ready holds that close back until the upgrade is done.
	ready := make(chan struct{})
	c, err := m.open(context.Background(), addr, transport, func() { <-ready; s.Close(Shutdown) })
	if err != nil {
		return nil, err
	}
	s.Conn = c
	u := ws.HTTPUpgrader{}
	if len(opts.Subprotocols) > 0 {
		u.Protocol = func(p string) bool { return slices.Contains(opts.Subprotocols, p) }
	}
	// The agreed subprotocol goes to the client in the answer; nothing here depends on it.
	nc, brw, _, err := u.Upgrade(r, w)
	if err != nil {
		// The upgrader has answered the client (a 4xx naming what was wrong).
		if nc != nil {
			nc.Close()
		}
		s.end(Reason{}, func() {}) // the shutdown hook has no socket to close
		close(ready)
		c.Close()
		return nil, answered{"websocket upgrade", err}
	}
	if n := brw.Reader.Buffered(); n > 0 {
		// A client may send its first frames right behind the request.
		b, _ := brw.Reader.Peek(n)
		s.pre = bytes.Clone(b)
	}
	// net/http's buffers are dropped here: frames are read from and written to nc directly.
	s.nc = nc
	s.raw = rawOf(nc)
	m.watch(s, c)
	close(ready)
	return s, nil
}

// answered is a failure after the client was answered (a failed upgrade, a stream whose
// headers went out): there is nothing more to tell it.
type answered struct {
	what string
	err  error
}

func (e answered) Error() string { return e.what + ": " + e.err.Error() }
func (e answered) Unwrap() error { return e.err }

// Answered reports whether err from Accept or StartStream has already been answered to the
// client; any other error came before anything was sent, for the caller to answer.
func Answered(err error) bool {
	_, ok := err.(answered)
	return ok
}

// SetReadLimit bounds one message from the client: a bigger one closes the socket with 1009.
func (s *Socket) SetReadLimit(n int64) { s.readLimit.Store(n) }

// Write sends one text message. It arms no timer: a write that stalls is cut off by the
// manager's ticker (Slow), and Drop ends a write in progress by closing the connection.
func (s *Socket) Write(b []byte) error { return s.writeFrame(ws.OpText, b) }

// errClosing refuses writes after the close frame.
var errClosing = errors.New("websocket is closing")

// writeFrame sends one unmasked, final frame in one write.
func (s *Socket) writeFrame(op ws.OpCode, payload []byte) error {
	return s.write(s.Conn, func() error {
		if s.sentClose.Load() {
			return errClosing
		}
		if op == ws.OpClose {
			s.sentClose.Store(true)
		}
		return s.sendFrame(op, payload)
	})
}

// Offer sends one text message like Write, but never waits, for the client or for another
// write: when the connection's socket buffer takes only part of it (the client reads slowly),
// or another write is in progress, Offer returns finish, which writes the rest (or all of
// it), waiting as Write does. The caller must run finish, on a goroutine that may wait,
// before it writes anything more.
func (s *Socket) Offer(b []byte) (finish func() error, err error) {
	return s.offer(s.Conn, s.nc, s.raw, s.frameOf(ws.OpText, b), &s.sentClose)
}

// sendFrame writes a frame; the caller holds the write guard.
func (s *Socket) sendFrame(op ws.OpCode, payload []byte) error {
	f := s.frameOf(op, payload)
	defer s.m.putFrame(f)
	_, err := s.nc.Write(f.b)
	return err
}

// frameOf builds a final, unmasked frame in a pooled buffer (give it back with putFrame).
func (s *Socket) frameOf(op ws.OpCode, payload []byte) *frameBuf {
	f := s.m.frame()
	// Writing a header into a buffer with room for the largest one cannot fail.
	_ = ws.WriteHeaderBuffer(f, ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}, f.hdr[:])
	f.b = append(f.b, payload...)
	return f
}

// tick is the manager's ticker's visit, once per interval: a ping still unanswered since
// the last visit means the peer is gone; otherwise a new ping goes out (on its own
// goroutine: a write may block).
func (s *Socket) tick(time.Duration) {
	if s.pingSent.Load() != 0 {
		if s.ctx.Err() == nil {
			s.Drop(Reset)
		}
		return
	}
	go s.ping()
}

// ping sends a ping carrying its send time; the pong that carries it back is the round trip
// (plus the wait for a write in progress, which a stalled socket's pong also waits for).
func (s *Socket) ping() {
	now := time.Now().UnixNano()
	s.pingSent.Store(now)
	var p [8]byte
	binary.BigEndian.PutUint64(p[:], uint64(now))
	if err := s.writeFrame(ws.OpPing, p[:]); err != nil && s.ctx.Err() == nil && !errors.Is(err, errClosing) {
		s.Drop(Reset)
	}
}

// pong takes a pong's payload: the round trip of the ping it answers.
func (s *Socket) pong(p []byte) {
	if len(p) != 8 {
		return // not an answer to meshbox's ping (unsolicited pongs are allowed)
	}
	sent := int64(binary.BigEndian.Uint64(p))
	if s.pingSent.CompareAndSwap(sent, 0) {
		s.ObserveRTT("ping", time.Since(time.Unix(0, sent)))
	}
}

// Serve reads the client's messages and hands each data message to handle, until the client
// closes the connection or breaks the protocol, the socket ends, or handle asks to end (its
// Reason, true). It answers pings and the close handshake itself and returns why it ended.
// Between messages it waits at a shallow depth, so an idle socket's goroutine keeps the
// smallest stack.
func (s *Socket) Serve(handle func(typ MessageType, data []byte) (Reason, bool)) Reason {
	var first [1]byte
	for {
		var src io.Reader
		if len(s.pre) == 0 {
			if n, err := s.nc.Read(first[:]); err != nil {
				return PeerGone
			} else if n == 0 {
				continue
			}
			src = io.MultiReader(bytes.NewReader(first[:]), s.nc)
		} else {
			src = io.MultiReader(bytes.NewReader(s.pre), s.nc)
			s.pre = nil
		}
		typ, data, why, ok := s.readMessage(src)
		if !ok {
			return why
		}
		if typ == 0 || s.sentClose.Load() {
			// Only control frames arrived, or a message came after meshbox's close frame:
			// RFC 6455 §5.5.1 lets it be discarded, and acting on it could not be answered.
			continue
		}
		if why, end := handle(typ, data); end {
			return why
		}
	}
}

// readMessage reads frames from src until a whole data message (typ 0: only control frames,
// which it handles). ok false ends the connection with why.
func (s *Socket) readMessage(src io.Reader) (typ MessageType, data []byte, why Reason, ok bool) {
	// A panic reading a message ends this connection, not the process: the reader goroutine
	// outlives the handler that the recoverer guards. (Deferred here, per message, rather than
	// in Serve, whose idle stack must stay small.)
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("panic reading a websocket message", "panic", v)
			typ, data, why, ok = 0, nil, Internal, false
		}
	}()
	state := ws.StateServerSide
	limit := s.readLimit.Load()
	for {
		h, err := ws.ReadHeader(src)
		if err != nil {
			return 0, nil, PeerGone, false
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return 0, nil, Protocol, false
		}
		if h.OpCode.IsControl() {
			p := make([]byte, h.Length) // at most 125 bytes (CheckHeader)
			if _, err := io.ReadFull(src, p); err != nil {
				return 0, nil, PeerGone, false
			}
			ws.Cipher(p, h.Mask, 0)
			switch h.OpCode {
			case ws.OpPing:
				if err := s.writeFrame(ws.OpPong, p); err != nil && !errors.Is(err, errClosing) {
					return 0, nil, PeerGone, false
				}
			case ws.OpPong:
				s.pong(p)
			case ws.OpClose:
				// The client's close: answered with its code (or our own if ours went first),
				// then the connection ends.
				code, text := ws.ParseCloseFrameData(p)
				if len(p) > 0 && (!validCloseCode(uint16(code)) || !utf8.ValidString(text)) {
					return 0, nil, Protocol, false
				}
				s.closeWith(PeerGone, uint16(code))
				return 0, nil, PeerGone, false
			}
			if !state.Fragmented() {
				return 0, nil, Reason{}, true
			}
			continue
		}
		if h.Length > limit-int64(len(data)) { // not len+Length: a hostile length would overflow
			return 0, nil, TooBig, false
		}
		if h.OpCode != ws.OpContinuation {
			typ = MessageType(h.OpCode)
		}
		// The payload grows as its bytes arrive, not by the length the client declared: a
		// client that declares the limit and sends a byte a minute holds a byte, not the limit.
		start := len(data)
		for left := h.Length; left > 0; {
			chunk := int(min(left, readChunk))
			n := len(data)
			data = slices.Grow(data, chunk)[:n+chunk]
			if _, err := io.ReadFull(src, data[n:]); err != nil {
				return 0, nil, PeerGone, false
			}
			left -= int64(chunk)
		}
		ws.Cipher(data[start:], h.Mask, 0)
		if h.Fin {
			// One check for every endpoint (native, Mesh v2 real-time): a text message is
			// UTF-8 (RFC 6455 §8.1), or the connection fails with 1007.
			if typ == Text && !utf8.Valid(data) {
				return 0, nil, BadFrame, false
			}
			return typ, data, Reason{}, true
		}
		state = state.Set(ws.StateFragmented)
	}
}

// Close ends the connection once, with a close frame carrying the reason, and unregisters
// it. The client's answer (or closeWait) ends the reader, whose owner then releases the
// socket.
func (s *Socket) Close(why Reason) {
	s.closeWith(why, 0)
}

// closeWith ends the socket for why. echo (non-zero) is the code of the client's close frame,
// which the server's close frame answers with; a client close without a code gets an empty
// one.
func (s *Socket) closeWith(why Reason, echo uint16) {
	s.ending.end(why, func() {
		s.log.Debug("websocket closed", "code", int(why.Code), "reason", why.Text)
		body := ws.NewCloseFrameBody(ws.StatusCode(why.Code), why.Text)
		switch {
		case echo != 0:
			body = ws.NewCloseFrameBody(ws.StatusCode(echo), "")
		case why == PeerGone:
			body = nil // the client closed without a code
		}
		// A write stuck behind a client that reads nothing fails at this deadline, and so does
		// the close frame: the socket ends either way.
		_ = s.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_ = s.writeFrame(ws.OpClose, body)
		_ = s.nc.SetReadDeadline(time.Now().Add(closeWait))
		s.unregister()
	})
}

// Drop ends the connection of a peer that no longer answers or reads, without the close
// handshake, which would wait for that peer.
func (s *Socket) Drop(why Reason) {
	s.ending.end(why, func() {
		s.log.Debug("websocket dropped", "code", int(why.Code), "reason", why.Text)
		s.dropped.Store(true)
		s.nc.Close()
		s.unregister()
	})
}

// unregister ends the socket's context and the ticker's visits.
func (s *Socket) unregister() {
	s.cancel()
	s.m.unwatch(s)
}

// Release ends the socket (without a handshake, if it has not ended yet: its reader is done,
// so nobody would read the answer), closes the connection and frees its registration; call
// it once the connection's goroutines are done.
func (s *Socket) Release(why Reason) {
	if s.sentClose.Load() && !s.dropped.Load() {
		s.linger()
	}
	s.Drop(why)
	s.nc.Close()
	s.Conn.Close()
}

// linger ends a connection whose close frame went out without losing what is on the way to
// the client. Closing a socket that has unread input makes Linux send a reset, which throws
// away what is still queued for the client — the items before the close, the close frame and
// its code (a 1009 would reach the client as 1006). So the server ends its side (FIN, after
// everything queued), then reads and discards until the client ends its side, closeWait
// passes or lingerMax bytes came, and only then closes.
func (s *Socket) linger() {
	if s.raw != nil {
		_ = s.raw.Control(shutdownWrite)
	}
	_ = s.nc.SetReadDeadline(time.Now().Add(closeWait))
	_, _ = io.CopyN(io.Discard, s.nc, lingerMax)
}

// validCloseCode reports whether a client may send code in a close frame (RFC 6455 §7.4 and
// the IANA registry): the defined codes but those that must never be on the wire (1004 is
// reserved; 1005, 1006 and 1015 only report what happened locally), and the ranges for
// libraries and applications (3000-4999). Anything else fails the connection with 1002.
func validCloseCode(code uint16) bool {
	switch {
	case code == 1004 || code == 1005 || code == 1006:
		return false
	case code >= 1000 && code <= 1014:
		return true
	}
	return code >= 3000 && code <= 4999
}
