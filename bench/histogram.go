package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: each power of two is split into
// 2^subBits buckets, so a reported percentile is within 1/64 (≈1.6 %) of the
// true value while memory stays fixed however many samples arrive.
const subBits = 6

const (
	subCount = 1 << subBits
	// maxExp covers durations up to 2^41 ns (about 36 minutes); longer
	// samples land in the last bucket.
	maxExp     = 41 - subBits
	numBuckets = (maxExp + 1) * subCount
)

// histogram records durations into log-linear buckets. It is safe for
// concurrent use: thousands of reader goroutines record into one histogram
// with atomic adds, so no merging step and no per-reader memory is needed.
type histogram struct {
	buckets [numBuckets]atomic.Int64
	count   atomic.Int64
	sum     atomic.Int64
	max     atomic.Int64
}

// bucketOf maps a non-negative nanosecond value to its bucket index.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(v) - subBits
	if e > maxExp {
		return numBuckets - 1
	}
	return e*subCount + int(v>>(e-1)) - subCount
}

// bucketRange returns the smallest and largest value that map to bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < 2*subCount {
		return uint64(i), uint64(i)
	}
	e := i / subCount
	m := uint64(i%subCount + subCount)
	lo = m << (e - 1)
	hi = (m+1)<<(e-1) - 1
	return lo, hi
}

// Record adds one sample. Negative durations (clock steps) count as zero so
// they are visible in the count without distorting the percentiles.
func (h *histogram) Record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.buckets[bucketOf(uint64(v))].Add(1)
	h.count.Add(1)
	h.sum.Add(v)
	for {
		cur := h.max.Load()
		if v <= cur || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Count returns the number of recorded samples.
func (h *histogram) Count() int64 { return h.count.Load() }

// Quantile returns the value at quantile q (0 < q ≤ 1): the midpoint of the
// bucket holding the sample of that rank, never above the exact maximum.
func (h *histogram) Quantile(q float64) time.Duration {
	n := h.count.Load()
	if n == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(n)))
	if rank < 1 {
		rank = 1
	}
	var seen int64
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		if seen >= rank {
			lo, hi := bucketRange(i)
			mid := time.Duration(lo + (hi-lo)/2)
			if m := time.Duration(h.max.Load()); mid > m {
				return m
			}
			return mid
		}
	}
	return time.Duration(h.max.Load())
}

// Summary condenses the histogram into the figures the report prints.
func (h *histogram) Summary() *LatencySummary {
	n := h.count.Load()
	if n == 0 {
		return nil
	}
	return &LatencySummary{
		Count: n,
		Mean:  ms(time.Duration(h.sum.Load() / n)),
		P50:   ms(h.Quantile(0.50)),
		P90:   ms(h.Quantile(0.90)),
		P99:   ms(h.Quantile(0.99)),
		Max:   ms(time.Duration(h.max.Load())),
	}
}

// LatencySummary is a latency distribution in milliseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"meanMs"`
	P50   float64 `json:"p50Ms"`
	P90   float64 `json:"p90Ms"`
	P99   float64 `json:"p99Ms"`
	Max   float64 `json:"maxMs"`
}

// ms converts a duration to fractional milliseconds rounded to microseconds.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/1e3) / 1e3
}
