package meshv2

import (
	"context"
	"fmt"
	"time"

	"meshbox/hub"
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

func groupOf(g rules.Group) Group {
	return Group{ID: g.ID, Domain: g.Domain, Name: g.Name, HostID: g.Host, CreatedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt, UseWebSocket: g.UseWebSocket}
}

func nodeOf(n rules.Node) Node {
	return Node{ID: n.ID, Name: n.Name, JoinedAt: n.JoinedAt, LastSeen: n.LastSeen, ExpiresAt: n.ExpiresAt, DataAt: n.DataAt, Data: n.Data}
}

func groupsOf(gs []rules.Group) []Group {
	out := make([]Group, len(gs))
	for i, g := range gs {
		out[i] = groupOf(g)
	}
	return out
}

// CreateGroup implements Backend; the host's node id doubles as its name, as in the cloud.
func (b *StoreBackend) CreateGroup(ctx context.Context, g NewGroup) (Group, error) {
	j, err := b.store.CreateGroup(ctx, rules.NewGroup{
		Domain: g.Domain, Name: g.Name, HostID: g.HostID, HostName: g.HostID, Lifetime: g.Lifetime, UseWebSocket: g.UseWebSocket,
		MeshV2Host: true,
	})
	if err != nil {
		return Group{}, mapErr("create group", err)
	}
	g2 := groupOf(j.Group)
	g2.Cursor = j.Cursor
	return g2, nil
}

// Join implements Backend.
func (b *StoreBackend) Join(ctx context.Context, groupID, nodeID string) (Group, Node, error) {
	j, err := b.store.Join(ctx, groupID, rules.NewNode{ID: nodeID, Name: nodeID, MeshV2: true})
	if err != nil {
		return Group{}, Node{}, mapErr("join", err)
	}
	g := groupOf(j.Group)
	g.Cursor = j.Cursor
	return g, nodeOf(j.Node), nil
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
func (b *StoreBackend) Heartbeat(ctx context.Context, groupID, nodeID string) (Group, Node, error) {
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return Group{}, Node{}, mapErr("heartbeat", err)
	}
	g, n, err := b.store.Heartbeat(ctx, groupID, nodeID)
	if err != nil {
		return Group{}, Node{}, mapErr("heartbeat", err)
	}
	return groupOf(g), nodeOf(n), nil
}

// ReplaceData implements Backend.
func (b *StoreBackend) ReplaceData(ctx context.Context, groupID, nodeID string, data map[string]string) (int64, error) {
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return 0, mapErr("set data", err)
	}
	c, err := b.store.SetData(ctx, groupID, nodeID, data, true)
	return c, mapErr("set data", err)
}

// Publish implements Backend. An empty payload is stored as none, as the cloud stores null.
func (b *StoreBackend) Publish(ctx context.Context, groupID, nodeID string, events []EventIn) ([]int64, error) {
	in := make([]rules.EventIn, len(events))
	for i, e := range events {
		in[i] = rules.EventIn{Name: e.Name, OrderKey: e.OrderKey, FiredAt: e.FiredAt}
		if e.Payload != "" {
			p := e.Payload
			in[i].Payload = &p
		}
	}
	if err := b.store.MeshV2Member(groupID, nodeID); err != nil {
		return nil, mapErr("publish", err)
	}
	cs, err := b.store.Publish(ctx, groupID, nodeID, in)
	return cs, mapErr("publish", err)
}

// Snapshot implements Backend.
func (b *StoreBackend) Snapshot(ctx context.Context, groupID string) (Snapshot, error) {
	if err := b.store.MeshV2Member(groupID, ""); err != nil {
		return Snapshot{}, mapErr("snapshot", err)
	}
	s, err := b.store.Snapshot(ctx, groupID)
	if err != nil {
		return Snapshot{}, mapErr("snapshot", err)
	}
	out := Snapshot{Group: groupOf(s.Group), Cursor: s.Cursor, Nodes: make([]Node, len(s.Nodes))}
	for i, n := range s.Nodes {
		out.Nodes[i] = nodeOf(n)
	}
	return out, nil
}

