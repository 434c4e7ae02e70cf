package server

import (
	"context"
	"net/http"
	"time"

	"golang.org/x/sync/semaphore"

	"meshbox/apierror"
)

// smallBody is the largest body that decodes from the small pool. Every request a classroom
// client makes in the ordinary way (a publish, a data change, a join, a Mesh v2 mutation) is
// far below it.
const smallBody = 64 << 10

// decodeWait is how long a body waits for room in the budget before it is refused as busy.
const decodeWait = 2 * time.Second

// decodeBudget bounds the bytes of request bodies being read and decoded at once, on every
// route (the native API, /graphql and the dashboard alike): each request holds its body's
// length (its Content-Length, or the largest body when it sends none) from before its first
// byte is read until its handler returns. Each body alone is bounded by --max-body and by
// what it may decode into (bounded.go, meshv2's variables), but many of them at once still
// added up: eight 4 MiB bodies took the box past a gigabyte. Past the budget a body waits
// briefly, then gets 503 busy with Retry-After.
//
// Bodies up to smallBody draw on a pool of their own, a quarter of the budget's size, so a
// classmate's ordinary request never queues behind a few big bodies (a semaphore serves its
// waiters in order: one big waiter would hold up every small one behind it).
type decodeBudget struct {
	large, small         *semaphore.Weighted
	largeSize, smallSize int64
	maxBody              int64
}

// newDecodeBudget returns the budget of total bytes, or nil (no budget) when total is 0.
func newDecodeBudget(total, maxBody int64) *decodeBudget {
	if total <= 0 {
		return nil
	}
	small := max(total/4, smallBody)
	return &decodeBudget{
		large: semaphore.NewWeighted(total), small: semaphore.NewWeighted(small),
		largeSize: total, smallSize: small, maxBody: maxBody,
	}
}

// errBusyDecoding answers a body that found no room in the budget in time.
func errBusyDecoding() *apierror.Error {
	return &apierror.Error{Status: http.StatusServiceUnavailable, Code: "busy",
		Msg: "the server is reading as many request bodies as it can hold: retry shortly", RetryAfter: time.Second}
}

// acquire takes room for a body of n bytes (n < 0: length unknown), waiting up to
// decodeWait; release gives it back.
func (b *decodeBudget) acquire(ctx context.Context, n int64) (release func(), err error) {
	if n < 0 || n > b.maxBody {
		n = b.maxBody // a longer body is refused once it passes --max-body, never read further
	}
	pool, size := b.large, b.largeSize
	if n <= smallBody {
		pool, size = b.small, b.smallSize
	}
	n = min(n, size) // a body larger than the pool takes all of it, alone
	if !pool.TryAcquire(n) {
		wctx, cancel := context.WithTimeout(ctx, decodeWait)
		err := pool.Acquire(wctx, n)
		cancel()
		if err != nil {
			return nil, errBusyDecoding()
		}
	}
	return func() { pool.Release(n) }, nil
}

// decoding charges each request with a body to the decode budget (see decodeBudget).
func (s *Server) decoding(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.budget == nil || r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
			next.ServeHTTP(w, r)
			return
		}
		release, err := s.budget.acquire(r.Context(), r.ContentLength)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer release()
		next.ServeHTTP(w, r)
	})
}
