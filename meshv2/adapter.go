package meshv2

import (
	"context"
	"fmt"
	"time"

	"meshbox/hub"
	"meshbox/live"
	"meshbox/rules"
	"meshbox/stream"
)

// transportName is how Mesh v2 readers that are not attributed to a node are registered in
// the hub (they count for no node's presence).
const transportName = "meshv2"

// StoreBackend is the Backend over meshbox's store and hub, so Mesh v2 clients share groups,
// nodes and the stream with native clients.
type StoreBackend struct {
	store *rules.Engine
	hub   *hub.Hub
}

var _ Backend = (*StoreBackend)(nil)

// NewStoreBackend returns the Backend over store and h.
func NewStoreBackend(store *rules.Engine, h *hub.Hub) *StoreBackend {
	return &StoreBackend{store: store, hub: h}
}

// mapErr names the operation; the rules' sentinel stays inside for apierror to map.
func mapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// CreateGroup implements Backend; the host's node id doubles as its name, as in the cloud.
func (b *StoreBackend) CreateGroup(ctx context.Context, g rules.NewGroup) (rules.Joined, error) {
	g.HostName, g.MeshV2Host = g.HostID, true
	j, err := b.store.CreateGroup(ctx, g)
	j.Token = "" // Mesh v2 nodes act without one
	return j, mapErr("create group", err)
}

// Join implements Backend.
func (b *StoreBackend) Join(ctx context.Context, groupID, nodeID string) (rules.Joined, error) {
	j, err := b.store.Join(ctx, groupID, rules.NewNode{ID: nodeID, Name: nodeID, MeshV2: true})
	j.Token = ""
	return j, mapErr("join", err)
}

// Leave implements Backend.
func (b *StoreBackend) Leave(ctx context.Context, groupID, nodeID string) error {
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return mapErr("leave", err)
	}
	return mapErr("leave", b.store.Leave(ctx, groupID, nodeID, stream.ReasonLeft))
}

// Dissolve implements Backend.
func (b *StoreBackend) Dissolve(ctx context.Context, groupID string) error {
	g, err := b.store.Group(groupID)
	if err != nil {
		return mapErr("dissolve", err)
	}
	if err := b.store.MeshV2Member(groupID, g.Host); err != nil {
		return mapErr("dissolve", err)
	}
	return mapErr("dissolve", b.store.Dissolve(ctx, groupID, stream.ReasonHost))
}

// Heartbeat implements Backend.
func (b *StoreBackend) Heartbeat(ctx context.Context, groupID, nodeID string) (rules.Group, rules.Node, error) {
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return rules.Group{}, rules.Node{}, mapErr("heartbeat", err)
	}
	g, n, err := b.store.Heartbeat(ctx, groupID, nodeID)
	if err != nil {
		return rules.Group{}, rules.Node{}, mapErr("heartbeat", err)
	}
	return g, n, nil
}

// ReplaceData implements Backend.
func (b *StoreBackend) ReplaceData(ctx context.Context, groupID, nodeID string, data map[string]string) (int64, error) {
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return 0, mapErr("set data", err)
	}
	c, err := b.store.SetData(ctx, groupID, nodeID, data, true)
	return c, mapErr("set data", err)
}

// Publish implements Backend.
func (b *StoreBackend) Publish(ctx context.Context, groupID, nodeID string, events []rules.EventIn) ([]int64, error) {
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return nil, mapErr("publish", err)
	}
	cs, err := b.store.Publish(ctx, groupID, nodeID, events)
	return cs, mapErr("publish", err)
}

// Snapshot implements Backend.
func (b *StoreBackend) Snapshot(ctx context.Context, groupID string) (rules.Snapshot, error) {
	if err := b.store.MeshV2Member(groupID, ""); err != nil {
		return rules.Snapshot{}, mapErr("snapshot", err)
	}
	s, err := b.store.Snapshot(ctx, groupID)
	return s, mapErr("snapshot", err)
}

// Group implements Backend with the rules' in-memory read; the cursor is read after the
// group, so nothing of the group's state is newer than it.
func (b *StoreBackend) Group(ctx context.Context, groupID string) (rules.Snapshot, error) {
	if err := b.store.MeshV2Member(groupID, ""); err != nil {
		return rules.Snapshot{}, mapErr("group", err)
	}
	if err := b.store.SyncGroup(ctx, groupID); err != nil {
		return rules.Snapshot{}, mapErr("group", err)
	}
	g, err := b.store.Group(groupID)
	if err != nil {
		return rules.Snapshot{}, mapErr("group", err)
	}
	return rules.Snapshot{Group: g, Cursor: b.store.LastCursor()}, nil
}

