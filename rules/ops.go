package rules

import (
	"context"
	"fmt"
	"maps"
	"time"

	"meshbox/stream"
)

// live checks that g (the group gid, nil when unknown) accepts requests at now.
func (e *Engine) live(g *groupState, gid string, now time.Time) error {
	switch {
	case g == nil:
		return fmt.Errorf("group %s: %w", gid, ErrGroupNotFound)
	case !g.endedAt.IsZero() && g.endReason == stream.ReasonExpired:
		// Ended by the purge: its lifetime or its host's heartbeats lapsed. A lifetime that
		// passed is still told as such; the purge does not record which of the two it was.
		if !now.Before(g.ExpiresAt) {
			return &EndedError{Group: gid, Why: EndedExpired}
		}
		return &EndedError{Group: gid, Why: EndedHostLost}
	case !g.endedAt.IsZero():
		return &EndedError{Group: gid, Why: EndedDissolved}
	case now.After(g.ExpiresAt):
		return &EndedError{Group: gid, Why: EndedExpired}
	case now.After(g.HostSeenAt.Add(e.opts.HostTTL)) && !e.present(gid, g.nodes[g.Host]):
		return &EndedError{Group: gid, Why: EndedHostLost}
	}
	return nil
}

// present reports whether node n of group gid counts as active because it has a stream open.
// A native node's open stream does. A Mesh v2 node's does not: the cloud renews Mesh v2 nodes
// by their heartbeats only, and a browser keeps answering WebSocket pings for a frozen or
// background tab, whose subscription would otherwise keep its group alive for ever while its
// members wait for an onGroupDissolve that never comes.
func (e *Engine) present(gid string, n *nodeState) bool {
	return n != nil && !n.MeshV2 && e.hooks.Active(gid, n.ID)
}

// liveNode returns the member nid of g if it is live at now.
func (e *Engine) liveNode(g *groupState, nid string, now time.Time) (*nodeState, error) {
	n := g.nodes[nid]
	if n == nil || (now.After(n.ExpiresAt) && !e.present(g.ID, n)) {
		return nil, fmt.Errorf("node %s in group %s: %w", nid, g.ID, ErrNodeNotFound)
	}
	return n, nil
}

// liveMember returns the live group gid as the batch sees it, for its live node nid.
func (t *tx) liveMember(gid, nid string) (*groupState, error) {
	g := t.group(gid)
	if err := t.e.live(g, gid, t.now); err != nil {
		return nil, err
	}
	if _, err := t.e.liveNode(g, nid, t.now); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *groupState) snapshot() Group {
	c := g.Group
	c.CreatedAt, c.ExpiresAt, c.HostSeenAt = ms(c.CreatedAt), ms(c.ExpiresAt), ms(c.HostSeenAt)
	return c
}

func (n *nodeState) snapshot() Node {
	c := n.Node
	c.JoinedAt, c.LastSeen, c.ExpiresAt, c.DataAt = ms(c.JoinedAt), ms(c.LastSeen), ms(c.ExpiresAt), ms(c.DataAt)
	c.Data = maps.Clone(n.Data)
	if c.Data == nil {
		c.Data = map[string]string{}
	}
	return c
}

