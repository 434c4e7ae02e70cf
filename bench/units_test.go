package bench

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(v uint64) {
		i := bucketOf(v)
		lo, hi := bucketRange(i)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, i, lo, hi)
		}
		if v >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subCount+1e-9 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d of its value", i, lo, hi, subCount)
		}
	}
	for v := uint64(0); v < 5000; v++ {
		check(v)
	}
	for range 100000 {
		check(rng.Uint64N(1 << 40))
	}
	// Buckets tile the range: each starts right after the previous ends.
	for i := 1; i < numBuckets; i++ {
		_, prevHi := bucketRange(i - 1)
		lo, _ := bucketRange(i)
		if lo != prevHi+1 {
			t.Fatalf("gap before bucket %d: previous ends %d, this starts %d", i, prevHi, lo)
		}
	}
}

func TestHistogramQuantilesMatchExact(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var h histogram
	var exact []time.Duration
	for range 50000 {
		// Log-normal around 2 ms, like real latencies with a long tail.
		d := time.Duration(math.Exp(rng.NormFloat64()*1.2) * 2e6)
		h.Record(d)
		exact = append(exact, d)
	}
	slices.Sort(exact)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := exact[int(math.Ceil(q*float64(len(exact))))-1]
		got := h.Quantile(q)
		if rel := math.Abs(float64(got-want)) / float64(want); rel > 0.02 {
			t.Errorf("q%.3f = %v, exact %v (%.1f%% off)", q, got, want, 100*rel)
		}
	}
	if got, want := h.Quantile(1), exact[len(exact)-1]; got != want {
		t.Errorf("max quantile %v, want exact max %v", got, want)
	}
	s := h.Summary()
	if s.Count != 50000 || s.Max != ms(exact[len(exact)-1]) {
		t.Errorf("summary %+v", s)
	}
	var empty histogram
	if empty.Summary() != nil || empty.Quantile(0.5) != 0 {
		t.Error("empty histogram should have no summary")
	}
	h.Record(-time.Second) // a clock step counts as zero, not a panic
	if h.Count() != 50001 {
		t.Error("negative sample not counted")
	}
}

func TestTrackerClassifiesDeliveries(t *testing.T) {
	t.Parallel()
	var tr tracker
	// cursor, ours, want new
	steps := []struct {
		c    int64
		ours bool
		new  bool
	}{
		{10, true, true},
		{11, false, true}, // someone else's item: in order, not counted
		{13, true, true},
		{13, true, false}, // duplicate of the last
		{10, true, false}, // duplicate of an older one
		{12, true, true},  // never seen but late: out of order
		{20, true, true},
	}
	for i, s := range steps {
		if got := tr.observe(s.c, s.ours); got != s.new {
			t.Fatalf("step %d (cursor %d): new = %v, want %v", i, s.c, got, s.new)
		}
	}
	if m, d, o := tr.matched.Load(), tr.duplicate.Load(), tr.outOfOrder.Load(); m != 4 || d != 2 || o != 1 {
		t.Fatalf("matched %d duplicate %d out-of-order %d, want 4 2 1", m, d, o)
	}
}

func TestTrackerWindowWraps(t *testing.T) {
	t.Parallel()
	var tr tracker
	for c := int64(1); c <= 3*windowSize; c++ {
		tr.observe(c*2, true)
	}
	// Recent even cursors are duplicates, odd ones never arrived.
	if tr.observe(6*windowSize-10, true) || !tr.observe(6*windowSize-9, true) {
		t.Fatal("window lookup after wrap is wrong")
	}
	if tr.duplicate.Load() != 1 || tr.outOfOrder.Load() != 1 {
		t.Fatalf("duplicate %d out-of-order %d", tr.duplicate.Load(), tr.outOfOrder.Load())
	}
}

func TestStampRoundTrip(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 123456789)
	for _, size := range []int{0, 10, 64, 300} {
		p := stamp("ab12", now, size)
		if size > 30 && len(p) != size {
			t.Errorf("size %d: payload length %d", size, len(p))
		}
		got, ok := parseStamp("ab12", p)
		if !ok || !got.Equal(now) {
			t.Errorf("size %d: parse %q = %v %v", size, p, got, ok)
		}
	}
	for _, bad := range []string{"", "ab12", "ab13:1:", "ab12:x:", "ab1:12:", "xab12:1"} {
		if _, ok := parseStamp("ab12", bad); ok {
			t.Errorf("parseStamp accepted %q", bad)
		}
	}
}