// Group implements Backend with the rules' in-memory read; the cursor is read after the
// group, so nothing of the group's state is newer than it.
func (b *StoreBackend) Group(_ context.Context, groupID string) (Snapshot, error) {
	if err := b.store.MeshV2Member(groupID, ""); err != nil {
		return Snapshot{}, mapErr("group", err)
	}
	g, err := b.store.Group(groupID)
	if err != nil {
		return Snapshot{}, mapErr("group", err)
	}
	return Snapshot{Group: groupOf(g), Cursor: b.store.LastCursor()}, nil
}

// Groups implements Backend.
func (b *StoreBackend) Groups(_ context.Context, domain string) ([]Group, error) {
	if domain == "" {
		return nil, nil
	}
	return groupsOf(meshV2Only(b.store.Groups(domain), 0)), nil
}

// SearchGroups implements Backend.
func (b *StoreBackend) SearchGroups(_ context.Context, prefix string, limit int) ([]Group, error) {
	if prefix == "" {
		return nil, nil
	}
	return groupsOf(meshV2Only(b.store.SearchGroups(prefix, 0), limit)), nil
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
func (b *StoreBackend) FindNode(_ context.Context, nodeID string) (Group, Node, error) {
	n, err := b.store.FindMeshV2Node(nodeID)
	if err != nil {
		return Group{}, Node{}, mapErr("find node", err)
	}
	g, err := b.store.Group(n.Group)
	if err != nil {
		return Group{}, Node{}, mapErr("find node", err)
	}
	return groupOf(g), nodeOf(n), nil
}

// CursorAt implements Backend.
func (b *StoreBackend) CursorAt(ctx context.Context, groupID string, t time.Time) (int64, error) {
	if err := b.store.MeshV2Member(groupID, ""); err != nil {
		return 0, mapErr("cursor at", err)
	}
	c, err := b.store.CursorAt(ctx, groupID, t)
	return c, mapErr("cursor at", err)
}

// Open implements Backend with a hub reader that is not tied to a node.
func (b *StoreBackend) Open(groupID string) Reader {
	return hubReader{b.hub.Subscribe(groupID, "", transportName)}
}

// Attend implements Backend with a hub subscription that is never read: it only registers
// the node's presence over transport.
func (b *StoreBackend) Attend(groupID, nodeID, transport string) func() {
	return b.hub.Subscribe(groupID, nodeID, transport).Close
}

type hubReader struct{ sub *hub.Sub }

func (r hubReader) Close() { r.sub.Close() }

func (r hubReader) Wait(ctx context.Context, since int64) error { return r.sub.Wait(ctx, since) }

func (r hubReader) Read(ctx context.Context, since int64, limit int) (ReadResult, error) {
	bt, err := r.sub.Read(ctx, since, limit)
	if err != nil {
		return ReadResult{}, mapErr("read", err)
	}
	out := ReadResult{Next: bt.Next, Truncated: bt.Truncated, Items: make([]Item, len(bt.Items))}
	for i, it := range bt.Items {
		if it.Kind == stream.KindEvent || it.Kind == stream.KindData {
			// Items kept in memory hold their payload and data once, in their JSON.
			if it, err = it.Decode(); err != nil {
				return ReadResult{}, mapErr("read", err)
			}
		}
		out.Items[i] = Item{
			Cursor: it.Cursor, Kind: it.Kind, Node: it.Node, Name: it.Name, OrderKey: it.OrderKey,
			At: it.At, FiredAt: it.FiredAt, Data: it.Data, Reason: it.Reason,
		}
		if it.Payload != nil {
			out.Items[i].Payload = *it.Payload
		}
	}
	return out, nil
}