// CreateGroup creates a group and its host node. With a HostID it is idempotent: while the
// host's group in that domain lives, the same group is returned (with a fresh token).
func (e *Engine) CreateGroup(ctx context.Context, ng NewGroup) (Joined, error) {
	if !ValidDomain(ng.Domain) {
		return Joined{}, invalid("domain must be 1-256 characters of A-Z a-z 0-9 . _ -")
	}
	if err := checkName("group name", ng.Name); err != nil {
		return Joined{}, err
	}
	if ng.Lifetime < 0 {
		return Joined{}, invalid("a group's lifetime must not be negative")
	}
	var err error
	if ng.HostName, err = checkNode(ng.HostID, ng.HostName, "host"); err != nil {
		return Joined{}, err
	}
	client := clientOf(ctx)
	if client != "" {
		if ok, wait := e.createRate.Allow(client, e.now()); !ok {
			return Joined{}, &RateLimitError{What: "too many new groups from " + client, RetryAfter: wait}
		}
	}
	var res Joined
	err = e.do(ctx, func(t *tx) error {
		// mine and mineHere are the client's groups in all domains and in this one.
		live, total, mine, mineHere := 0, 0, 0, 0
		var same *groupState
		t.each(func(g *groupState) {
			if e.live(g, g.ID, t.now) != nil {
				return
			}
			total++
			if client != "" && g.client == client {
				mine++
			}
			if g.Domain != ng.Domain {
				return
			}
			if ng.HostID != "" && g.Host == ng.HostID {
				same = g
			}
			if client != "" && g.client == client {
				mineHere++
			}
			live++
		})
		if same != nil {
			// Only Mesh v2 names its own ids: it may take up its own group again, never a
			// native host's (that would hand it the host's token).
			if !ng.MeshV2Host || !same.nodes[ng.HostID].MeshV2 {
				return fmt.Errorf("node %s is the host of group %s and holds a token: %w", ng.HostID, same.ID, ErrUnauthorized)
			}
			return e.rejoin(t, same, ng.HostID, &res)
		}
		if live >= e.opts.Limits.MaxGroupsPerDomain {
			return fmt.Errorf("domain %s already has %d live groups: %w", ng.Domain, live, ErrDomainFull)
		}
		// Groups end by themselves (host heartbeat, lifetime): a client at a cap can retry.
		// A share of the domain first: it leaves the rest of the domain to the class.
		if l := e.opts.Limits.MaxGroupsPerClientDomain; l > 0 && mineHere >= l {
			return shareExceeded("%s already created %d live groups in domain %s, its share; end one first", client, mineHere, ng.Domain)
		}
		if mine >= e.opts.Limits.MaxGroupsPerClient {
			return shareExceeded("%s already created %d live groups; end one first", client, mine)
		}
		if l := e.opts.Limits.MaxNodesPerClient; l > 0 && client != "" {
			if held := t.clientNodes(client); held >= l {
				return shareExceeded("%s already joined %d live nodes, its share; leave a group first", client, held)
			}
		}
		if total >= e.opts.Limits.MaxGroups {
			return &RateLimitError{What: fmt.Sprintf("this server already has %d live groups", total), RetryAfter: time.Minute}
		}
		lifetime := ng.Lifetime
		if lifetime <= 0 || lifetime > e.opts.MaxGroupLifetime {
			lifetime = e.opts.MaxGroupLifetime
		}
		gid := newID(5)
		for t.group(gid) != nil {
			gid = newID(5)
		}
		nid := ng.HostID
		if nid == "" {
			nid = newID(5)
		}
		now := t.now
		d := t.create(&groupState{Group: Group{
			ID: gid, Domain: ng.Domain, Name: ng.Name, Host: nid, CreatedAt: ms(now),
			ExpiresAt: ms(now.Add(lifetime)), HostSeenAt: now, UseWebSocket: ng.UseWebSocket,
			MeshV2: ng.MeshV2Host || ng.OpenToMeshV2,
		}, client: client, nodes: map[string]*nodeState{}})
		t.putGroup(d.groupState)
		t.domains = append(t.domains, ng.Domain)
		return e.addNode(t, d, nid, ng.HostName, ng.MeshV2Host, client, &res)
	})
	return res, err
}

// Join adds a node to a group. With an ID that is already a member, the member is returned
// (with a fresh token), so a client may retry a join safely.
func (e *Engine) Join(ctx context.Context, gid string, nn NewNode) (Joined, error) {
	var err error
	if nn.Name, err = checkNode(nn.ID, nn.Name, "node"); err != nil {
		return Joined{}, err
	}
	client := clientOf(ctx)
	var res Joined
	err = e.do(ctx, func(t *tx) error {
		g := t.group(gid)
		if err := e.live(g, gid, t.now); err != nil {
			return err
		}
		if nn.MeshV2 && !g.MeshV2 {
			return fmt.Errorf("group %s is not open to Mesh v2: %w", gid, ErrUnauthorized)
		}
		if n := g.nodes[nn.ID]; nn.ID != "" && n != nil {
			if !nn.MeshV2 || !n.MeshV2 {
				return fmt.Errorf("node %s of group %s holds a token: %w", nn.ID, gid, ErrUnauthorized)
			}
			return e.rejoin(t, g, nn.ID, &res)
		}
		if len(g.nodes) >= e.opts.Limits.MaxNodesPerGroup {
			return fmt.Errorf("group %s already has %d nodes: %w", gid, len(g.nodes), ErrGroupFull)
		}
		// One address's share, so that it cannot fill a classmate's group with made-up
		// members, nor spread them over every group. Members leave or lapse by themselves.
		if l := e.opts.Limits.MaxNodesPerClientGroup; l > 0 && client != "" && g.clients[client] >= l {
			return shareExceeded("%s already joined %d nodes to group %s, its share; leave first", client, g.clients[client], gid)
		}
		if l := e.opts.Limits.MaxNodesPerClient; l > 0 && client != "" {
			if held := t.clientNodes(client); held >= l {
				return shareExceeded("%s already joined %d live nodes, its share; leave a group first", client, held)
			}
		}
		nid := nn.ID
		if nid == "" {
			nid = newID(5)
			for g.nodes[nid] != nil {
				nid = newID(5)
			}
		}
		return e.addNode(t, t.edit(g), nid, nn.Name, nn.MeshV2, client, &res)
	})
	return res, err
}