func TestSSEScanner(t *testing.T) {
	t.Parallel()
	stream := ": connected\n" +
		"retry: 1000\n\n" + // no data: not dispatched
		"id: 5\nevent: event\ndata: {\"cursor\":5}\n\n" +
		": heartbeat\n\n" +
		"id:6\r\nevent:data\r\ndata:line1\r\ndata: line2\r\n\r\n" +
		"data\n\n" + // a field without a colon: empty data
		"event: reset\ndata: {}\n\n" +
		"id: 9\ndata: unterminated"
	want := []sseEvent{
		{ID: "5", Event: "event", Data: []byte(`{"cursor":5}`)},
		{ID: "6", Event: "data", Data: []byte("line1\nline2")},
		{Data: []byte("")},
		{Event: "reset", Data: []byte("{}")},
	}
	// One byte per read proves events split across reads are reassembled.
	for name, r := range map[string]io.Reader{
		"whole":   strings.NewReader(stream),
		"onebyte": iotest.OneByteReader(strings.NewReader(stream)),
	} {
		sc := newSSEScanner(r)
		for i, w := range want {
			ev, err := sc.Next()
			if err != nil {
				t.Fatalf("%s: event %d: %v", name, i, err)
			}
			if ev.ID != w.ID || ev.Event != w.Event || !bytes.Equal(ev.Data, w.Data) {
				t.Fatalf("%s: event %d = %q %q %q, want %q %q %q", name, i, ev.ID, ev.Event, ev.Data, w.ID, w.Event, w.Data)
			}
		}
		if _, err := sc.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("%s: after last event: %v, want unexpected EOF for the unterminated one", name, err)
		}
	}
}

func TestSSEScannerLongLine(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", 100<<10)
	sc := newSSEScanner(strings.NewReader("data: " + big + "\n\n"))
	ev, err := sc.Next()
	if err != nil || string(ev.Data) != big {
		t.Fatalf("long line: len %d err %v", len(ev.Data), err)
	}
	if _, err := sc.Next(); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
}

func FuzzSSEScanner(f *testing.F) {
	f.Add("id: 1\nevent: x\ndata: y\n\n")
	f.Add(":c\r\n\r\ndata\n\n")
	f.Fuzz(func(t *testing.T, s string) {
		sc := newSSEScanner(strings.NewReader(s))
		for range len(s) + 1 {
			if _, err := sc.Next(); err != nil {
				return
			}
		}
		t.Fatal("more events than bytes")
	})
}

func TestProcParsing(t *testing.T) {
	t.Parallel()
	stat := []byte("1234 (my (odd) prog) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 100 1000000 500 18446744073709551615")
	cpu, err := parseStatCPU(stat)
	if err != nil || cpu != 3*time.Second {
		t.Fatalf("cpu = %v, %v; want 3s (300 ticks)", cpu, err)
	}
	if _, err := parseStatCPU([]byte("garbage")); err == nil {
		t.Fatal("garbage stat accepted")
	}
	rss, err := parseStatusRSS([]byte("Name:\tx\nVmPeak:\t  9 kB\nVmRSS:\t  2048 kB\n"))
	if err != nil || rss != 2048<<10 {
		t.Fatalf("rss = %d, %v", rss, err)
	}
	if _, err := parseStatusRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("status without VmRSS accepted")
	}
	s, err := sampleProc(os.Getpid())
	if err != nil || s.rss <= 0 {
		t.Fatalf("sample own process: %+v %v", s, err)
	}
}

func TestMachineBusyIsAShare(t *testing.T) {
	t.Parallel()
	b := machineBusy(t.Context(), 50*time.Millisecond)
	if b < 0 || b > 1 {
		t.Fatalf("busy share %v outside [0, 1]", b)
	}
}

func TestParsePIDs(t *testing.T) {
	self := os.Getpid()
	got, err := parsePIDs(fmt.Sprintf(" nats=12, %d ,", self))
	if err != nil || len(got) != 2 || got[0] != (procLabel{name: "nats", pid: 12}) || got[1].pid != self ||
		!strings.HasSuffix(got[1].name, " "+strconv.Itoa(self)) || strings.HasPrefix(got[1].name, "pid ") {
		t.Fatalf("parsePIDs = %+v, %v", got, err)
	}
	for _, bad := range []string{"x", "a=0", "a=-3", "=1x"} {
		if _, err := parsePIDs(bad); err == nil {
			t.Errorf("parsePIDs(%q) took it", bad)
		}
	}
}
