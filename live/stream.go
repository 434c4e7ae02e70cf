package live

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// Stream is a Server-Sent Events response over a hijacked connection. Once its headers are
// out the HTTP server lets go of the connection, so an idle stream holds no handler
// goroutine, no request and no buffers: the socket, a small goroutine that notices the
// client closing it (Serve), and what its owner keeps. Writes are serialised and timed by
// the manager's ticker like a WebSocket's, which drops a stream whose client stopped
// reading; the ticker also sends its heartbeat. Every SSE response of meshbox (native
// streams and the dashboard) is written through it, so the headers, the framing and the
// slow-client policy are the same everywhere.
type Stream struct {
	*Conn
	writeGuard
	nc      net.Conn
	raw     syscall.RawConn // nc's descriptor, for writes that never wait (Offer); nil: none
	chunked bool            // HTTP/1.1: the body is chunked; HTTP/1.0: it ends with the connection
	log     *slog.Logger

	heartbeat atomic.Pointer[func()]
	ending
}

// busyRetry is the reconnection delay an SSE stream closed for Busy is given.
const busyRetry = 5 * time.Second

// ErrNoHijack means the response cannot be taken over (not HTTP/1.x).
var ErrNoHijack = errors.New("streaming needs an HTTP/1.x connection")

// StartStream registers an SSE stream of transport for client address addr ("": charged to
// nobody), sends its headers (200, text/event-stream, no caching or proxy buffering, with
// those already set on w) and first, framed events to send with them (a retry hint, a first
// sign of life), and takes the connection over from the HTTP server. An error that came
// before anything was sent (ErrTooManyConns, ErrShuttingDown, ErrNoHijack) is the caller's to
// answer; one after (Answered) has nobody left to tell. The stream's context does not end with the request: the connection outlives its
// handler. Call Serve on some goroutine, and Release when done.
func (m *Manager) StartStream(w http.ResponseWriter, r *http.Request, addr, transport string, first []byte, log *slog.Logger) (*Stream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if r.ProtoMajor != 1 {
		return nil, ErrNoHijack // checked before the headers are set: the caller can answer
	}
	st := &Stream{log: log, chunked: r.ProtoAtLeast(1, 1)}
	// Shutdown says goodbye (come back in a second) rather than cutting the connection;
	// ready holds it back until the stream is set up.
	ready := make(chan struct{})
	c, err := m.open(context.Background(), addr, transport, func() { <-ready; st.Close(Shutdown) })
	if err != nil {
		return nil, err
	}
	st.Conn = c
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	h.Del("Content-Length")
	// The status and headers are net/http's (it writes them as the connection is taken over,
	// chunked for HTTP/1.1 as for any streamed response); the body is written here.
	w.WriteHeader(http.StatusOK)
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		st.end(Reason{}, func() {}) // the shutdown hook has nothing to close
		close(ready)
		c.Close()
		return nil, answered{"start stream", err}
	}
	_ = brw // what the client sent after its request is of no use: an SSE client sends nothing
	st.nc = nc
	st.raw = rawOf(nc)
	if len(first) > 0 {
		if err := st.Write(first); err != nil {
			st.end(Reason{}, func() {})
			close(ready)
			nc.Close()
			c.Close()
			return nil, answered{"start stream", err}
		}
	}
	m.watch(st, c)
	close(ready)
	return st, nil
}

// OnHeartbeat sets what the ticker does each interval on this stream (write a ping event or
// a comment, so proxies keep it open and its round trip can be measured).
func (st *Stream) OnHeartbeat(f func()) { st.heartbeat.Store(&f) }

// tick runs the heartbeat on a short-lived goroutine: it writes, which may block.
func (st *Stream) tick(time.Duration) {
	if f := st.heartbeat.Load(); f != nil {
		go (*f)()
	}
}

// Write sends b, framed events (see AppendEvent), in one write. Like a WebSocket's, it arms
// no timer: the manager's ticker drops a stream whose write stalls (Slow).
func (st *Stream) Write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return st.write(st.Conn, func() error {
		if !st.chunked {
			_, err := st.nc.Write(b)
			return err
		}
		// One chunk per write: its size line, the events, the chunk's end, in one syscall.
		f := st.m.frame()
		defer st.m.putFrame(f)
		f.b = appendChunk(f.b, b)
		_, err := st.nc.Write(f.b)
		return err
	})
}

