package meshv2

import (
	"context"
	"fmt"
	"maps"
	"meshbox/hub"
	"meshbox/rules"
	"meshbox/stream"
	"sort"
	"strings"
	"sync"
	"time"
)

// fakeBackend is an in-memory Backend for the protocol tests; the adapter over the real
// store has its own tests against SQLite.
type fakeBackend struct {
	mu     sync.Mutex
	groups map[string]*fakeGroup
	items  []fakeItem
	cursor int64
	wake   chan struct{}
	seq    int
	ttl    time.Duration
	// present counts Attend calls not yet released, by group, node and transport.
	present map[string]int
}

type fakeItem struct {
	gid string
	stream.Item
}

type fakeGroup struct {
	g     rules.Group
	nodes map[string]*rules.Node
	ended bool
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{groups: map[string]*fakeGroup{}, wake: make(chan struct{}), ttl: 10 * time.Minute, present: map[string]int{}}
}

func (f *fakeBackend) appendLocked(gid string, it stream.Item) int64 {
	f.cursor++
	it.Cursor = f.cursor
	it.At = time.Now()
	f.items = append(f.items, fakeItem{gid, it})
	close(f.wake)
	f.wake = make(chan struct{})
	return f.cursor
}

func (f *fakeBackend) liveLocked(gid string) (*fakeGroup, error) {
	fg := f.groups[gid]
	if fg == nil {
		return nil, fmt.Errorf("fake: %w", rules.ErrGroupNotFound)
	}
	if fg.ended {
		return nil, fmt.Errorf("fake: %w", rules.ErrGroupEnded)
	}
	return fg, nil
}

func (f *fakeBackend) CreateGroup(_ context.Context, ng rules.NewGroup) (rules.Joined, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fg := range f.groups {
		if !fg.ended && fg.g.Host == ng.HostID && fg.g.Domain == ng.Domain {
			return rules.Joined{Group: fg.g, Node: copyNode(fg.nodes[ng.HostID]), Cursor: f.cursor}, nil
		}
	}
	f.seq++
	now := time.Now()
	g := rules.Group{ID: fmt.Sprintf("g%d", f.seq), Domain: ng.Domain, Name: ng.Name, Host: ng.HostID,
		CreatedAt: now, ExpiresAt: now.Add(ng.Lifetime), UseWebSocket: ng.UseWebSocket, MeshV2: true}
	fg := &fakeGroup{g: g, nodes: map[string]*rules.Node{}}
	fg.nodes[ng.HostID] = &rules.Node{ID: ng.HostID, Group: g.ID, Name: ng.HostID, JoinedAt: now, LastSeen: now, ExpiresAt: now.Add(f.ttl), Data: map[string]string{}, Host: true, MeshV2: true}
	f.groups[g.ID] = fg
	c := f.appendLocked(g.ID, stream.Item{Kind: stream.KindJoin, Node: ng.HostID, Name: ng.HostID})
	return rules.Joined{Group: g, Node: copyNode(fg.nodes[ng.HostID]), Cursor: c}, nil
}

func (f *fakeBackend) Join(_ context.Context, gid, nid string) (rules.Joined, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return rules.Joined{}, err
	}
	now := time.Now()
	n := fg.nodes[nid]
	if n == nil {
		n = &rules.Node{ID: nid, Group: gid, Name: nid, JoinedAt: now, Data: map[string]string{}, MeshV2: true}
		fg.nodes[nid] = n
		f.appendLocked(gid, stream.Item{Kind: stream.KindJoin, Node: nid, Name: nid})
	}
	n.LastSeen, n.ExpiresAt = now, now.Add(f.ttl)
	return rules.Joined{Group: fg.g, Node: copyNode(n), Cursor: f.cursor}, nil
}

func copyNode(n *rules.Node) rules.Node {
	c := *n
	c.Data = maps.Clone(n.Data)
	return c
}

func (f *fakeBackend) Leave(_ context.Context, gid, nid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return err
	}
	if fg.nodes[nid] == nil {
		return fmt.Errorf("fake: %w", rules.ErrNodeNotFound)
	}
	delete(fg.nodes, nid)
	f.appendLocked(gid, stream.Item{Kind: stream.KindLeave, Node: nid, Reason: "left"})
	return nil
}

func (f *fakeBackend) Dissolve(_ context.Context, gid string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return err
	}
	fg.ended = true
	f.appendLocked(gid, stream.Item{Kind: stream.KindDissolve, Reason: "host"})
	return nil
}

func (f *fakeBackend) Heartbeat(_ context.Context, gid, nid string) (rules.Group, rules.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return rules.Group{}, rules.Node{}, err
	}
	n := fg.nodes[nid]
	if n == nil {
		return rules.Group{}, rules.Node{}, fmt.Errorf("fake: %w", rules.ErrNodeNotFound)
	}
	now := time.Now()
	n.LastSeen, n.ExpiresAt = now, now.Add(f.ttl)
	return fg.g, copyNode(n), nil
}

