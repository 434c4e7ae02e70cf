package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runJSON runs the tool with -json and decodes its result.
func runJSON(t *testing.T, args ...string) *Result {
	t.Helper()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Run(ctx, append(args, "-json"), &out)
	if err != nil {
		t.Fatalf("Run %v: %v\n%s", args, err, out.String())
	}
	var r Result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	return &r
}

// assertComplete checks that every reader got every published item once,
// in order.
func assertComplete(t *testing.T, r *Result, readersPerItem int64) {
	t.Helper()
	if r.Published == 0 {
		t.Fatalf("nothing published: %+v", r)
	}
	if r.Expected != r.Published*readersPerItem || r.Delivered != r.Expected {
		t.Fatalf("published %d, expected %d, delivered %d (readers per item %d)", r.Published, r.Expected, r.Delivered, readersPerItem)
	}
	if r.Missing+r.Duplicate+r.OutOfOrder+r.Unexpected+r.Resets != 0 {
		t.Fatalf("loss or disorder: %+v", r)
	}
	if r.Latency == nil || r.Latency.Count != r.Delivered || r.Latency.P99 <= 0 || r.Latency.P50 > r.Latency.P99 {
		t.Fatalf("latency %+v for %d deliveries", r.Latency, r.Delivered)
	}
}

func TestFanoutEveryTransportAgainstFake(t *testing.T) {
	t.Parallel()
	for _, tr := range []string{transportWS, transportSSE, transportPoll} {
		t.Run(tr, func(t *testing.T) {
			t.Parallel()
			_, srv := newFakeMeshbox(t)
			r := runJSON(t, "-url", srv.URL, "-scenario", "fanout", "-transport", tr, "-readers", "12",
				"-streams-per-node", "5", "-rate", "100", "-duration", "300ms", "-warmup", "0", "-drain", "5s")
			assertComplete(t, r, 12)
			if r.Readers != 12 || r.Transport != tr || r.Published < 20 {
				t.Fatalf("result %+v", r)
			}
		})
	}
}

func TestFanoutReportsLossAndDuplicates(t *testing.T) {
	t.Parallel()
	f, srv := newFakeMeshbox(t)
	var dropped, duped int64
	f.fault = func(c int64) string {
		switch {
		case c%7 == 0:
			return "drop"
		case c%5 == 0:
			return "dup"
		}
		return ""
	}
	r := runJSON(t, "-url", srv.URL, "-scenario", "fanout", "-readers", "6", "-streams-per-node", "3",
		"-rate", "200", "-duration", "300ms", "-warmup", "0", "-drain", "300ms")
	// Count the faulted event cursors the fake actually stored.
	f.mu.Lock()
	g := f.groups["g1"]
	for i, c := range g.cursors {
		if g.kinds[i] != "event" {
			continue
		}
		if c%7 == 0 {
			dropped++
		} else if c%5 == 0 {
			duped++
		}
	}
	f.mu.Unlock()
	if dropped == 0 || duped == 0 {
		t.Fatalf("test published too little to hit both faults (%d events)", r.Published)
	}
	if r.Missing != dropped*6 || r.Duplicate != duped*6 || r.Delivered != (r.Published-dropped)*6 {
		t.Fatalf("missing %d duplicate %d delivered %d; want %d %d %d", r.Missing, r.Duplicate, r.Delivered,
			dropped*6, duped*6, (r.Published-dropped)*6)
	}
}

func TestPublishAgainstFake(t *testing.T) {
	t.Parallel()
	_, srv := newFakeMeshbox(t)
	prof := filepath.Join(t.TempDir(), "cpu.pprof")
	r := runJSON(t, "-url", srv.URL, "-scenario", "publish", "-publishers", "4", "-duration", "300ms", "-batch", "2",
		"-cpuprofile", prof)
	if r.Published == 0 || r.Published%2 != 0 || r.PublishErrors != nil || r.AckLatency == nil || r.Publishers != 4 {
		t.Fatalf("result %+v", r)
	}
	// The fake serves the test process's own profile; it must be a gzip'd pprof.
	if b, err := os.ReadFile(prof); err != nil || len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		t.Fatalf("profile: %d bytes, %v (notes %q)", len(b), err, r.Notes)
	}
}

func TestSaturateAgainstFake(t *testing.T) {
	t.Parallel()
	_, srv := newFakeMeshbox(t)
	r := runJSON(t, "-url", srv.URL, "-scenario", "saturate", "-readers", "10", "-publishers", "2",
		"-duration", "300ms", "-warmup", "0", "-window", "50")
	assertComplete(t, r, 10)
	if r.DeliveryRate <= 0 || r.Frames == 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestClassroomAgainstFake(t *testing.T) {
	t.Parallel()
	_, srv := newFakeMeshbox(t)
	r := runJSON(t, "-url", srv.URL, "-scenario", "classroom", "-groups", "3", "-nodes", "4",
		"-data-rate", "30", "-event-rate", "10", "-event-batch", "3", "-duration", "300ms", "-warmup", "0",
		"-transport", "sse", "-pid", strconv.Itoa(os.Getpid()))
	// Every node of a group reads that group's items.
	assertComplete(t, r, 4)
	if r.Groups != 3 || r.Readers != 12 || r.ServerProcess == nil || r.ServerProcess.RSSAfter <= 0 {
		t.Fatalf("result %+v", r)
	}
}

func TestIdleAgainstFake(t *testing.T) {
	t.Parallel()
	_, srv := newFakeMeshbox(t)
	r := runJSON(t, "-url", srv.URL, "-scenario", "idle", "-readers", "60", "-streams-per-node", "7",
		"-nodes", "3", "-duration", "100ms", "-pid", strconv.Itoa(os.Getpid()))
	// 60 connections at 7 per node need 9 nodes, 3 per group: 3 groups.
	if r.Connections != 60 || r.Groups != 3 || r.ServerProcess == nil || r.ReaderErrors != nil {
		t.Fatalf("result %+v", r)
	}
}

func TestUsageAndBadFlags(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := Run(context.Background(), []string{"-h"}, &out); err != nil {
		t.Fatalf("-h: %v", err)
	}
	for _, flag := range []string{"-scenario", "-transport", "-readers", "-pid", "-json"} {
		if !strings.Contains(out.String(), flag) {
			t.Errorf("usage lacks %s:\n%s", flag, out.String())
		}
	}
	for _, args := range [][]string{
		{"-scenario", "nope"},
		{"-transport", "carrier-pigeon"},
		{"-rate", "0"},
		{"-url", "ftp://x"},
		{"extra"},
	} {
		if err := Run(context.Background(), args, &out); err == nil {
			t.Errorf("Run %v: no error", args)
		}
	}
}

func TestTableOutput(t *testing.T) {
	t.Parallel()
	_, srv := newFakeMeshbox(t)
	var out bytes.Buffer
	err := Run(context.Background(), []string{"-url", srv.URL, "-readers", "3", "-duration", "200ms", "-warmup", "0"}, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"fanout over ws", "3 readers", "latency ms", "none: missing 0"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}