// Offer sends b like Write, but never waits, for the client or for another write: when the
// connection's socket buffer takes only part of it (the client reads slowly), or another
// write is in progress, Offer returns finish, which writes the rest (or all of it), waiting
// as Write does. The caller must run finish, on a goroutine that may wait, before it writes
// anything more.
func (st *Stream) Offer(b []byte) (finish func() error, err error) {
	if len(b) == 0 {
		return nil, nil
	}
	f := st.m.frame()
	if st.chunked {
		f.b = appendChunk(f.b, b)
	} else {
		f.b = append(f.b, b...)
	}
	return st.offer(st.Conn, st.nc, st.raw, f, nil)
}

// appendChunk appends b as one chunk of a chunked HTTP/1.1 body.
func appendChunk(frame, b []byte) []byte {
	frame = strconv.AppendInt(frame, int64(len(b)), 16)
	frame = append(frame, "\r\n"...)
	frame = append(frame, b...)
	return append(frame, "\r\n"...)
}

// Serve reads what the client sends (an SSE client sends nothing) until it closes the
// connection or the stream ends, and returns why it ended. Its stack stays small: it is the
// one goroutine an idle stream holds.
func (st *Stream) Serve() Reason {
	var b [64]byte
	for {
		if _, err := st.nc.Read(b[:]); err != nil {
			break
		}
	}
	st.Drop(PeerGone)
	return st.Reason()
}

// Close ends the stream once: at shutdown it first tells the client to come back in a
// second (an EventSource reconnects by itself); every close ends the body properly so the
// client sees a complete response. A stalled write in progress is cut off after a second.
func (st *Stream) Close(why Reason) {
	st.ending.end(why, func() {
		st.log.Debug("stream closed", "reason", why.Text)
		// A write stuck behind a client that reads nothing fails at this deadline, and so does
		// the goodbye: the stream closes either way.
		_ = st.nc.SetWriteDeadline(time.Now().Add(time.Second))
		var bye []byte
		switch {
		case why == Shutdown:
			bye = AppendEvent(AppendRetry(nil, time.Second), -1, "shutdown", []byte(`{"type":"shutdown"}`))
		case why.Code == GoneCode:
			// The node left its group: say why, so a client stops instead of reconnecting
			// (a plain EventSource that does reconnect gets 401 and stops there).
			bye = AppendEvent(nil, -1, "gone", goneData(why.Text))
		case why == Busy:
			// An EventSource reconnects by itself: the retry hint spaces it out, so a crowded
			// server is not asked again at once.
			bye = AppendEvent(AppendRetry(nil, busyRetry), -1, "busy", []byte(`{"type":"busy","reason":"`+Busy.Text+`"}`))
		}
		st.write(st.Conn, func() error {
			if len(bye) > 0 {
				if st.chunked {
					bye = appendChunk(nil, bye)
				}
				if _, err := st.nc.Write(bye); err != nil {
					return err
				}
			}
			if st.chunked {
				_, err := io.WriteString(st.nc, "0\r\n\r\n")
				return err
			}
			return nil
		})
		st.unregister()
	})
}

// goneData is the data of the "gone" event: {"type":"gone","reason":"removed"}.
func goneData(reason string) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Reason string `json:"reason"`
	}{"gone", reason})
	return b
}

// Drop ends the stream at once, without a goodbye (the client is gone or reads nothing).
func (st *Stream) Drop(why Reason) {
	st.ending.end(why, func() {
		st.log.Debug("stream dropped", "reason", why.Text)
		st.unregister()
	})
}

// unregister ends the stream's context and the ticker's visits, and closes the connection.
func (st *Stream) unregister() {
	st.cancel()
	st.nc.Close()
	st.m.unwatch(st)
}

// Release ends the stream (dropping it if it has not ended) and frees its registration; call
// it once the stream's goroutines are done.
func (st *Stream) Release(why Reason) {
	st.Drop(why)
	st.Conn.Close()
}