func (e *Engine) addNode(t *tx, d *draft, nid, name string, meshV2 bool, client string, res *Joined) error {
	now := t.now
	token, hash := newToken(nid)
	host := nid == d.Host
	n := &nodeState{Node: Node{
		ID: nid, Group: d.ID, Name: name, JoinedAt: ms(now), LastSeen: now,
		ExpiresAt: now.Add(e.ttl(host)), Data: map[string]string{}, Host: host, MeshV2: meshV2,
	}, client: client, tokenHash: hash}
	d.addMember(n)
	t.putNode(n)
	i := t.append(d.ID, stream.Item{Kind: stream.KindJoin, Node: nid, Name: name})
	t.afterCommit(func() {
		*res = Joined{Group: d.snapshot(), Node: n.snapshot(), Token: token, Cursor: t.cursor(i)}
	})
	return nil
}

// rejoin answers a repeated create or join of a node that is already a member: it keeps its
// place and data and gets a new token.
func (e *Engine) rejoin(t *tx, g *groupState, nid string, res *Joined) error {
	d := t.edit(g)
	token, hash := newToken(nid)
	n := t.touch(d, nid)
	n.tokenHash = hash
	t.putNode(n)
	if n.Host {
		t.putGroup(d.groupState)
	}
	t.afterCommit(func() {
		*res = Joined{Group: d.snapshot(), Node: n.snapshot(), Token: token, Cursor: e.Watermark()}
	})
	return nil
}

// Leave removes a node from its group. The host leaving dissolves the group (removed by the
// admin: reason admin).
func (e *Engine) Leave(ctx context.Context, gid, nid, reason string) error {
	return e.do(ctx, func(t *tx) error {
		g := t.group(gid)
		if err := e.live(g, gid, t.now); err != nil {
			return err
		}
		n := g.nodes[nid]
		if n == nil {
			return fmt.Errorf("node %s in group %s: %w", nid, gid, ErrNodeNotFound)
		}
		if n.Host {
			r := stream.ReasonHost
			if reason == stream.ReasonRemoved {
				r = stream.ReasonAdmin
			}
			e.dissolve(t, g, r)
			return nil
		}
		e.removeNode(t, g, nid, reason)
		return nil
	})
}

func (e *Engine) removeNode(t *tx, g *groupState, nid, reason string) {
	t.edit(g).dropMember(nid)
	t.change(stream.Change{Kind: stream.DeleteNode, Node: stream.NodeRecord{Group: g.ID, ID: nid}})
	t.append(g.ID, stream.Item{Kind: stream.KindLeave, Node: nid, Reason: reason})
}

// Dissolve ends a group: its nodes leave and readers get a final dissolve item.
func (e *Engine) Dissolve(ctx context.Context, gid, reason string) error {
	return e.do(ctx, func(t *tx) error {
		g := t.group(gid)
		if err := e.live(g, gid, t.now); err != nil {
			return err
		}
		e.dissolve(t, g, reason)
		return nil
	})
}

func (e *Engine) dissolve(t *tx, g *groupState, reason string) {
	d := t.edit(g)
	d.endedAt, d.endReason = t.now, reason
	// The members' records stay: they may still read the final items, also after a restart.
	d.endMembers()
	d.endItem = t.append(g.ID, stream.Item{Kind: stream.KindDissolve, Reason: reason})
	t.putGroup(d.groupState)
}

