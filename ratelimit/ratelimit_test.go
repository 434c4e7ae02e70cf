package ratelimit

import (
	"strconv"
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
	unlimited := New(0, 0)
	for range 3 {
		unlimited.Charge("a", now)
	}
	if unlimited.Len() != 0 {
		t.Fatalf("an unlimited limiter keeps %d buckets", unlimited.Len())
	}
	var off *Keyed
	off.Charge("a", now) // a limiter that is not set is unlimited too
}

// An instance that only follows others charges their nodes and never answers a request of
// its own: the buckets it charged are still swept once they refilled.
func TestChargedBucketsAreSwept(t *testing.T) {
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	k := New(1, 2)
	for i := range 100 {
		k.Charge("node-"+strconv.Itoa(i), now)
	}
	later := now.Add(2 * sweepEvery)
	k.Charge("node-0", later)
	if k.Len() != 1 {
		t.Fatalf("%d buckets after the others refilled, want 1", k.Len())
	}
}
