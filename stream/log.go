package stream

import (
	"context"
	"errors"
	"time"
)

// Log is the durable store under the group rules: an append-only, ordered log of items (one
// stream per group, one cursor sequence for all) together with the state records the rules keep
// (groups and nodes). The rules validate every change against their in-memory state and hand
// the Log a Batch; the Log commits it atomically and only then do the rules apply the changes
// to memory and wake readers. A second implementation (NATS JetStream) follows the same
// contract; package stream/logtest is the conformance suite both must pass.
type Log interface {
	// Load returns the stored state (groups, nodes and the watermark) at start.
	Load(ctx context.Context) (State, error)
	// Append commits the batch's items and changes atomically, or nothing of it; when the
	// log is out of room it stores nothing and returns an error wrapping ErrStorageFull. It assigns
	// every item its cursor (strictly increasing, never reused, also after a purge or a
	// restart), its time (b.Now, never earlier than an item before it) and its JSON encoding.
	// When Append returns nil, Watermark is at least the last item's cursor.
	Append(ctx context.Context, b *Batch) error
	// ReadAfter returns up to limit items of group gid with since < cursor <= through, in
	// cursor order, stopping early (after at least one item) once maxBytes of encodings are
	// read. truncated reports that items of the group after since were purged: the reader
	// must take a fresh snapshot. through must not exceed Watermark.
	ReadAfter(ctx context.Context, gid string, since, through int64, limit, maxBytes int) (items []Item, truncated bool, err error)
	// CursorAt returns the cursor to read after to get the group's items stamped after t (and
	// at most through): the cursor just before the first such item, or through when none is.
	CursorAt(ctx context.Context, gid string, t time.Time, through int64) (int64, error)
	// Watermark is the cursor of the newest committed item (0 when none ever was).
	Watermark() int64
	// Purge deletes every item stamped before cutoff, in batches that never hold writers up
	// for long, and returns what it removed. A log with a size budget also deletes the oldest
	// items, whatever their age, while it is near the budget (readers behind them get
	// truncated as usual), and Purge must be able to run when appends fail with
	// ErrStorageFull: that is how a full log recovers.
	Purge(ctx context.Context, cutoff time.Time) (Purged, error)
	// Stats reports the log's figures.
	Stats(ctx context.Context) LogStats
	// Ping checks that the log accepts writes; it fails with ErrStorageFull while appends do.
	Ping(ctx context.Context) error
	// Close finishes and closes the log; a closed log returns ErrClosed.
	Close() error
}

// Batch is what the rules commit at once: items to append and state changes.
type Batch struct {
	// Now is the time stamped on the items.
	Now     time.Time
	Items   []Item
	Changes []Change

	// What follows matters to logs that several instances share (a Follower); others ignore it.

	// Base is the position in the log that the state the batch was built on reflects: every
	// message at or before it was applied, none after it.
	Base int64
	// Groups are the groups whose state the batch was built on. The log refuses the batch
	// whole, with ErrConflict, when another instance changed a record of one of them after Base.
	Groups []string
	// Domains are the domains in which the batch creates groups: it is refused likewise when
	// another instance created a group in one of them after Base (so per-domain limits hold).
	Domains []string
	// Last is set by Append: the position of the batch's last message, which the log's
	// Follower delivers too.
	Last int64
}

// ErrConflict is returned (wrapped) by a shared log's Append when the batch was built on state
// that another instance changed meanwhile: nothing was stored. The writer catches up with the
// log and builds the batch again.
var ErrConflict = errors.New("state changed by another instance")

// Follower is implemented by a log that several instances share. Every instance follows the
// log once and applies, in log order, what the others committed: every state change (group
// and node records, purge marks), but items only of the groups it wants (Want), so that an
// instance holds and applies the groups its own clients use, not the district's.
type Follower interface {
	// Follow delivers every message of the log after the position of the last Load, in log
	// order, own ones too (marked Own), until ctx ends; then it closes the channel. Call it
	// once, after Load. Items are delivered only for the groups wanted (none at first).
	Follow(ctx context.Context) <-chan Entry
	// Want adds group gid to the groups whose items Follow delivers (on) or drops it (off).
	// Every Want(gid, true) that adds the group is answered by one marker entry
	// (Entry.Followed == gid), delivered before any item of the group that the marker's
	// Through does not cover; a group dropped and wanted again gets a new marker. Items of a
	// dropped group may still come for a moment. It never blocks.
	Want(gid string, on bool)
	// Position is the log's newest position now: once a follower delivered it (or anything
	// after it), it delivered every batch committed before the call. It may write to the log.
	Position(ctx context.Context) (int64, error)
}

