package rules

import (
	"context"
	"time"

	"meshbox/stream"
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
	// MeshV2 tells that Mesh v2 clients may reach the group.
	MeshV2 bool `json:"meshV2"`
	Nodes  int  `json:"nodes"`
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
	// MeshV2 tells that the node joined through Mesh v2: it has no token of its own, and only
	// Mesh v2 may act for it.
	MeshV2 bool `json:"meshV2,omitempty"`
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
	// MeshV2Host creates the group through Mesh v2: its host is a Mesh v2 node, and Mesh v2
	// clients may reach it.
	MeshV2Host bool
	// OpenToMeshV2 lets Mesh v2 clients join a group a native host creates.
	OpenToMeshV2 bool
}

// NewNode describes a node joining a group.
type NewNode struct {
	ID   string // optional client-chosen node id (Mesh v2); random when empty
	Name string
	// MeshV2 joins through Mesh v2.
	MeshV2 bool
}

// EventIn is one event to publish.
type EventIn struct {
	Name     string
	Payload  *string
	OrderKey string
	FiredAt  time.Time // optional: the client's own time of the event
}

// Stats are figures about groups and the log for metrics and the dashboard.
type Stats struct {
	Groups        int           `json:"groups"`
	Nodes         int           `json:"nodes"`
	Cursor        int64         `json:"cursor"`
	PurgedThrough int64         `json:"purgedThrough"`
	RetainedItems int64         `json:"retainedItems"`
	OldestItemAge time.Duration `json:"oldestItemAgeNs"`
	DBBytes       int64         `json:"dbBytes"`
	WALBytes      int64         `json:"walBytes"`
	QueueDepth    int           `json:"queueDepth"`
	// Storage is the log's storage state, since when and why.
	Storage stream.StorageStatus `json:"storage"`
	// FollowedGroups is how many groups' items this instance follows on a shared log (see
	// Engine.Followed); -1 over a log of its own, which holds every group.
	FollowedGroups int `json:"-"`
}

// clientKey is the context key of the client a request comes from.
type clientKey struct{}

// WithClient names the client (its address) a call comes from, so the rules can charge group
// creations to it. Every entrance sets it once per request, before any rule runs.
func WithClient(ctx context.Context, client string) context.Context {
	return context.WithValue(ctx, clientKey{}, client)
}

// clientOf is the client WithClient named, or "".
func clientOf(ctx context.Context) string {
	c, _ := ctx.Value(clientKey{}).(string)
	return c
}
