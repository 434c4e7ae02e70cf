package meshv2

import (
	"context"
	"time"
)

// A Backend returns the rules' sentinel errors (rules.ErrGroupNotFound, ErrNodeNotFound, …),
// wrapped with %w; package apierror maps them to the Mesh v2 errorTypes the Smalruby client
// acts on, as it maps them to HTTP statuses for the native API.

// Group is the part of a group the Mesh v2 layer reports.
type Group struct {
	ID           string
	Domain       string
	Name         string
	HostID       string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	UseWebSocket bool
	// Cursor, in the answers of CreateGroup and Join only, is the stream position right after
	// the call's own items: where a new reader of that node starts. Zero elsewhere.
	Cursor int64
}

// Node is a member of a group, with its data.
type Node struct {
	ID        string
	Name      string
	JoinedAt  time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	// DataAt is when the node's data last changed; zero when it never had any.
	DataAt time.Time
	Data   map[string]string
}

// Snapshot is a group with its nodes, consistent with Cursor: every item after Cursor
// happened after this state.
type Snapshot struct {
	Group  Group
	Nodes  []Node
	Cursor int64
}

// NewGroup is what createGroup asks the store for.
type NewGroup struct {
	Domain       string
	Name         string
	HostID       string
	Lifetime     time.Duration
	UseWebSocket bool
}

// EventIn is one event to publish.
type EventIn struct {
	Name     string
	Payload  string
	OrderKey string
	FiredAt  time.Time
}

// Item is one entry of a group's stream, its kind one of stream's (stream.KindEvent, …).
type Item struct {
	Cursor   int64
	Kind     string
	Node     string
	Name     string
	Payload  string
	OrderKey string
	At       time.Time
	// FiredAt is the publishing client's own time of an event; zero when it gave none.
	FiredAt time.Time
	// Data holds the changed keys of a data item; "" means the key was deleted.
	Data   map[string]string
	Reason string
}

// ReadResult is a page of a group's stream.
type ReadResult struct {
	Items []Item
	// Next is the cursor to read after next time.
	Next int64
	// Truncated says items after the requested cursor were purged before they were read.
	Truncated bool
}

// Backend is what the Mesh v2 layer needs from meshbox's groups, nodes and stream. Writes
// must be durable when they return; Read must return items in cursor order.
type Backend interface {
	// CreateGroup creates a group with its host node, or returns the live group the same
	// host already has in the domain.
	CreateGroup(ctx context.Context, g NewGroup) (Group, error)
	// Join adds (or renews) the node nodeID in the group.
	Join(ctx context.Context, groupID, nodeID string) (Group, Node, error)
	// Leave removes a member and its data.
	Leave(ctx context.Context, groupID, nodeID string) error
	// Dissolve ends the group; the caller has checked that hostID is its host.
	Dissolve(ctx context.Context, groupID string) error
	// Heartbeat renews a node (and the group's host heartbeat when it is the host).
	Heartbeat(ctx context.Context, groupID, nodeID string) (Group, Node, error)
	// ReplaceData sets the node's whole data map, deleting keys not in data.
	ReplaceData(ctx context.Context, groupID, nodeID string, data map[string]string) (int64, error)
	// Publish appends events to the group's stream and returns their cursors.
	Publish(ctx context.Context, groupID, nodeID string, events []EventIn) ([]int64, error)
	// Snapshot returns a live group, its nodes and the current cursor.
	Snapshot(ctx context.Context, groupID string) (Snapshot, error)
	// Group returns a live group and the current cursor, without its nodes: an in-memory
	// read for the hot paths (publish, heartbeats, polls), which need no node list.
	Group(ctx context.Context, groupID string) (Snapshot, error)
	// Groups lists the live groups of a domain.
	Groups(ctx context.Context, domain string) ([]Group, error)
	// SearchGroups lists live groups whose name starts with prefix, in any domain.
	SearchGroups(ctx context.Context, prefix string, limit int) ([]Group, error)
	// FindNode finds a node by id in any live group.
	FindNode(ctx context.Context, nodeID string) (Group, Node, error)
	// CursorAt returns the cursor to read after to get the group's items stamped after t.
	CursorAt(ctx context.Context, groupID string, t time.Time) (int64, error)
	// Open opens a reader of the group's stream. Mesh v2 does not say which node reads, so
	// the reader is not tied to a node. The caller must Close it.
	Open(groupID string) Reader
	// Attend marks the node as present over a transport (so dashboards show it and it counts
	// as active) until release is called. The Mesh v2 layer calls it for a subscription or a
	// run of polls it has attributed to a node.
	Attend(groupID, nodeID, transport string) (release func())
}

// Reader reads one group's stream by cursor.
type Reader interface {
	// Read returns up to limit items after since without waiting.
	Read(ctx context.Context, since int64, limit int) (ReadResult, error)
	// Wait blocks until there is an item after since, or ctx ends.
	Wait(ctx context.Context, since int64) error
	// Close releases the reader.
	Close()
}
