package ratelimit

import (
	"errors"
	"time"

	"golang.org/x/time/rate"
)

// ErrLimited is the sentinel every refusal of a request budget matches (errors.Is); the error
// itself is a *LimitError, which says whose budget and how long to wait.
var ErrLimited = errors.New("rate limited")

// LimitError is a request refused because a budget is spent.
type LimitError struct {
	// What says whose budget is spent: "too many requests from node n1".
	What string
	// RetryAfter is how long until the budget holds a request again; at least a second,
	// because Retry-After counts whole seconds and 0 would invite an immediate retry.
	RetryAfter time.Duration
}

func (e *LimitError) Error() string { return e.What + ": slow down and retry later" }

// Is makes every LimitError match ErrLimited.
func (e *LimitError) Is(target error) bool { return target == ErrLimited }

func limited(what string, wait time.Duration) *LimitError {
	return &LimitError{What: what, RetryAfter: max(wait, time.Second)}
}

// Rates are the request budgets' settings in requests per second, each with a burst of twice
// its rate; 0 is unlimited.
type Rates struct {
	// Node is the budget of one node (a token holder), whatever entrance its requests and
	// messages come by.
	Node float64
	// Group is the budget all nodes of one group share, so one group cannot take the
	// writer from the others.
	Group float64
	// Addr is the budget of one client address for what carries no node token: joins,
	// creations, Mesh v2 (which has no credential) and wrong tokens.
	Addr float64
	// Admin is the teacher's budget (the admin token), apart from every address, so a
	// flooded classroom address never shuts the dashboard out.
	Admin float64
}

// Budgets are the request budgets of every entrance: one HTTP request, one native WebSocket
// message and one AppSync real-time message each cost one request of the same budget, so an
// open socket is no way around the rate an HTTP client gets. Built once (in app) from the
// settings and handed to every entrance; a nil *Budgets charges nothing.
type Budgets struct {
	node, group, addr, admin *Keyed
	now                      func() time.Time
}

// NewBudgets returns the budgets of rates, timed by now (nil is time.Now; tests drive it).
func NewBudgets(r Rates, now func() time.Time) *Budgets {
	if now == nil {
		now = time.Now
	}
	return &Budgets{
		node:  New(r.Node, int(2*r.Node)),
		group: New(r.Group, int(2*r.Group)),
		addr:  New(r.Addr, int(2*r.Addr)),
		admin: New(r.Admin, int(2*r.Admin)),
		now:   now,
	}
}

// ChargeNode takes one request from node's budget and then from its group's. A refused
// request costs nothing: a node over its rate is refused before its group is charged, so it
// never spends its classmates' share, and a request the group refuses gives the node back
// what it took.
func (b *Budgets) ChargeNode(group, node string) error {
	if b == nil {
		return nil
	}
	now := b.now()
	var took *rate.Reservation
	if b.node.Enabled() { // the key is built only for a limit that uses it
		r, wait := b.node.take(group+"/"+node, now)
		if r == nil {
			return limited("too many requests from node "+node, wait)
		}
		took = r
	}
	if !b.group.Enabled() {
		return nil
	}
	if r, wait := b.group.take(group, now); r == nil {
		if took != nil {
			took.CancelAt(now)
		}
		return limited("too many requests in group "+group, wait)
	}
	return nil
}

// ChargeAddr takes one request from the client address's budget.
func (b *Budgets) ChargeAddr(addr string) error {
	if b == nil {
		return nil
	}
	if ok, wait := b.addr.Allow(addr, b.now()); !ok {
		return limited("too many requests from "+addr, wait)
	}
	return nil
}

// ChargeAdmin takes one request from the admin's budget.
func (b *Budgets) ChargeAdmin() error {
	if b == nil {
		return nil
	}
	if ok, wait := b.admin.Allow("admin", b.now()); !ok {
		return limited("too many admin requests", wait)
	}
	return nil
}
