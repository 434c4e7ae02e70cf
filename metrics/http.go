package metrics

import (
	"bufio"
	"maps"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
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
			c := m.httpSeries(chi.RouteContext(r.Context()), normalMethod(r.Method), sw.code())
			c.requests.Inc()
			c.duration.Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// httpKey identifies a request's series: the pattern parts chi matched (the route is a
// function of them), the method and the status.
type httpKey struct {
	parts  [4]string
	method string
	code   int
}

// httpChildren are the series of one httpKey.
type httpChildren struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

// httpCacheMax bounds the series cache; the routes, methods and statuses are few.
const httpCacheMax = 1024

// httpSeries returns the request's series, resolved once per key: every request (each
// long-poll cycle among them) would otherwise join its route pattern and hash its labels.
// The cache is copied on write and read without a lock.
func (m *Metrics) httpSeries(rc *chi.Context, method string, code int) httpChildren {
	k := httpKey{method: method, code: code}
	cacheable := rc == nil || len(rc.RoutePatterns) <= len(k.parts)
	if cacheable && rc != nil {
		copy(k.parts[:], rc.RoutePatterns)
	}
	if cacheable {
		if by := m.httpBy.Load(); by != nil {
			if c, ok := (*by)[k]; ok {
				return c
			}
		}
	}
	route := unmatchedRoute
	if rc != nil {
		if p := rc.RoutePattern(); p != "" {
			route = p
		}
	}
	c := httpChildren{
		requests: m.httpRequests.WithLabelValues(route, method, strconv.Itoa(code)),
		duration: m.httpDuration.WithLabelValues(route, method),
	}
	if cacheable {
		m.httpMu.Lock()
		var old map[httpKey]httpChildren
		if by := m.httpBy.Load(); by != nil {
			old = *by
		}
		if _, ok := old[k]; !ok && len(old) < httpCacheMax { // another request may have added it
			next := make(map[httpKey]httpChildren, len(old)+1)
			maps.Copy(next, old)
			next[k] = c
			m.httpBy.Store(&next)
		}
		m.httpMu.Unlock()
	}
	return c
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
