package rules

import (
	"maps"
	"slices"
	"time"

	"meshbox/stream"
)

// tx is one batch as the writer builds it: the groups it changed (copies of the committed
// ones, visible to the batch's later requests and to nobody else), the items and state changes
// for the log, and what to tell each request once the batch committed.
//
// An op checks its preconditions before its first edit: an op that returns an error must have
// changed nothing, since later ops of the batch see its edits.
type tx struct {
	e      *Engine
	now    time.Time
	groups map[string]*draft // nil: forgotten in this batch
	batch  stream.Batch
	bytes  int      // payload bytes of the batch's items, for the batch bound
	after  []func() // run once the batch committed and was applied
	fatal  error    // a failure of the batch itself: nothing of it is kept
	// domains are those the batch creates groups in (a shared log checks them).
	domains []string
	// moved maps an item's index as appended (0-based) to its index in batch.Items once
	// groupItems reordered them (nil: not reordered).
	moved []int
	// base is the log position the state the batch is built on reflects (a shared log's):
	// the writer may apply more before the commit (follow.go, followWrites), which the log's
	// checks then compare with.
	base int64
}

// draft is a group being changed by the batch.
type draft struct {
	*groupState
	// endItem is the 1-based index in the batch of the group's dissolve item (0: none).
	endItem int
	// copied names the nodes already copied for this batch.
	copied map[string]bool
}

func (e *Engine) newTx() *tx {
	now := e.now()
	// Room for as many items as the previous batch had ops (a publish is mostly one event):
	// under load a batch's items would otherwise be copied through every doubling.
	return &tx{e: e, now: now, groups: map[string]*draft{}, base: e.pos,
		batch: stream.Batch{Now: now, Items: make([]stream.Item, 0, min(e.lastOps, maxBatchOps))}}
}

// group returns the group as the batch sees it (nil when unknown). The writer is the only
// one that changes the committed map, so it reads it without the lock.
func (t *tx) group(gid string) *groupState {
	if d, ok := t.groups[gid]; ok {
		if d == nil {
			return nil
		}
		return d.groupState
	}
	return t.e.groups[gid]
}

// each calls fn with every group as the batch sees it.
func (t *tx) each(fn func(g *groupState)) {
	for id, g := range t.e.groups {
		if _, ok := t.groups[id]; !ok {
			fn(g)
		}
	}
	for _, d := range t.groups {
		if d != nil {
			fn(d.groupState)
		}
	}
}

// edit returns the batch's own copy of g, to change.
func (t *tx) edit(g *groupState) *draft {
	if d := t.groups[g.ID]; d != nil {
		return d
	}
	c := *g
	c.nodes = maps.Clone(g.nodes)
	c.clients = maps.Clone(g.clients)
	d := &draft{groupState: &c, copied: map[string]bool{}}
	t.groups[g.ID] = d
	return d
}

// create adds a new group to the batch.
func (t *tx) create(g *groupState) *draft {
	d := &draft{groupState: g, copied: map[string]bool{}}
	t.groups[g.ID] = d
	return d
}

// forget drops a group from the state.
func (t *tx) forget(gid string) {
	t.groups[gid] = nil
	t.change(stream.Change{Kind: stream.DeleteGroup, Group: stream.GroupRecord{ID: gid}})
}

// addMember makes n a member of the draft and counts it for its client.
func (d *draft) addMember(n *nodeState) {
	d.nodes[n.ID] = n
	d.copied[n.ID] = true
	d.Nodes = len(d.nodes)
	if n.client != "" {
		if d.clients == nil {
			d.clients = map[string]int{}
		}
		d.clients[n.client]++
	}
}

// dropMember removes the member nid from the draft and from its client's count.
func (d *draft) dropMember(nid string) {
	n := d.nodes[nid]
	if n == nil {
		return
	}
	delete(d.nodes, nid)
	d.Nodes = len(d.nodes)
	if n.client != "" && d.clients[n.client] > 0 {
		if d.clients[n.client]--; d.clients[n.client] == 0 {
			delete(d.clients, n.client)
		}
	}
}

// endMembers moves the draft's members to its former ones (a dissolve): nobody holds a
// place in it any more.
func (d *draft) endMembers() {
	d.former, d.nodes, d.Nodes, d.clients = d.nodes, map[string]*nodeState{}, 0, nil
}