func (f *fakeBackend) ReplaceData(_ context.Context, gid, nid string, data map[string]string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return 0, err
	}
	n := fg.nodes[nid]
	if n == nil {
		return 0, fmt.Errorf("fake: %w", rules.ErrNodeNotFound)
	}
	changed := map[string]string{}
	for k := range n.Data {
		if _, ok := data[k]; !ok {
			changed[k] = ""
		}
	}
	maps.Copy(changed, data)
	n.Data = maps.Clone(data)
	n.DataAt = time.Now()
	return f.appendLocked(gid, stream.Item{Kind: stream.KindData, Node: nid, Data: changed}), nil
}

func (f *fakeBackend) Publish(_ context.Context, gid, nid string, events []rules.EventIn) ([]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return nil, err
	}
	if fg.nodes[nid] == nil {
		return nil, fmt.Errorf("fake: %w", rules.ErrNodeNotFound)
	}
	var cs []int64
	for _, e := range events {
		cs = append(cs, f.appendLocked(gid, stream.Item{Kind: stream.KindEvent, Node: nid, Name: e.Name, Payload: e.Payload, OrderKey: e.OrderKey, FiredAt: e.FiredAt}))
	}
	return cs, nil
}

func (f *fakeBackend) Snapshot(_ context.Context, gid string) (rules.Snapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fg, err := f.liveLocked(gid)
	if err != nil {
		return rules.Snapshot{}, err
	}
	s := rules.Snapshot{Group: fg.g, Cursor: f.cursor}
	for _, n := range fg.nodes {
		s.Nodes = append(s.Nodes, copyNode(n))
	}
	sort.Slice(s.Nodes, func(i, j int) bool { return s.Nodes[i].ID < s.Nodes[j].ID })
	return s, nil
}

func (f *fakeBackend) Group(ctx context.Context, gid string) (rules.Snapshot, error) {
	s, err := f.Snapshot(ctx, gid)
	s.Nodes = nil
	return s, err
}

func (f *fakeBackend) listLocked(keep func(rules.Group) bool, limit int) []rules.Group {
	var out []rules.Group
	for _, fg := range f.groups {
		if !fg.ended && keep(fg.g) {
			out = append(out, fg.g)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

func (f *fakeBackend) Groups(_ context.Context, domain string) ([]rules.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listLocked(func(g rules.Group) bool { return g.Domain == domain }, 0), nil
}

func (f *fakeBackend) SearchGroups(_ context.Context, prefix string, limit int) ([]rules.Group, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.listLocked(func(g rules.Group) bool { return strings.HasPrefix(g.Name, prefix) }, limit), nil
}

func (f *fakeBackend) FindNode(_ context.Context, nid string) (rules.Group, rules.Node, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, fg := range f.groups {
		if n := fg.nodes[nid]; n != nil && !fg.ended {
			return fg.g, copyNode(n), nil
		}
	}
	return rules.Group{}, rules.Node{}, fmt.Errorf("fake: %w", rules.ErrNodeNotFound)
}

func (f *fakeBackend) CursorAt(_ context.Context, gid string, t time.Time) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.cursor
	for _, it := range f.items {
		if it.gid == gid && it.At.After(t) {
			return it.Cursor - 1, nil
		}
	}
	return c, nil
}

func (f *fakeBackend) Open(gid, _ string) Reader { return &fakeReader{f: f, gid: gid} }

func (f *fakeBackend) Attend(gid, nid, transport string) func() {
	key := gid + "/" + nid + "/" + transport
	f.mu.Lock()
	f.present[key]++
	f.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			if f.present[key]--; f.present[key] == 0 {
				delete(f.present, key)
			}
			f.mu.Unlock()
		})
	}
}

// presence lists the attended "group/node/transport" keys.
func (f *fakeBackend) presence() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.present))
	for k := range f.present {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

type fakeReader struct {
	f   *fakeBackend
	gid string
}

func (r *fakeReader) Close() {}

func (r *fakeReader) after(since int64, limit int) ([]stream.Item, <-chan struct{}) {
	r.f.mu.Lock()
	defer r.f.mu.Unlock()
	var items []stream.Item
	for _, it := range r.f.items {
		if it.Cursor > since && len(items) < limit && it.gid == r.gid {
			items = append(items, it.Item)
		}
	}
	return items, r.f.wake
}

func (r *fakeReader) Read(_ context.Context, since int64, limit int) (hub.Batch, error) {
	items, _ := r.after(since, limit)
	res := hub.Batch{Items: items, Next: since}
	if len(items) > 0 {
		res.Next = items[len(items)-1].Cursor
	}
	return res, nil
}

func (r *fakeReader) Wait(ctx context.Context, since int64) error {
	for {
		items, wake := r.after(since, 1)
		if len(items) > 0 {
			return nil
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}
