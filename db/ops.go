package db

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"time"
	"unicode/utf8"
)

var domainPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,256}$`)

// ValidDomain reports whether d is a usable domain name: 1–256 characters of [A-Za-z0-9._-].
func ValidDomain(d string) bool { return domainPattern.MatchString(d) }

// ValidID reports whether a client-chosen node id is usable.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f || r == '/' {
			return false
		}
	}
	return true
}

func validName(n string) bool { return n != "" && len(n) <= 256 && utf8.ValidString(n) }

// checkNode validates a node's optional client-chosen id and its name, which defaults to def.
func checkNode(id, name, def string) (string, error) {
	if id != "" && !ValidID(id) {
		return "", fmt.Errorf("node id must be 1-128 printable characters without '/': %w", ErrInvalid)
	}
	if name == "" {
		name = def
	}
	if !validName(name) {
		return "", fmt.Errorf("node name must be 1-256 characters: %w", ErrInvalid)
	}
	return name, nil
}

// live returns the group if it accepts requests now. Called by the writer or under s.mu.
func (s *Store) live(gid string, now time.Time) (*groupState, error) {
	g := s.groups[gid]
	switch {
	case g == nil:
		return nil, fmt.Errorf("group %s: %w", gid, ErrGroupNotFound)
	case !g.endedAt.IsZero():
		return nil, fmt.Errorf("group %s was dissolved (%s): %w", gid, g.endReason, ErrGroupEnded)
	case now.After(g.ExpiresAt):
		return nil, fmt.Errorf("group %s expired: %w", gid, ErrGroupEnded)
	case now.After(g.HostSeenAt.Add(s.opts.HostTTL)) && !s.hooks.Active(gid, g.Host):
		return nil, fmt.Errorf("group %s: host heartbeat expired: %w", gid, ErrGroupEnded)
	}
	return g, nil
}

func (s *Store) liveNode(g *groupState, nid string, now time.Time) (*nodeState, error) {
	n := g.nodes[nid]
	if n == nil || (now.After(n.ExpiresAt) && !s.hooks.Active(g.ID, nid)) {
		return nil, fmt.Errorf("node %s in group %s: %w", nid, g.ID, ErrNodeNotFound)
	}
	return n, nil
}

// ttl is how long a node lives without activity: the host's lapse ends the group.
func (s *Store) ttl(host bool) time.Duration {
	if host {
		return s.opts.HostTTL
	}
	return s.opts.MemberTTL
}

// liveMember returns a live group and its live node nid.
func (s *Store) liveMember(gid, nid string, now time.Time) (*groupState, *nodeState, error) {
	g, err := s.live(gid, now)
	if err != nil {
		return nil, nil, err
	}
	n, err := s.liveNode(g, nid, now)
	if err != nil {
		return nil, nil, err
	}
	return g, n, nil
}

// touch records activity of a node: its expiry moves, and a host's heartbeat with it.
func (s *Store) touch(g *groupState, n *nodeState, now time.Time) {
	s.mu.Lock()
	n.LastSeen = now
	n.ExpiresAt = now.Add(s.ttl(n.Host))
	if n.Host {
		g.HostSeenAt = now
	}
	s.mu.Unlock()
}

func (g *groupState) snapshot() Group {
	c := g.Group
	c.CreatedAt, c.ExpiresAt, c.HostSeenAt = ms(c.CreatedAt), ms(c.ExpiresAt), ms(c.HostSeenAt)
	return c
}

func (n *nodeState) snapshot() Node {
	c := n.Node
	c.JoinedAt, c.LastSeen, c.ExpiresAt, c.DataAt = ms(c.JoinedAt), ms(c.LastSeen), ms(c.ExpiresAt), ms(c.DataAt)
	c.Data = make(map[string]string, len(n.Data))
	for k, v := range n.Data {
		c.Data[k] = v
	}
	return c
}

// CreateGroup creates a group and its host node. With a HostID it is idempotent: while the
// host's group in that domain lives, the same group is returned (with a fresh token).
func (s *Store) CreateGroup(ctx context.Context, ng NewGroup) (Joined, error) {
	if !ValidDomain(ng.Domain) {
		return Joined{}, fmt.Errorf("domain must be 1-256 characters of A-Z a-z 0-9 . _ -: %w", ErrInvalid)
	}
	if !validName(ng.Name) {
		return Joined{}, fmt.Errorf("group name must be 1-256 characters: %w", ErrInvalid)
	}
	var err error
	if ng.HostName, err = checkNode(ng.HostID, ng.HostName, "host"); err != nil {
		return Joined{}, err
	}
	var res Joined
	err = s.do(ctx, func(t *txn) error {
		now := t.now
		live := 0
		for _, g := range s.groups {
			if g.Domain != ng.Domain {
				continue
			}
			if _, err := s.live(g.ID, now); err != nil {
				continue
			}
			if ng.HostID != "" && g.Host == ng.HostID {
				return s.rejoin(t, g, g.nodes[g.Host], &res)
			}
			live++
		}
		if live >= s.opts.MaxGroupsPerDomain {
			return fmt.Errorf("domain %s already has %d live groups: %w", ng.Domain, live, ErrDomainFull)
		}
		lifetime := ng.Lifetime
		if lifetime <= 0 || lifetime > s.opts.MaxGroupLifetime {
			lifetime = s.opts.MaxGroupLifetime
		}
		gid := newID(5)
		for s.groups[gid] != nil {
			gid = newID(5)
		}
		nid := ng.HostID
		if nid == "" {
			nid = newID(5)
		}
		g := &groupState{Group: Group{
			ID: gid, Domain: ng.Domain, Name: ng.Name, Host: nid, CreatedAt: now.Truncate(time.Millisecond).UTC(),
			ExpiresAt: now.Add(lifetime).Truncate(time.Millisecond).UTC(), HostSeenAt: now, UseWebSocket: ng.UseWebSocket,
			Nodes: 0,
		}, nodes: map[string]*nodeState{}}
		if err := t.exec(t.ctx, `INSERT INTO groups(id, domain, name, host, created_at, expires_at, host_seen_at, use_ws, first_cursor) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			g.ID, g.Domain, g.Name, g.Host, g.CreatedAt.UnixMilli(), g.ExpiresAt.UnixMilli(), now.UnixMilli(), g.UseWebSocket, s.lastCursor); err != nil {
			return err
		}
		s.mu.Lock()
		s.groups[gid] = g
		s.mu.Unlock()
		return s.addNode(t, g, nid, ng.HostName, &res)
	})
	return res, err
}

