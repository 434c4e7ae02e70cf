package server

import (
	"net/http"
	"sync"
	"time"
)

// counter bounds concurrent streams per key. A limit of 0 means unlimited.
type counter struct {
	limit int
	mu    sync.Mutex
	open  map[string]int
}

func newCounter(limit int) *counter { return &counter{limit: limit, open: map[string]int{}} }

func (c *counter) acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit > 0 && c.open[key] >= c.limit {
		return false
	}
	c.open[key]++
	return true
}

func (c *counter) release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.open[key]--; c.open[key] <= 0 {
		delete(c.open, key)
	}
}

func rateLimited(what string, wait time.Duration) *apiError {
	return &apiError{status: http.StatusTooManyRequests, code: "rate_limited", msg: what + ": slow down and retry later", retryAfter: max(wait, time.Second)}
}

// limitIP applies the per-IP request rate to the API.
func (s *Server) limitIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodOptions && s.ipRate.Enabled() {
			if ok, wait := s.ipRate.Allow(s.clientIP(r), time.Now()); !ok {
				s.writeError(w, r, rateLimited("too many requests from "+s.clientIP(r), wait))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// openStream counts a stream against the caller's IP; release it when the stream ends.
func (s *Server) openStream(r *http.Request) (release func(), err error) {
	ip := s.clientIP(r)
	if !s.ipConns.acquire(ip) {
		return nil, &apiError{status: http.StatusTooManyRequests, code: "too_many_connections", msg: "too many open streams from " + ip, retryAfter: 5 * time.Second}
	}
	return func() { s.ipConns.release(ip) }, nil
}

// AcquireConn counts a long-lived connection served by another part (the Mesh v2 real-time
// socket) against the caller's address, under the same --max-conns-per-ip cap as native
// streams. ok is false when the caller is at the cap; otherwise call release when it ends.
func (s *Server) AcquireConn(r *http.Request) (release func(), ok bool) {
	release, err := s.openStream(r)
	return release, err == nil
}
