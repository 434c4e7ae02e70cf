// Package testclock is the hand-driven clock tests give to what takes a `Now func() time.Time`
// (the rules, the rate limits): time moves only when the test says, so nothing has to sleep
// for items to age or budgets to refill.
package testclock

import (
	"sync"
	"time"
)

// Clock is a clock that moves only by Advance. It is safe for concurrent use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// New returns a clock set to the current wall time.
func New() *Clock { return &Clock{now: time.Now()} }

// Now is the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}