// Heartbeat renews a node, and for the host the group's heartbeat too. It never extends the
// group's absolute expiry.
func (e *Engine) Heartbeat(ctx context.Context, gid, nid string) (Group, Node, error) {
	var g0 Group
	var n0 Node
	err := e.do(ctx, func(t *tx) error {
		g, err := t.liveMember(gid, nid)
		if err != nil {
			return err
		}
		d := t.edit(g)
		n := t.touch(d, nid)
		t.putNode(n)
		if n.Host {
			t.putGroup(d.groupState)
		}
		t.afterCommit(func() { g0, n0 = d.snapshot(), n.snapshot() })
		return nil
	})
	return g0, n0, err
}

// SetData changes a node's data: keys with an empty value are deleted. With replace, keys not
// named are deleted too. It returns the cursor of the data item (or the current cursor when
// nothing changed).
func (e *Engine) SetData(ctx context.Context, gid, nid string, data map[string]string, replace bool) (int64, error) {
	if err := e.opts.Limits.checkData(data, replace); err != nil {
		return 0, err
	}
	if err := e.allow(gid, nid, "updates"); err != nil {
		return 0, err
	}
	if err := e.allowBytes(gid, nid, dataBytes(data)); err != nil {
		return 0, err
	}
	var cursor int64
	err := e.do(ctx, func(t *tx) error {
		g, err := t.liveMember(gid, nid)
		if err != nil {
			return err
		}
		old := g.nodes[nid].Data
		changed := map[string]string{}
		next := maps.Clone(old)
		if next == nil {
			next = map[string]string{}
		}
		if replace {
			for k := range old {
				if _, ok := data[k]; !ok {
					changed[k] = ""
					delete(next, k)
				}
			}
		}
		for k, v := range data {
			if was, ok := old[k]; ok && was == v || !ok && v == "" {
				continue
			}
			changed[k] = v
			if v == "" {
				delete(next, k)
			} else {
				next[k] = v
			}
		}
		if len(next) > e.opts.Limits.MaxDataKeys {
			return tooLarge("a node may hold at most %d data keys", e.opts.Limits.MaxDataKeys)
		}
		d := t.edit(g)
		n := t.touch(d, nid)
		if len(changed) == 0 {
			t.afterCommit(func() { cursor = e.Watermark() })
			return nil
		}
		// The map is replaced, never changed in place: readers may hold the old one.
		n.Data, n.DataAt = next, ms(t.now)
		t.putNode(n)
		i := t.append(gid, stream.Item{Kind: stream.KindData, Node: nid, Data: changed})
		t.afterCommit(func() { cursor = t.cursor(i) })
		return nil
	})
	return cursor, err
}

// Publish appends events to the group's stream and returns their cursors.
func (e *Engine) Publish(ctx context.Context, gid, nid string, events []EventIn) ([]int64, error) {
	if err := e.opts.Limits.checkEvents(events); err != nil {
		return nil, err
	}
	if err := e.allow(gid, nid, "publishes"); err != nil {
		return nil, err
	}
	if err := e.allowBytes(gid, nid, eventBytes(events)); err != nil {
		return nil, err
	}
	cursors := make([]int64, len(events))
	err := e.do(ctx, func(t *tx) error {
		g, err := t.liveMember(gid, nid)
		if err != nil {
			return err
		}
		t.touch(t.edit(g), nid)
		first := 0
		for i, ev := range events {
			j := t.append(gid, stream.Item{Kind: stream.KindEvent, Node: nid, Name: ev.Name, Payload: ev.Payload, OrderKey: ev.OrderKey, FiredAt: ev.FiredAt})
			if i == 0 {
				first = j
			}
		}
		t.afterCommit(func() {
			for i := range cursors {
				cursors[i] = t.cursor(first + i)
			}
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return cursors, nil
}

// allow charges one publish or data change to the node's rate.
func (e *Engine) allow(gid, nid, what string) error {
	if ok, wait := e.rate.Allow(gid+"/"+nid, e.now()); !ok {
		return &RateLimitError{What: "too many " + what + " from node " + nid, RetryAfter: wait}
	}
	return nil
}
