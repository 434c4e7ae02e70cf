package rules_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"meshbox/rules"
)

// TestNodeByteRate: a node may store its byte rate per second with a burst of 16 seconds of
// it; past that its publishes and data changes are refused (rate limited, with a time to wait)
// and cost nothing, while a classmate's go through; the bucket refills with the clock.
func TestNodeByteRate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clk := newClock()
	b := newBox(t, rules.Options{Now: clk.Now, Limits: rules.Limits{NodeByteRate: 1000}}) // burst 16,000 bytes
	h := mustCreate(t, b)
	m := mustJoin(t, b, h.Group.ID)
	big := strings.Repeat("p", 1500)
	events := make([]rules.EventIn, 10)
	for i := range events {
		events[i] = rules.EventIn{Name: "e", Payload: &big}
	}
	if _, err := b.Publish(ctx, h.Group.ID, m.Node.ID, events); err != nil {
		t.Fatalf("publish within the burst: %v", err)
	}
	small := strings.Repeat("s", 1000)
	_, err := b.Publish(ctx, h.Group.ID, m.Node.ID, []rules.EventIn{{Name: "e", Payload: &small}})
	var rl *rules.RateLimitError
	if !errors.As(err, &rl) || !errors.Is(err, rules.ErrRateLimited) || rl.RetryAfter <= 0 {
		t.Fatalf("publish past the byte burst: %v, want rate limited with a time to wait", err)
	}
	if _, err := b.SetData(ctx, h.Group.ID, m.Node.ID, map[string]string{"k": small}, false); !errors.Is(err, rules.ErrRateLimited) {
		t.Errorf("data change past the byte burst: %v, want rate limited", err)
	}
	// The host (another node) is not charged for it.
	if _, err := b.Publish(ctx, h.Group.ID, h.Node.ID, []rules.EventIn{{Name: "e", Payload: &small}}); err != nil {
		t.Errorf("classmate's publish while the flooder waits: %v", err)
	}
	clk.Add(rl.RetryAfter + time.Second)
	if _, err := b.Publish(ctx, h.Group.ID, m.Node.ID, []rules.EventIn{{Name: "e", Payload: &small}}); err != nil {
		t.Errorf("publish after waiting Retry-After: %v", err)
	}
}