// Join adds a node to a group. With an ID that is already a member, the member is returned
// (with a fresh token), so a client may retry a join safely.
func (s *Store) Join(ctx context.Context, gid string, nn NewNode) (Joined, error) {
	var err error
	if nn.Name, err = checkNode(nn.ID, nn.Name, "node"); err != nil {
		return Joined{}, err
	}
	var res Joined
	err = s.do(ctx, func(t *txn) error {
		g, err := s.live(gid, t.now)
		if err != nil {
			return err
		}
		if n := g.nodes[nn.ID]; nn.ID != "" && n != nil {
			return s.rejoin(t, g, n, &res)
		}
		if len(g.nodes) >= s.opts.MaxNodesPerGroup {
			return fmt.Errorf("group %s already has %d nodes: %w", gid, len(g.nodes), ErrGroupFull)
		}
		nid := nn.ID
		if nid == "" {
			nid = newID(5)
			for g.nodes[nid] != nil {
				nid = newID(5)
			}
		}
		return s.addNode(t, g, nid, nn.Name, &res)
	})
	return res, err
}

func (s *Store) addNode(t *txn, g *groupState, nid, name string, res *Joined) error {
	now := t.now
	token, hash := newToken(nid)
	n := &nodeState{Node: Node{
		ID: nid, Group: g.ID, Name: name, JoinedAt: now.Truncate(time.Millisecond).UTC(), LastSeen: now,
		ExpiresAt: now.Add(s.ttl(nid == g.Host)), Data: map[string]string{}, Host: nid == g.Host,
	}, tokenHash: hash}
	if err := t.exec(t.ctx, `INSERT INTO nodes(group_id, id, name, token_hash, joined_at, last_seen, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		g.ID, nid, name, hash, n.JoinedAt.UnixMilli(), now.UnixMilli(), n.ExpiresAt.UnixMilli()); err != nil {
		return err
	}
	cursor, err := t.append(g.ID, Item{Kind: KindJoin, Node: nid, Name: name})
	if err != nil {
		return err
	}
	s.mu.Lock()
	g.nodes[nid] = n
	g.Nodes = len(g.nodes)
	s.mu.Unlock()
	*res = Joined{Group: g.snapshot(), Node: n.snapshot(), Token: token, Cursor: cursor}
	return nil
}

// rejoin answers a repeated create or join of a node that is already a member: it keeps its
// place and data and gets a new token.
func (s *Store) rejoin(t *txn, g *groupState, n *nodeState, res *Joined) error {
	token, hash := newToken(n.ID)
	if err := t.exec(t.ctx, `UPDATE nodes SET token_hash = ?, last_seen = ?, expires_at = ? WHERE group_id = ? AND id = ?`,
		hash, t.now.UnixMilli(), t.now.Add(s.ttl(n.Host)).UnixMilli(), g.ID, n.ID); err != nil {
		return err
	}
	s.mu.Lock()
	n.tokenHash = hash
	s.mu.Unlock()
	s.touch(g, n, t.now)
	*res = Joined{Group: g.snapshot(), Node: n.snapshot(), Token: token, Cursor: s.lastCursor}
	return nil
}

// Leave removes a node from its group. The host leaving dissolves the group.
func (s *Store) Leave(ctx context.Context, gid, nid, reason string) error {
	return s.do(ctx, func(t *txn) error {
		g, err := s.live(gid, t.now)
		if err != nil {
			return err
		}
		n := g.nodes[nid]
		if n == nil {
			return fmt.Errorf("node %s in group %s: %w", nid, gid, ErrNodeNotFound)
		}
		if n.Host {
			r := ReasonHost
			if reason == ReasonRemoved {
				r = ReasonAdmin
			}
			return s.dissolve(t, g, r)
		}
		return s.removeNode(t, g, n, reason)
	})
}

func (s *Store) removeNode(t *txn, g *groupState, n *nodeState, reason string) error {
	if err := t.exec(t.ctx, `DELETE FROM nodes WHERE group_id = ? AND id = ?`, g.ID, n.ID); err != nil {
		return err
	}
	if _, err := t.append(g.ID, Item{Kind: KindLeave, Node: n.ID, Reason: reason}); err != nil {
		return err
	}
	s.mu.Lock()
	delete(g.nodes, n.ID)
	g.Nodes = len(g.nodes)
	s.mu.Unlock()
	return nil
}

// Dissolve ends a group: its nodes are removed and readers get a final dissolve item.
func (s *Store) Dissolve(ctx context.Context, gid, reason string) error {
	return s.do(ctx, func(t *txn) error {
		g, err := s.live(gid, t.now)
		if err != nil {
			return err
		}
		return s.dissolve(t, g, reason)
	})
}

func (s *Store) dissolve(t *txn, g *groupState, reason string) error {
	if err := t.exec(t.ctx, `DELETE FROM nodes WHERE group_id = ?`, g.ID); err != nil {
		return err
	}
	end, err := t.append(g.ID, Item{Kind: KindDissolve, Reason: reason})
	if err != nil {
		return err
	}
	if err := t.exec(t.ctx, `UPDATE groups SET ended_at = ?, end_reason = ?, end_cursor = ? WHERE id = ?`, t.now.UnixMilli(), reason, end, g.ID); err != nil {
		return err
	}
	s.mu.Lock()
	g.endedAt, g.endReason, g.endCursor = t.now, reason, end
	g.former = make(map[string][]byte, len(g.nodes))
	for id, n := range g.nodes {
		g.former[id] = n.tokenHash
	}
	g.nodes = map[string]*nodeState{}
	g.Nodes = 0
	s.mu.Unlock()
	return nil
}

// Heartbeat renews a node, and for the host the group's heartbeat too. It never extends the
// group's absolute expiry.
func (s *Store) Heartbeat(ctx context.Context, gid, nid string) (Group, Node, error) {
	var g0 Group
	var n0 Node
	err := s.do(ctx, func(t *txn) error {
		g, n, err := s.liveMember(gid, nid, t.now)
		if err != nil {
			return err
		}
		if err := t.exec(t.ctx, `UPDATE nodes SET last_seen = ?, expires_at = ? WHERE group_id = ? AND id = ?`,
			t.now.UnixMilli(), t.now.Add(s.ttl(n.Host)).UnixMilli(), gid, nid); err != nil {
			return err
		}
		if n.Host {
			if err := t.exec(t.ctx, `UPDATE groups SET host_seen_at = ? WHERE id = ?`, t.now.UnixMilli(), gid); err != nil {
				return err
			}
		}
		s.touch(g, n, t.now)
		s.mu.RLock()
		g0, n0 = g.snapshot(), n.snapshot()
		s.mu.RUnlock()
		return nil
	})
	return g0, n0, err
}

// SetData changes a node's data: keys with an empty value are deleted. With replace, keys not
// named are deleted too. It returns the cursor of the data item (or the current cursor when
// nothing changed).
func (s *Store) SetData(ctx context.Context, gid, nid string, data map[string]string, replace bool) (int64, error) {
	var cursor int64
	err := s.do(ctx, func(t *txn) error {
		g, n, err := s.liveMember(gid, nid, t.now)
		if err != nil {
			return err
		}
		changed := map[string]string{}
		next := make(map[string]string, len(n.Data)+len(data))
		for k, v := range n.Data {
			next[k] = v
		}
		if replace {
			for k := range n.Data {
				if _, ok := data[k]; !ok {
					changed[k] = ""
					delete(next, k)
				}
			}
		}
		for k, v := range data {
			if old, ok := n.Data[k]; ok && old == v || !ok && v == "" {
				continue
			}
			changed[k] = v
			if v == "" {
				delete(next, k)
			} else {
				next[k] = v
			}
		}
		if len(next) > s.opts.MaxDataKeys {
			return fmt.Errorf("a node may hold at most %d data keys: %w", s.opts.MaxDataKeys, ErrInvalid)
		}
		s.touch(g, n, t.now)
		if len(changed) == 0 {
			cursor = s.lastCursor
			return nil
		}
		if err := t.exec(t.ctx, `UPDATE nodes SET data = ?, data_at = ? WHERE group_id = ? AND id = ?`, encodeData(next), t.now.UnixMilli(), gid, nid); err != nil {
			return err
		}
		if cursor, err = t.append(gid, Item{Kind: KindData, Node: nid, Data: changed}); err != nil {
			return err
		}
		s.mu.Lock()
		n.Data = next
		n.DataAt = t.now.Truncate(time.Millisecond).UTC()
		s.mu.Unlock()
		return nil
	})
	return cursor, err
}

// Publish appends events to the group's stream and returns their cursors.
func (s *Store) Publish(ctx context.Context, gid, nid string, events []EventIn) ([]int64, error) {
	for i, e := range events {
		if !validName(e.Name) {
			return nil, fmt.Errorf("event %d: name must be 1-256 characters: %w", i, ErrInvalid)
		}
	}
	cursors := make([]int64, 0, len(events))
	err := s.do(ctx, func(t *txn) error {
		g, n, err := s.liveMember(gid, nid, t.now)
		if err != nil {
			return err
		}
		s.touch(g, n, t.now)
		for _, e := range events {
			c, err := t.append(gid, Item{Kind: KindEvent, Node: nid, Name: e.Name, Payload: e.Payload, OrderKey: e.OrderKey, FiredAt: e.FiredAt})
			if err != nil {
				return err
			}
			cursors = append(cursors, c)
		}
		return nil
	})
	return cursors, err
}

// Authenticate returns the node a token belongs to (without its data), provided it is a
// member of group gid.
func (s *Store) Authenticate(gid, token string) (Node, error) {
	nid, hash, ok := splitToken(token)
	s.mu.RLock()
	defer s.mu.RUnlock()
	g, err := s.live(gid, s.now())
	if err != nil {
		return Node{}, err
	}
	if !ok {
		return Node{}, ErrUnauthorized
	}
	n := g.nodes[nid]
	if n == nil || !tokenMatches(n.tokenHash, hash) {
		return Node{}, ErrUnauthorized
	}
	// Every request authenticates: no copy of the node's data, which the caller never needs.
	return Node{ID: n.ID, Group: n.Group, Name: n.Name, Host: n.Host}, nil
}

// AuthenticateReader is Authenticate for readers: the members of a group that was dissolved
// (not yet forgotten) may still read its final items. ended tells that the group is over.
func (s *Store) AuthenticateReader(gid, token string) (n Node, ended bool, err error) {
	n, err = s.Authenticate(gid, token)
	if !errors.Is(err, ErrGroupEnded) {
		return n, false, err
	}
	nid, hash, ok := splitToken(token)
	s.mu.RLock()
	defer s.mu.RUnlock()
	g := s.groups[gid]
	if g == nil || !ok {
		return Node{}, true, ErrUnauthorized
	}
	if stored, found := g.former[nid]; found && tokenMatches(stored, hash) {
		return Node{ID: nid, Group: gid, Host: nid == g.Host}, true, nil
	}
	if n := g.nodes[nid]; n != nil && tokenMatches(n.tokenHash, hash) {
		// Expired but not yet purged: the purge will append its dissolve item.
		return Node{ID: n.ID, Group: n.Group, Name: n.Name, Host: n.Host}, true, nil
	}
	return Node{}, true, err
}
