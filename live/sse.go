package live

import (
	"net/http"
	"strconv"
	"time"
)

// SSE writes one Server-Sent Events stream: every SSE response of meshbox (native streams and
// the dashboard) is written through it, so the headers, the framing, the write deadline and
// the flush are the same everywhere.
type SSE struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     []byte
}

// StartSSE sends the stream's headers (200, text/event-stream, no caching or proxy buffering)
// and a retry hint in milliseconds (0: none). Writes that take longer than the manager's
// write timeout fail, which ends the stream (a slow client).
func (m *Manager) StartSSE(w http.ResponseWriter, retry time.Duration) *SSE {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &SSE{w: w, rc: http.NewResponseController(w), timeout: m.cfg.WriteTimeout}
	if retry > 0 {
		s.Retry(retry)
	}
	return s
}

// AppendEvent appends one event to b: an optional id (id < 0: none), its name and one data
// line. data must hold no newline (JSON never holds a raw one).
func AppendEvent(b []byte, id int64, event string, data []byte) []byte {
	if id >= 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// Event buffers one event (see AppendEvent); Flush sends it.
func (s *SSE) Event(id int64, event string, data []byte) { s.buf = AppendEvent(s.buf, id, event, data) }

// Comment buffers a comment line (a heartbeat, or a first sign of life for proxies).
func (s *SSE) Comment(text string) {
	s.buf = append(s.buf, ": "...)
	s.buf = append(s.buf, text...)
	s.buf = append(s.buf, "\n\n"...)
}

// Retry buffers the reconnection delay an EventSource waits.
func (s *SSE) Retry(d time.Duration) {
	s.buf = append(s.buf, "retry: "...)
	s.buf = strconv.AppendInt(s.buf, d.Milliseconds(), 10)
	s.buf = append(s.buf, "\n\n"...)
}

// Raw buffers bytes already framed as events (a message encoded once for many streams).
func (s *SSE) Raw(b []byte) { s.buf = append(s.buf, b...) }

// Flush writes what is buffered within the write timeout and flushes it to the client.
func (s *SSE) Flush() error {
	if len(s.buf) == 0 {
		return nil
	}
	// Errors only where deadlines are unsupported (test recorders); then there is none.
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.timeout))
	_, err := s.w.Write(s.buf)
	s.buf = s.buf[:0]
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

// Shutdown tells the client the server is restarting and to come back in a second; an
// EventSource reconnects by itself.
func (s *SSE) Shutdown() error {
	s.Retry(time.Second)
	s.Event(-1, "shutdown", []byte(`{"type":"shutdown"}`))
	return s.Flush()
}
