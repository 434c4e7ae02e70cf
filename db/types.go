package db

import (
	"errors"
	"time"
)

// Sentinel errors of the store; package server maps each to one HTTP status in one place.
var (
	ErrGroupNotFound = errors.New("group not found")
	ErrGroupEnded    = errors.New("group has ended")
	ErrNodeNotFound  = errors.New("node not found")
	ErrUnauthorized  = errors.New("invalid token")
	ErrForbidden     = errors.New("not allowed")
	ErrConflict      = errors.New("conflict")
	ErrGroupFull     = errors.New("group is full")
	ErrDomainFull    = errors.New("domain is full")
	ErrInvalid       = errors.New("invalid input")
	ErrClosed        = errors.New("store is closed")
)

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

// Group is a group as clients see it.
type Group struct {
	ID           string    `json:"id"`
	Domain       string    `json:"domain"`
	Name         string    `json:"name"`
	Host         string    `json:"host"`
	CreatedAt    time.Time `json:"createdAt"`
	ExpiresAt    time.Time `json:"expiresAt"`
	HostSeenAt   time.Time `json:"hostSeenAt"`
	UseWebSocket bool      `json:"useWebSocket"`
	Nodes        int       `json:"nodes"`
}

// Node is a member of one group.
type Node struct {
	ID        string            `json:"id"`
	Group     string            `json:"group"`
	Name      string            `json:"name"`
	JoinedAt  time.Time         `json:"joinedAt"`
	LastSeen  time.Time         `json:"lastSeen"`
	ExpiresAt time.Time         `json:"expiresAt"`
	Data      map[string]string `json:"data"`
	DataAt    time.Time         `json:"dataAt,omitzero"`
	Host      bool              `json:"host"`
}

// Item is one entry of a group's stream. JSON holds its encoding, made once by the writer and
// served as-is by every transport.
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

// Joined is the answer to creating or joining a group: the caller's node and its token.
type Joined struct {
	Group  Group  `json:"group"`
	Node   Node   `json:"node"`
	Token  string `json:"token"`
	Cursor int64  `json:"cursor"`
}

// Snapshot is a group's state at one cursor: every item after Cursor changes it.
type Snapshot struct {
	Group  Group  `json:"group"`
	Nodes  []Node `json:"nodes"`
	Cursor int64  `json:"cursor"`
}

// NewGroup describes a group to create.
type NewGroup struct {
	Domain   string
	Name     string
	HostID   string // optional client-chosen node id (Mesh v2); random when empty
	HostName string
	// Lifetime is capped by the server maximum; zero means the maximum.
	Lifetime     time.Duration
	UseWebSocket bool
}

// NewNode describes a node joining a group.
type NewNode struct {
	ID   string // optional client-chosen node id (Mesh v2); random when empty
	Name string
}

// EventIn is one event to publish.
type EventIn struct {
	Name     string
	Payload  *string
	OrderKey string
	FiredAt  time.Time // optional: the client's own time of the event
}
