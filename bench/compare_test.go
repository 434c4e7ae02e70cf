package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"
)

func TestCompareAlternatesAndReportsRatios(t *testing.T) {
	t.Parallel()
	_, a := newFakeMeshbox(t)
	_, b := newFakeMeshbox(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Run(ctx, []string{"-url", a.URL, "-compare", b.URL, "-rounds", "2", "-scenario", "fanout",
		"-transport", "sse", "-readers", "6", "-streams-per-node", "3", "-rate", "100", "-duration", "200ms",
		"-warmup", "0", "-drain", "5s", "-json"}, &out)
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, out.String())
	}
	var c Comparison
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	want := []string{a.URL, b.URL, a.URL, b.URL}
	if len(c.Runs) != len(want) {
		t.Fatalf("%d runs, want %d", len(c.Runs), len(want))
	}
	for i, r := range c.Runs {
		if r.Server != want[i] {
			t.Fatalf("run %d on %s, want %s (A B A B)", i, r.Server, want[i])
		}
		assertComplete(t, r, 6)
	}
	byName := map[string]Figure{}
	for _, f := range c.Figures {
		byName[f.Name] = f
	}
	p99 := byName["latency p99 ms"]
	if len(p99.A) != 2 || len(p99.B) != 2 || p99.MedA <= 0 || p99.Ratio <= 0 {
		t.Fatalf("latency figure %+v", p99)
	}
	if loss := byName["lost+dup+disorder"]; loss.MedA != 0 || loss.MedB != 0 {
		t.Fatalf("loss figure %+v", loss)
	}
}

func TestCompareABBAStartsEachRoundWithTheOtherSide(t *testing.T) {
	t.Parallel()
	_, a := newFakeMeshbox(t)
	_, b := newFakeMeshbox(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := Run(ctx, []string{"-url", a.URL, "-compare", b.URL, "-rounds", "3", "-order", "abba",
		"-scenario", "publish", "-publishers", "2", "-duration", "100ms", "-json"}, &out)
	if err != nil {
		t.Fatalf("compare: %v\n%s", err, out.String())
	}
	var c Comparison
	if err := json.Unmarshal(out.Bytes(), &c); err != nil {
		t.Fatalf("decode %q: %v", out.String(), err)
	}
	want := []string{a.URL, b.URL, b.URL, a.URL, a.URL, b.URL}
	if len(c.Runs) != len(want) {
		t.Fatalf("%d runs, want %d", len(c.Runs), len(want))
	}
	for i, r := range c.Runs {
		if r.Server != want[i] {
			t.Fatalf("run %d on %s, want %s (A B B A A B)", i, r.Server, want[i])
		}
	}
}
