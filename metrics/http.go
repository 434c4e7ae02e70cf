package metrics

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
)

// unmatchedRoute labels requests no route matched (404s, 405s), so scanners probing random
// paths add one series, not one per path.
const unmatchedRoute = "unmatched"

// InstrumentHTTP counts requests by route pattern, method and status and observes their
// duration. Use it as chi middleware: the pattern is read after the handler ran, when chi has
// resolved it. The wrapped writer keeps Flush and Hijack working, for SSE and WebSocket.
func (m *Metrics) InstrumentHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			route := unmatchedRoute
			if rc := chi.RouteContext(r.Context()); rc != nil {
				if p := rc.RoutePattern(); p != "" {
					route = p
				}
			}
			method := normalMethod(r.Method)
			m.httpRequests.WithLabelValues(route, method, strconv.Itoa(sw.code())).Inc()
			m.httpDuration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// normalMethod folds unknown methods into one label value, bounding cardinality.
func normalMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "other"
}

// statusWriter remembers the status code. It implements Flusher and Hijacker itself, because
// some libraries type-assert instead of unwrapping, and Unwrap for http.ResponseController.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// WriteHeader records the first status written.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Flush forwards to the underlying writer when it can flush.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack forwards to the underlying writer; a hijacked request is a protocol switch.
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

// Unwrap gives http.ResponseController access to the underlying writer (deadlines, etc.).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
