package ratelimit

import (
	"testing"
	"time"
)

// Charge takes from the bucket even past its burst (debt), so the key waits longer; other keys
// are untouched, and an unlimited limiter charges nothing.
func TestChargeGoesIntoDebt(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	k := New(1, 2)
	for range 3 {
		k.Charge("a", now)
	}
	if ok, wait := k.Allow("a", now); ok || wait != 2*time.Second {
		t.Fatalf("after a debt of one: allowed %v, wait %v; want refused for 2s", ok, wait)
	}
	if ok, _ := k.Allow("a", now.Add(2*time.Second)); !ok {
		t.Fatal("refused once the debt was paid")
	}
	if ok, _ := k.Allow("b", now); !ok {
		t.Fatal("another key was charged")
	}
	var off *Keyed
	off.Charge("a", now)
	if ok, _ := New(0, 0).Allow("a", now); !ok {
		t.Fatal("an unlimited limiter refused")
	}
}
