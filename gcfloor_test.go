package main

import (
	"runtime"
	"runtime/metrics"
	"testing"
)

func gogcPercent(t *testing.T) int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		t.Skip("this runtime has no /gc/gogc:percent")
	}
	return int(s[0].Value.Uint64())
}

// collectUntil runs collections (each one runs the floor's end-of-cycle hook) until cond
// holds, a bounded number of times.
func collectUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 1000 {
			t.Fatalf("GOGC is still %d after 1,000 collections", gogcPercent(t))
		}
		runtime.GC()
		runtime.Gosched()
	}
}

// The heap floor raises GOGC after a collection that left a small live heap, so the next goal
// is the floor above it; stopping it puts the default back. Not parallel: GOGC is the process's.
func TestHeapFloorRaisesGOGCForASmallHeap(t *testing.T) {
	stop := startHeapFloor(64<<20, false)
	collectUntil(t, func() bool { return gogcPercent(t) > 100 })
	stop()
	if got := gogcPercent(t); got != 100 {
		t.Errorf("GOGC after stop = %d, want 100", got)
	}
}

// An operator's GOGC is left alone.
func TestHeapFloorLeavesAnOperatorsGOGC(t *testing.T) {
	stop := startHeapFloor(64<<20, true)
	defer stop()
	for range 20 {
		runtime.GC()
	}
	if got := gogcPercent(t); got != 100 {
		t.Errorf("GOGC = %d with the operator's GOGC set, want it untouched (100)", got)
	}
}