// Groups implements Backend.
func (b *StoreBackend) Groups(_ context.Context, domain string) ([]rules.Group, error) {
	if domain == "" {
		return nil, nil
	}
	return meshV2Only(b.store.Groups(domain), 0), nil
}

// SearchGroups implements Backend.
func (b *StoreBackend) SearchGroups(_ context.Context, prefix string, limit int) ([]rules.Group, error) {
	if prefix == "" {
		return nil, nil
	}
	return meshV2Only(b.store.SearchGroups(prefix, 0), limit), nil
}

// meshV2Only keeps the groups Mesh v2 may reach, at most limit (0: all).
func meshV2Only(gs []rules.Group, limit int) []rules.Group {
	out := gs[:0]
	for _, g := range gs {
		if g.MeshV2 && (limit <= 0 || len(out) < limit) {
			out = append(out, g)
		}
	}
	return out
}

// FindNode implements Backend.
func (b *StoreBackend) FindNode(_ context.Context, nodeID string) (rules.Group, rules.Node, error) {
	n, err := b.store.FindMeshV2Node(nodeID)
	if err != nil {
		return rules.Group{}, rules.Node{}, mapErr("find node", err)
	}
	g, err := b.store.Group(n.Group)
	if err != nil {
		return rules.Group{}, rules.Node{}, mapErr("find node", err)
	}
	return g, n, nil
}

// CursorAt implements Backend.
func (b *StoreBackend) CursorAt(ctx context.Context, groupID string, t time.Time) (int64, error) {
	if err := b.store.MeshV2Member(groupID, ""); err != nil {
		return 0, mapErr("cursor at", err)
	}
	c, err := b.store.CursorAt(ctx, groupID, t)
	return c, mapErr("cursor at", err)
}

// Open implements Backend with a hub reader that does not count for a node's presence,
// ended by nodeID's leave (hub.Sub.EndAtLeaveOf).
func (b *StoreBackend) Open(groupID, nodeID string) Reader {
	sub := b.hub.Subscribe(groupID, "", transportName)
	if nodeID != "" {
		sub.EndAtLeaveOf(nodeID)
	}
	return hubReader{sub}
}

// Attend implements Backend with a hub subscription that is never read: it only registers
// the node's presence over transport.
func (b *StoreBackend) Attend(groupID, nodeID, transport string) func() {
	return b.hub.Subscribe(groupID, nodeID, transport).Close
}

// linker is a Backend that can take a node's round trips and stall flags (StoreBackend).
type linker interface {
	Link(groupID, nodeID, transport string) live.Link
}

// Link implements linker: the node's round trips over transport go to the hub's presence.
func (b *StoreBackend) Link(groupID, nodeID, transport string) live.Link {
	return hubLink{h: b.hub, group: groupID, node: nodeID, transport: transport}
}

// hubLink reports a Mesh v2 socket's pings as its attributed node's link.
type hubLink struct {
	h                      *hub.Hub
	group, node, transport string
}

func (l hubLink) ObserveRTT(measure string, d time.Duration) {
	l.h.ObserveRTT(l.group, l.node, l.transport, measure, d)
}

func (l hubLink) Stalled(stalled bool) { l.h.SetStalled(l.group, l.node, stalled) }

type hubReader struct{ sub *hub.Sub }

func (r hubReader) Close() { r.sub.Close() }

func (r hubReader) Wait(ctx context.Context, since int64) error { return r.sub.Wait(ctx, since) }

func (r hubReader) Read(ctx context.Context, since int64, limit int) (hub.Batch, error) {
	bt, err := r.sub.Read(ctx, since, limit)
	if err != nil {
		return hub.Batch{}, mapErr("read", err)
	}
	// Items kept in memory hold their payload and data once, in their JSON: decode the few
	// kinds whose fields Mesh v2 reports, in a copy (the tail's items are shared).
	items := make([]stream.Item, len(bt.Items))
	for i, it := range bt.Items {
		if it.Kind == stream.KindEvent || it.Kind == stream.KindData {
			if it, err = it.Decode(); err != nil {
				return hub.Batch{}, mapErr("read", err)
			}
		}
		items[i] = it
	}
	bt.Items = items
	return bt, nil
}
