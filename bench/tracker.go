package bench

import (
	"sort"
	"sync/atomic"
)

// windowSize bounds how many recent cursors a reader remembers to tell a
// duplicate from an out-of-order item; a violation further back than this is
// counted as out of order. It keeps memory per reader fixed (8 KiB).
const windowSize = 1024

// tracker checks one reader's view of a group stream: every item must
// arrive exactly once and in cursor order. It is owned by the reader's
// goroutine; only the counters the progress loop polls are atomic.
type tracker struct {
	last   int64
	window [windowSize]int64 // ring of the last in-order cursors, ascending
	wlen   int
	wnext  int

	// unordered, when set, replaces the order checks: every number seen is remembered, so
	// duplicates are exact and order is not judged (ntfy numbers messages in no order the
	// tool can check; see ntfy.go).
	unordered map[int64]struct{}

	matched    atomic.Int64 // distinct items of this run received
	duplicate  atomic.Int64
	outOfOrder atomic.Int64
}

// observe records an item with the given cursor; ours says whether the
// item belongs to this bench run (and so counts toward delivery). It
// reports whether the item is new (not a duplicate).
func (t *tracker) observe(cursor int64, ours bool) bool {
	if t.unordered != nil {
		if _, dup := t.unordered[cursor]; dup {
			t.duplicate.Add(1)
			return false
		}
		t.unordered[cursor] = struct{}{}
		t.last = max(t.last, cursor)
		if ours {
			t.matched.Add(1)
		}
		return true
	}
	switch {
	case cursor > t.last:
		t.last = cursor
		t.window[t.wnext] = cursor
		t.wnext = (t.wnext + 1) % windowSize
		if t.wlen < windowSize {
			t.wlen++
		}
	case t.seen(cursor):
		t.duplicate.Add(1)
		return false
	default:
		t.outOfOrder.Add(1)
	}
	if ours {
		t.matched.Add(1)
	}
	return true
}

// seen reports whether cursor is in the window of recent in-order cursors.
func (t *tracker) seen(cursor int64) bool {
	start := (t.wnext - t.wlen + windowSize) % windowSize
	at := func(i int) int64 { return t.window[(start+i)%windowSize] }
	i := sort.Search(t.wlen, func(i int) bool { return at(i) >= cursor })
	return i < t.wlen && at(i) == cursor
}
