package server

import (
	"net/http"
	"sync"
	"time"
)

// limiter is a token bucket per key (client IP, node). A rate of 0 means unlimited.
type limiter struct {
	rate, burst float64
	mu          sync.Mutex
	buckets     map[string]*bucket
	swept       time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(rate, burst float64) *limiter {
	return &limiter{rate: rate, burst: max(burst, 1), buckets: map[string]*bucket{}}
}

// allow takes n tokens from key's bucket; when it cannot, it says how long until it could.
func (l *limiter) allow(key string, n float64, now time.Time) (bool, time.Duration) {
	if l.rate <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > time.Minute {
		// Forget buckets that have refilled: they hold no information.
		for k, b := range l.buckets {
			if b.tokens+now.Sub(b.last).Seconds()*l.rate >= l.burst {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[key] = b
	}
	b.tokens = min(l.burst, b.tokens+now.Sub(b.last).Seconds()*l.rate)
	b.last = now
	if b.tokens < n {
		return false, time.Duration((n - b.tokens) / l.rate * float64(time.Second))
	}
	b.tokens -= n
	return true, 0
}

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
		if r.Method != http.MethodOptions && s.ipRate.rate > 0 {
			if ok, wait := s.ipRate.allow(s.clientIP(r), 1, time.Now()); !ok {
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
