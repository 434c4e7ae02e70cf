// Package ratelimit holds meshbox's keyed rate limits: one token bucket per key (a node, a
// client address), from golang.org/x/time/rate, with idle buckets forgotten.
package ratelimit

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sweepEvery is how often buckets that have refilled (and so hold no information) are dropped.
const sweepEvery = time.Minute

// Keyed limits events per key to a rate with a burst. The zero rate means unlimited.
type Keyed struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
	swept   time.Time
}

// New returns a limiter of perSecond events per key with the given burst (at least 1).
func New(perSecond float64, burst int) *Keyed {
	return &Keyed{limit: rate.Limit(perSecond), burst: max(burst, 1), buckets: map[string]*rate.Limiter{}}
}

// Enabled reports whether the limiter limits anything.
func (k *Keyed) Enabled() bool { return k != nil && k.limit > 0 }

// Allow takes one event from key's bucket at now; when none is left it reports how long until
// one is, and takes nothing.
func (k *Keyed) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	if !k.Enabled() {
		return true, 0
	}
	if r, wait := k.take(key, now); r == nil {
		return false, wait
	}
	return true, 0
}

// take takes one event from key's bucket at now and returns the reservation, which can still
// be cancelled (a request a later budget refuses); when none is left it returns nil, how long
// until one is, and takes nothing. k must be enabled.
func (k *Keyed) take(key string, now time.Time) (*rate.Reservation, time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.bucket(key, now).ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused event costs nothing
		return nil, d
	}
	return r, 0
}

// AllowN takes n units (bytes, say) from key's bucket at now; a cost above the burst costs the
// whole burst, so a large request passes once the bucket is full and then waits its share.
// When the bucket lacks them it reports how long until it has them, and takes nothing.
func (k *Keyed) AllowN(key string, now time.Time, n int) (ok bool, retryAfter time.Duration) {
	if !k.Enabled() {
		return true, 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	r := k.bucket(key, now).ReserveN(now, min(max(n, 1), k.burst))
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// ChargeN takes n units from key's bucket even when they are not there (see Charge).
func (k *Keyed) ChargeN(key string, now time.Time, n int) {
	if !k.Enabled() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bucket(key, now).ReserveN(now, min(max(n, 1), k.burst))
}

// Charge takes one event from key's bucket at now even when none is left (the bucket goes
// into debt, so the key's next events wait longer): for events that happened elsewhere and
// cannot be refused, such as another instance's.
func (k *Keyed) Charge(key string, now time.Time) {
	if !k.Enabled() {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.bucket(key, now).ReserveN(now, 1)
}

// bucket returns key's bucket, made when missing, after dropping (once a sweepEvery) the
// buckets that have refilled and so hold no information; k.mu is held.
func (k *Keyed) bucket(key string, now time.Time) *rate.Limiter {
	if now.Sub(k.swept) > sweepEvery {
		for key, b := range k.buckets {
			if b.TokensAt(now) >= float64(k.burst) {
				delete(k.buckets, key)
			}
		}
		k.swept = now
	}
	b := k.buckets[key]
	if b == nil {
		b = rate.NewLimiter(k.limit, k.burst)
		k.buckets[key] = b
	}
	return b
}

// Len is the number of buckets held (for tests of the sweep).
func (k *Keyed) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.buckets)
}