// clientNodes counts the members client joined in every group, as the batch sees them: the
// committed count with what the batch changed. A group past its end that the purge has not
// dissolved yet still counts, for at most a purge interval.
func (t *tx) clientNodes(client string) int {
	n := t.e.members[client]
	for id, d := range t.groups {
		if old := t.e.groups[id]; old != nil {
			n -= old.clients[client]
		}
		if d != nil {
			n += d.clients[client]
		}
	}
	return n
}

// node returns the draft's own copy of its node nid, to change (nil when not a member).
func (d *draft) node(nid string) *nodeState {
	n := d.nodes[nid]
	if n == nil || d.copied[nid] {
		return n
	}
	c := *n
	d.nodes[nid] = &c
	d.copied[nid] = true
	return &c
}

// append adds an item to the batch and returns its 1-based index; the log gives it its cursor.
func (t *tx) append(gid string, it stream.Item) int {
	it.Group = gid
	t.bytes += len(it.Name) + len(it.Node) + len(it.OrderKey) + 64
	if it.Payload != nil {
		t.bytes += len(*it.Payload)
	}
	for k, v := range it.Data {
		t.bytes += len(k) + len(v)
	}
	t.batch.Items = append(t.batch.Items, it)
	return len(t.batch.Items)
}

// cursor returns the cursor of the item at 1-based index i; call it after the commit.
func (t *tx) cursor(i int) int64 {
	if t.moved != nil {
		return t.batch.Items[t.moved[i-1]].Cursor
	}
	return t.batch.Items[i-1].Cursor
}

// groupItems puts each group's items of the batch together, in the order the groups first
// appear and each group's in its order, so that a shared log, which stores a group's run of
// items as one message, stores one message per group rather than one per request when the
// requests of several classes interleave. Items of different groups are independent, so
// their order between groups is free; indexes handed out by append keep naming their item.
func (t *tx) groupItems() {
	items := t.batch.Items
	first := map[string]int{} // group → its rank by first appearance
	interleaved := false
	for i := range items {
		g := items[i].Group
		if _, ok := first[g]; ok {
			interleaved = interleaved || g != items[i-1].Group
			continue
		}
		first[g] = len(first)
	}
	if !interleaved {
		return
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return first[items[a].Group] - first[items[b].Group] })
	grouped := make([]stream.Item, len(items))
	t.moved = make([]int, len(items))
	for to, from := range order {
		grouped[to] = items[from]
		t.moved[from] = to
	}
	t.batch.Items = grouped
}

func (t *tx) change(c stream.Change) { t.batch.Changes = append(t.batch.Changes, c) }

// putGroup stores the group's record.
func (t *tx) putGroup(g *groupState) {
	t.change(stream.Change{Kind: stream.PutGroup, Group: stream.GroupRecord{
		ID: g.ID, Domain: g.Domain, Name: g.Name, Host: g.Host, CreatedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt,
		HostSeenAt: g.HostSeenAt, UseWebSocket: g.UseWebSocket, EndedAt: g.endedAt, EndReason: g.endReason,
		MeshV2: g.MeshV2,
	}})
}

// putNode stores the node's record. n must be the batch's own copy.
func (t *tx) putNode(n *nodeState) {
	n.storedExp = n.ExpiresAt
	t.change(stream.Change{Kind: stream.PutNode, Node: stream.NodeRecord{
		Group: n.Group, ID: n.ID, Name: n.Name, TokenHash: n.tokenHash, JoinedAt: n.JoinedAt, LastSeen: n.LastSeen,
		ExpiresAt: n.ExpiresAt, Data: n.Data, DataAt: n.DataAt, MeshV2: n.MeshV2,
	}})
}

// afterCommit runs fn once the batch committed and was applied (not when it failed).
func (t *tx) afterCommit(fn func()) { t.after = append(t.after, fn) }

// touch records activity of a node: its expiry moves, and a host's heartbeat with it. It is
// kept in memory only; a heartbeat stores it.
func (t *tx) touch(d *draft, nid string) *nodeState {
	n := d.node(nid)
	n.LastSeen = t.now
	n.ExpiresAt = t.now.Add(t.e.ttl(n.Host))
	if n.Host {
		d.HostSeenAt = t.now
	}
	return n
}