// Entry is one message of a shared log as its Follower delivers it: items (one message may
// hold several, in cursor order), a state change, a marker (Followed), or none of these (a
// message of the log's own bookkeeping, which only moves the position).
//
// Positions (Seq) and cursors (Item.Cursor, Through, LastItem) are different numbers: one
// message may hold several items. Only the log converts between them.
type Entry struct {
	// Seq is the message's position in the log. A marker shares the position of the entry
	// before it.
	Seq int64
	// Through is a cursor that covers every item stored at or before Seq: once the entry is
	// applied, every item up to it is either applied (a wanted group's) or readable with
	// ReadAfter, so a follower's watermark may move to it.
	Through int64
	// Own tells that this instance appended the message.
	Own   bool
	Items []Item
	// Decode, set instead of Items on this instance's own items messages, decodes them when
	// needed: the writer applies its own batches when they commit and skips their messages,
	// so decoding each of them on the follower would be work for nothing on its hot path;
	// only the parts of a batch that failed after some were stored are applied from here.
	Decode func() ([]Item, error)
	Change *Change
	// Purged, when not zero, tells that a purge deleted every item through it.
	Purged int64
	// Followed, on a marker, names the group Want just added: from here on the follower
	// delivers its items, and every item of it stored before is covered by Through.
	Followed string
	// LastItem, on a marker, is the cursor of the group's newest item, retained or purged (0:
	// none), as the log's leader knows it: it may be newer than Through.
	LastItem int64
}

// ChangeKind names what a Change does.
type ChangeKind uint8

// The changes the rules make to stored state.
const (
	// PutGroup stores Group as the whole record of its group (insert or replace).
	PutGroup ChangeKind = iota + 1
	// DeleteGroup forgets the group Group.ID and its nodes.
	DeleteGroup
	// PutNode stores Node as the whole record of its node (insert or replace).
	PutNode
	// DeleteNode removes the node Node.ID of group Node.Group.
	DeleteNode
)

// Change is one change to stored state.
type Change struct {
	Kind  ChangeKind
	Group GroupRecord
	Node  NodeRecord
}

// GroupRecord is a group as it is stored.
type GroupRecord struct {
	ID           string
	Domain       string
	Name         string
	Host         string
	CreatedAt    time.Time
	ExpiresAt    time.Time
	HostSeenAt   time.Time
	UseWebSocket bool
	// MeshV2 tells that Mesh v2 clients may reach the group (it was created through Mesh v2,
	// or its host opened it to them).
	MeshV2 bool
	// EndedAt is when the group ended (zero while it lives), and EndReason why.
	EndedAt   time.Time
	EndReason string
	// LastCursor is the cursor of the group's newest item, retained or purged. Load fills it
	// for ended groups (their dissolve item is their last); it is not stored.
	LastCursor int64
}

// NodeRecord is a node as it is stored. The nodes of an ended group stay (until the group is
// forgotten) so that their holders can still read the group's final items after a restart.
type NodeRecord struct {
	Group     string
	ID        string
	Name      string
	TokenHash []byte
	JoinedAt  time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	Data      map[string]string
	DataAt    time.Time
	// MeshV2 tells that the node joined through Mesh v2 (it holds no token of its own).
	MeshV2 bool
}

// State is the stored state a Log loads at start.
type State struct {
	Groups    []GroupRecord
	Nodes     []NodeRecord
	Watermark int64
	// Position is, for a shared log (a Follower), the position in the log that the state
	// reflects: its Follow starts after it.
	Position int64
}

// Purged counts what one Purge removed; Through is the newest cursor deleted so far (0: none).
type Purged struct {
	Items   int
	Through int64
}

// LogStats are a log's figures for metrics and the dashboard.
type LogStats struct {
	PurgedThrough int64
	RetainedItems int64
	// OldestItemAt is the time of the oldest retained item (zero when none is).
	OldestItemAt time.Time
	Bytes        int64
	WALBytes     int64
	// Storage is the log's storage state (zero when the log does not track one).
	Storage StorageStatus
}

// Leaser is implemented by a shared log that can elect one instance for a job (the purge):
// Lease reports whether this instance holds the lease named name, taking it when it is free
// or lapsed and renewing it when held, for ttl. A holder holds it for ttl from the call, on
// its own clock; whether it lapsed is for the shared log to judge, not for the instances'
// clocks, which may disagree.
type Leaser interface {
	Lease(ctx context.Context, name string, ttl time.Duration) (bool, error)
}
