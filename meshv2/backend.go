package meshv2

import (
	"context"
	"meshbox/hub"
	"meshbox/rules"
	"time"
)

// A Backend returns the rules' sentinel errors (rules.ErrGroupNotFound, ErrNodeNotFound, …),
// wrapped with %w; package apierror maps them to the Mesh v2 errorTypes the Smalruby client
// acts on, as it maps them to HTTP statuses for the native API.

// The Mesh v2 layer speaks the rules' types (rules.Group, rules.Node, rules.Snapshot,
// rules.NewGroup, rules.EventIn) and the stream's (stream.Item, hub.Batch): it is an entrance
// like the native API, not a store of its own.

// Backend is what the Mesh v2 layer needs from meshbox's groups, nodes and stream. Writes
// must be durable when they return; Read must return items in cursor order.
type Backend interface {
	// CreateGroup creates a group with its host node, or returns the live group the same
	// host already has in the domain.
	CreateGroup(ctx context.Context, g rules.NewGroup) (rules.Joined, error)
	// Join adds (or renews) the node nodeID in the group.
	Join(ctx context.Context, groupID, nodeID string) (rules.Joined, error)
	// Leave removes a member and its data.
	Leave(ctx context.Context, groupID, nodeID string) error
	// Dissolve ends the group; the caller has checked that hostID is its host.
	Dissolve(ctx context.Context, groupID string) error
	// Heartbeat renews a node (and the group's host heartbeat when it is the host).
	Heartbeat(ctx context.Context, groupID, nodeID string) (rules.Group, rules.Node, error)
	// ReplaceData sets the node's whole data map, deleting keys not in data.
	ReplaceData(ctx context.Context, groupID, nodeID string, data map[string]string) (int64, error)
	// Publish appends events to the group's stream and returns their cursors.
	Publish(ctx context.Context, groupID, nodeID string, events []rules.EventIn) ([]int64, error)
	// Snapshot returns a live group, its nodes and the current cursor.
	Snapshot(ctx context.Context, groupID string) (rules.Snapshot, error)
	// Group returns a live group and the current cursor, without its nodes: an in-memory
	// read for the hot paths (publish, heartbeats, polls), which need no node list.
	Group(ctx context.Context, groupID string) (rules.Snapshot, error)
	// Groups lists the live groups of a domain.
	Groups(ctx context.Context, domain string) ([]rules.Group, error)
	// SearchGroups lists live groups whose name starts with prefix, in any domain.
	SearchGroups(ctx context.Context, prefix string, limit int) ([]rules.Group, error)
	// FindNode finds a node by id in any live group.
	FindNode(ctx context.Context, nodeID string) (rules.Group, rules.Node, error)
	// CursorAt returns the cursor to read after to get the group's items stamped after t.
	CursorAt(ctx context.Context, groupID string, t time.Time) (int64, error)
	// Open opens a reader of the group's stream. Mesh v2 does not say which node reads, so
	// the reader does not count for a node's presence; nodeID, when not "", is the node
	// meshbox attributed it to: that node's leave item ends the reader (its Batch.Gone), so a
	// removed or expired node reads nothing after it. The caller must Close it.
	Open(groupID, nodeID string) Reader
	// Attend marks the node as present over a transport (so dashboards show it and it counts
	// as active) until release is called. The Mesh v2 layer calls it for a subscription or a
	// run of polls it has attributed to a node.
	Attend(groupID, nodeID, transport string) (release func())
}

// Reader reads one group's stream by cursor.
type Reader interface {
	// Read returns up to limit items after since without waiting.
	Read(ctx context.Context, since int64, limit int) (hub.Batch, error)
	// Wait blocks until there is an item after since, or ctx ends.
	Wait(ctx context.Context, since int64) error
	// Close releases the reader.
	Close()
}
