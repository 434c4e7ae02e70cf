package ratelimit

import (
	"errors"
	"testing"
	"time"
)

// A refused request costs nothing: a node over its rate never reaches its group's budget,
// and a request its group refuses gives the node back what it took.
func TestRefusedRequestsCostNothing(t *testing.T) {
	now := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	b := NewBudgets(Rates{Node: 1, Group: 2}, func() time.Time { return now }) // bursts 2 and 4
	for range 2 {
		if err := b.ChargeNode("g", "flooder"); err != nil {
			t.Fatalf("within the burst: %v", err)
		}
	}
	for range 50 {
		err := b.ChargeNode("g", "flooder")
		var le *LimitError
		if !errors.Is(err, ErrLimited) || !errors.As(err, &le) || le.RetryAfter != time.Second {
			t.Fatalf("over the node's rate: %v, want a LimitError with RetryAfter 1s", err)
		}
	}
	// The group has two of its four left: the flooder's refusals took none.
	for i := range 2 {
		if err := b.ChargeNode("g", "classmate"); err != nil {
			t.Fatalf("the classmate's request %d: %v", i, err)
		}
	}
	// The group is spent: the next node is refused by the group, twice, and keeps its own
	// budget (taken for good, the two would leave it one for the next second).
	for range 2 {
		if err := b.ChargeNode("g", "third"); err == nil {
			t.Fatal("the group's budget was not enforced")
		}
	}
	now = now.Add(time.Second) // the group gets two back
	for i := range 2 {
		if err := b.ChargeNode("g", "third"); err != nil {
			t.Fatalf("the third node's request %d a second later: %v (did the group's refusal cost it?)", i, err)
		}
	}
}

// A nil Budgets charges nothing (a Mesh v2 handler built without one, in tests).
func TestNilBudgetsChargeNothing(t *testing.T) {
	var b *Budgets
	if b.ChargeNode("g", "n") != nil || b.ChargeAddr("a") != nil || b.ChargeAdmin() != nil {
		t.Fatal("a nil Budgets refused a request")
	}
}
