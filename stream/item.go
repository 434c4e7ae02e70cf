// Package stream holds what every part of meshbox shares about a group's ordered stream: the
// item, its encoding, and the Log interface that a store (SQLite today, NATS JetStream next)
// implements. The group rules (package rules) sit above a Log; the stores below it.
package stream

import (
	"errors"
	"time"
)

// ErrClosed is returned by a Log (and by the rules above it) once it has been closed.
var ErrClosed = errors.New("store is closed")

// ErrStorageFull is returned (wrapped) by a Log that cannot store a write: its size budget is
// reached or its disk is full. Nothing of the write was stored; reads still work, and writes
// resume by themselves once the purge has made room.
var ErrStorageFull = errors.New("storage is full")

// Item kinds: everything that happens in a group is one of these.
const (
	KindEvent    = "event"
	KindData     = "data"
	KindJoin     = "join"
	KindLeave    = "leave"
	KindDissolve = "dissolve"
)

// Reasons carried by leave and dissolve items.
const (
	ReasonLeft    = "left"
	ReasonExpired = "expired"
	ReasonRemoved = "removed"
	ReasonHost    = "host"
	ReasonAdmin   = "admin"
)

// Item is one entry of a group's stream. JSON holds its encoding, made once when the item is
// appended and served as-is by every transport.
//
// An item as kept in memory for live readers is slim: its payload and data are only in JSON
// (held once); Decode gives the full item when a reader needs the fields.
type Item struct {
	Cursor   int64   `json:"cursor"`
	Kind     string  `json:"kind"`
	Node     string  `json:"node,omitempty"`
	Name     string  `json:"name,omitempty"`
	Payload  *string `json:"payload,omitempty"`
	OrderKey string  `json:"orderKey,omitempty"`
	// FiredAt is when the client says the event happened (Mesh v2 clients replay events
	// with their original gaps); zero when it did not say.
	FiredAt time.Time         `json:"firedAt,omitzero"`
	Data    map[string]string `json:"data,omitempty"`
	Reason  string            `json:"reason,omitempty"`
	At      time.Time         `json:"at"`
	Group   string            `json:"-"`
	JSON    []byte            `json:"-"`
}

// Slim returns the item without the fields that JSON already holds in full (payload, data,
// order key, client time), so a copy kept in memory holds its payload once.
func (it Item) Slim() Item {
	it.Payload, it.Data, it.OrderKey, it.FiredAt = nil, nil, "", time.Time{}
	return it
}

// Decode returns the item with every field filled from its JSON.
func (it Item) Decode() (Item, error) {
	full, err := DecodeItem(it.JSON)
	if err != nil {
		return it, err
	}
	full.Group = it.Group
	return full, nil
}

// Size is what the item costs in memory, for byte budgets: its encoding plus the struct.
func (it Item) Size() int { return len(it.JSON) + len(it.Name) + len(it.Node) + itemOverhead }

// itemOverhead approximates an Item struct with its string headers and slice header.
const itemOverhead = 200
