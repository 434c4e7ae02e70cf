package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// heapFloorBytes is how far above the live heap the garbage collector's goal is kept at least.
// meshbox's live heap is small (a few MiB with a class or two connected), and with GOGC's
// default the collector ran whenever as much again was allocated: some 40 cycles a second at
// 32 publishers, about a fifth of the CPU of a publish (docs/PERFORMANCE.md, "Publish
// from outside, after issue 26"). A floor this size costs at most that much memory, and
// nothing once the live heap is large (10,000 idle connections): there GOGC's own goal is the
// larger one.
const heapFloorBytes = 16 << 20

// heapFloor raises GOGC, after every collection, just enough that the next goal is at least
// floor bytes above the live heap, and never lowers it below the default 100. A memory limit
// (--memory-limit) still bounds the heap: the runtime collects as it nears the limit whatever
// GOGC says.
type heapFloor struct {
	floor  uint64
	base   int
	sample []metrics.Sample
	// mu guards percent and stopped: stop's restored percent is the last one set.
	mu      sync.Mutex
	percent int
	stopped bool
}

// gcSentinel is garbage as soon as it is made; its finalizer runs once a collection found it,
// so it marks the end of every cycle (a pointer field keeps it out of the tiny allocator,
// whose blocks may be kept alive by their neighbours).
type gcSentinel struct{ h *heapFloor }

// startHeapFloor keeps the collector's goal at least floor bytes above the live heap until
// stop, which restores the default percent. It does nothing when the operator set GOGC.
func startHeapFloor(floor uint64, gogcSet bool) (stop func()) {
	if gogcSet || floor == 0 {
		return func() {}
	}
	// Without GOGC the percent is the runtime's default, and nothing else in meshbox sets it.
	const base = 100
	h := &heapFloor{floor: floor, base: base, percent: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	h.arm()
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.stopped = true
		debug.SetGCPercent(h.base)
	}
}

func (h *heapFloor) arm() {
	runtime.SetFinalizer(&gcSentinel{h: h}, func(s *gcSentinel) {
		if s.h.adjust() {
			s.h.arm()
		}
	})
}

// adjust sets the percent for the live heap the last cycle left, and reports whether to go
// on; it runs on the finalizer goroutine, so it only reads one metric and, when the percent
// moves by more than a tenth, sets it.
func (h *heapFloor) adjust() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	metrics.Read(h.sample)
	if h.sample[0].Value.Kind() != metrics.KindUint64 {
		return false // no such metric in this runtime: leave GOGC alone
	}
	live := max(h.sample[0].Value.Uint64(), 1<<20)
	want := max(h.base, int(min(h.floor*100/live, 10000)))
	if want*10 < h.percent*9 || want*10 > h.percent*11 {
		h.percent = want
		debug.SetGCPercent(want)
	}
	return true
}
