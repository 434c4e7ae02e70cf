package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"meshbox/bench"
)

// TestBenchDrivesTheFloor: `meshbox bench` drives the floor over every transport it compares
// it on, and every reader gets every item once, in order.
func TestBenchDrivesTheFloor(t *testing.T) {
	for _, tr := range []string{"ws", "sse", "poll"} {
		t.Run(tr, func(t *testing.T) {
			srv := httptest.NewServer(newMux())
			defer srv.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			args := []string{"-url", srv.URL, "-scenario", "fanout", "-transport", tr, "-readers", "8",
				"-rate", "100", "-duration", "300ms", "-warmup", "0", "-drain", "5s", "-json"}
			if err := bench.Run(ctx, args, &out); err != nil {
				t.Fatalf("bench: %v\n%s", err, out.String())
			}
			var r bench.Result
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("decode %q: %v", out.String(), err)
			}
			if r.Published == 0 || r.Delivered != r.Published*8 || r.Missing+r.Duplicate+r.OutOfOrder+r.Unexpected+r.Resets != 0 {
				t.Fatalf("published %d, delivered %d, result %+v", r.Published, r.Delivered, r)
			}
		})
	}
}
