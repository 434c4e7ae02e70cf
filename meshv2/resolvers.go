package meshv2

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"meshbox/apierror"
	"meshbox/live"
	"meshbox/rules"
	"meshbox/stream"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	graphql "github.com/graph-gophers/graphql-go"
)

// Limits of the Mesh v2 protocol, as the cloud service validates them.
const (
	maxDomainLen     = 256
	maxIDLen         = 256
	maxNameLen       = 256
	maxPrefixRunes   = 6
	defaultSearchMax = 10
	maxSearchLimit   = 100
	maxPolledEvents  = 100
	pollReadPages    = 20
)

// root resolves every field of Query, Mutation and Subscription.
type root struct {
	cfg     Config
	backend Backend
	log     *slog.Logger
	now     func() time.Time
	roster  *roster
}

// caller is what a request's context says about who sent it.
type caller struct {
	// domain is what createDomain answers this caller.
	domain string
	// ip is the caller's address, which attributes polls and subscriptions to nodes.
	ip string
}

type callerKey struct{}

// withCaller stores the request's caller in ctx.
func withCaller(ctx context.Context, c caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// validDomain applies the rules' domain check to the queries that reach no rule (listings).
func validDomain(d string) error {
	if !rules.ValidDomain(d) {
		return newError(errValidation, "domain must be 1 to %d characters of A-Z, a-z, 0-9, '.', '_' and '-'", maxDomainLen)
	}
	return nil
}

func validID(what string, id graphql.ID) error {
	if id == "" || len(id) > maxIDLen {
		return newError(errValidation, "%s must be 1 to %d characters", what, maxIDLen)
	}
	return nil
}

// toMeshError turns a backend error into the GraphQL error the client expects: apierror
// decides the errorType (the same map gives the native API its statuses); the messages are
// the cloud's. Unknown errors are logged once here and reported without their details.
func (r *root) toMeshError(op string, err error) error {
	var me *meshError
	if errors.As(err, &me) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	a := apierror.Of(err)
	switch {
	case errors.Is(err, rules.ErrGroupEnded):
		// The cloud's three messages; the client only looks at the type, the cloud's specs
		// at the message too.
		var ended *rules.EndedError
		switch {
		case !errors.As(err, &ended), ended.Why == rules.EndedExpired:
			return newError(errGroupNotFound, "Group expired")
		case ended.Why == rules.EndedHostLost:
			return newError(errGroupNotFound, "Group host heartbeat expired")
		}
		return newError(errGroupNotFound, "Group not found")
	case a.MeshType == errGroupNotFound:
		return newError(errGroupNotFound, "Group not found")
	case a.MeshType == errNodeNotFound:
		return newError(errNodeNotFound, "Node not found")
	case a.MeshType == errUnauthorized:
		return newError(errUnauthorized, "Unauthorized")
	case a.MeshType == errStorageFull:
		// Logged once by the store when it fills, not per call.
		return newError(errStorageFull, "The server's storage is full; it is making room. Retry in a few seconds.")
	case a.Internal:
		r.log.Error("mesh v2 operation failed", "op", op, "err", err)
		return newError(errInternal, "internal error")
	}
	return newError(a.MeshType, "%s", err.Error())
}

// liveGroup loads a group (without its nodes: an in-memory read, no snapshot) and checks it
// is alive and in the named domain; a group in another domain is reported as missing so
// domains stay separate namespaces.
func (r *root) liveGroup(ctx context.Context, op string, groupID graphql.ID, domain string) (rules.Snapshot, error) {
	return r.checkLive(ctx, op, groupID, domain, r.backend.Group)
}

// liveSnapshot is liveGroup with the group's nodes, for the calls that list them.
func (r *root) liveSnapshot(ctx context.Context, op string, groupID graphql.ID, domain string) (rules.Snapshot, error) {
	return r.checkLive(ctx, op, groupID, domain, r.backend.Snapshot)
}

func (r *root) checkLive(ctx context.Context, op string, groupID graphql.ID, domain string, load func(context.Context, string) (rules.Snapshot, error)) (rules.Snapshot, error) {
	if err := validDomain(domain); err != nil {
		return rules.Snapshot{}, err
	}
	if err := validID("groupId", groupID); err != nil {
		return rules.Snapshot{}, err
	}
	snap, err := load(ctx, string(groupID))
	if err != nil {
		return rules.Snapshot{}, r.toMeshError(op, err)
	}
	if snap.Group.Domain != domain {
		return rules.Snapshot{}, newError(errGroupNotFound, "Group not found")
	}
	if !snap.Group.ExpiresAt.IsZero() && !r.now().Before(snap.Group.ExpiresAt) {
		return rules.Snapshot{}, newError(errGroupNotFound, "Group expired")
	}
	return snap, nil
}

func (r *root) groupOut(g rules.Group) *groupOut {
	out := &groupOut{
		ID:                       graphql.ID(g.ID),
		Domain:                   g.Domain,
		FullID:                   g.ID + "@" + g.Domain,
		Name:                     g.Name,
		HostID:                   graphql.ID(g.Host),
		ExpiresAt:                dt(g.ExpiresAt),
		HeartbeatIntervalSeconds: int32p(r.cfg.HostHeartbeatInterval),
		UseWebSocket:             g.UseWebSocket,
	}
	if !g.UseWebSocket {
		out.PollingIntervalSeconds = int32p(r.cfg.PollingInterval)
	}
	return out
}

func (r *root) groupsOut(gs []rules.Group) []*groupOut {
	now := r.now()
	out := make([]*groupOut, 0, len(gs))
	for _, g := range gs {
		if !g.ExpiresAt.IsZero() && !now.Before(g.ExpiresAt) {
			continue
		}
		out = append(out, r.groupOut(g))
	}
	return out
}

// statusOf reports a node's whole data list, sorted by key so repeated answers compare equal.
func statusOf(g rules.Group, n rules.Node) nodeStatus {
	data := make([]sensorData, 0, len(n.Data))
	for k, v := range n.Data {
		data = append(data, sensorData{Key: k, Value: v})
	}
	slices.SortFunc(data, func(a, b sensorData) int { return strings.Compare(a.Key, b.Key) })
	ts := n.DataAt
	if ts.IsZero() {
		ts = n.JoinedAt
	}
	return nodeStatus{NodeID: graphql.ID(n.ID), GroupID: graphql.ID(g.ID), Domain: g.Domain, Data: data, Timestamp: dt(ts)}
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// eventOf turns a stream item into a Mesh v2 Event. The timestamp of a fired event is the
// client's firedAt, stored with it, because receivers replay events with their original
// gaps; recorded events (and those of native clients) carry the server time, as in the
// cloud. reader, when known, is the polling node the cursor is handed to.
func (r *root) eventOf(g rules.Group, it stream.Item, reader string) eventOut {
	ts := it.At
	if !it.FiredAt.IsZero() {
		ts = it.FiredAt
	}
	cur := formatPollToken(it.Cursor, reader)
	return eventOut{
		Name:          it.Name,
		FiredByNodeID: graphql.ID(it.Node),
		GroupID:       graphql.ID(g.ID),
		Domain:        g.Domain,
		Payload:       optString(deref(it.Payload)),
		Timestamp:     dt(ts),
		Cursor:        &cur,
		OrderKey:      optString(it.OrderKey),
	}
}

// ---- Query ----

// ListGroupsByDomain resolves Query.listGroupsByDomain.
func (r *root) ListGroupsByDomain(ctx context.Context, args struct{ Domain string }) ([]*groupOut, error) {
	if err := validDomain(args.Domain); err != nil {
		return nil, err
	}
	gs, err := r.backend.Groups(ctx, args.Domain)
	if err != nil {
		return nil, r.toMeshError("listGroupsByDomain", err)
	}
	return r.groupsOut(gs), nil
}

// GetNodeStatus resolves Query.getNodeStatus; an unknown node is null, not an error.
func (r *root) GetNodeStatus(ctx context.Context, args struct{ NodeID graphql.ID }) (*nodeStatus, error) {
	if err := validID("nodeId", args.NodeID); err != nil {
		return nil, err
	}
	g, n, err := r.backend.FindNode(ctx, string(args.NodeID))
	if errors.Is(err, rules.ErrNodeNotFound) || errors.Is(err, rules.ErrGroupNotFound) || errors.Is(err, rules.ErrGroupEnded) {
		return nil, nil
	}
	if err != nil {
		return nil, r.toMeshError("getNodeStatus", err)
	}
	st := statusOf(g, n)
	return &st, nil
}

type groupArgs struct {
	GroupID graphql.ID
	Domain  string
}

// ListGroupStatuses resolves Query.listGroupStatuses: the data of every node that has
// reported some, as in the cloud.
func (r *root) ListGroupStatuses(ctx context.Context, args groupArgs) ([]nodeStatus, error) {
	snap, err := r.liveSnapshot(ctx, "listGroupStatuses", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	return statusesOf(snap), nil
}

// statusesOf lists the nodes that have reported data; a node that never did has no status
// in the cloud either.
func statusesOf(snap rules.Snapshot) []nodeStatus {
	out := make([]nodeStatus, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		if n.DataAt.IsZero() && len(n.Data) == 0 {
			continue
		}
		out = append(out, statusOf(snap.Group, n))
	}
	return out
}

// ListNodesInGroup resolves Query.listNodesInGroup: the members, without the host, as in the
// cloud (the host never joins its own group there).
func (r *root) ListNodesInGroup(ctx context.Context, args groupArgs) ([]nodeOut, error) {
	snap, err := r.liveSnapshot(ctx, "listNodesInGroup", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	out := make([]nodeOut, 0, len(snap.Nodes))
	for _, n := range snap.Nodes {
		if n.ID == snap.Group.Host {
			continue
		}
		out = append(out, r.nodeOut(snap.Group, n))
	}
	return out, nil
}

// nodeOut reports a node with its own expiry and the group's transport mode.
func (r *root) nodeOut(g rules.Group, n rules.Node) nodeOut {
	gid := graphql.ID(g.ID)
	domain := g.Domain
	ws := g.UseWebSocket
	out := nodeOut{
		ID:           graphql.ID(n.ID),
		Name:         n.Name,
		GroupID:      &gid,
		Domain:       &domain,
		UseWebSocket: &ws,
	}
	if !n.ExpiresAt.IsZero() {
		exp := dt(n.ExpiresAt)
		out.ExpiresAt = &exp
	}
	interval := r.cfg.MemberHeartbeatInterval
	if n.ID == g.Host {
		interval = r.cfg.HostHeartbeatInterval
	}
	out.HeartbeatIntervalSeconds = int32p(interval)
	if !ws {
		out.PollingIntervalSeconds = int32p(r.cfg.PollingInterval)
	}
	return out
}

// SearchGroupsByNamePrefix resolves Query.searchGroupsByNamePrefix.
func (r *root) SearchGroupsByNamePrefix(ctx context.Context, args struct {
	NamePrefix string
	Limit      *int32
}) ([]*groupOut, error) {
	n := utf8.RuneCountInString(args.NamePrefix)
	if n < 1 || n > maxPrefixRunes {
		return nil, newError(errValidation, "namePrefix must be 1 to %d characters", maxPrefixRunes)
	}
	limit := defaultSearchMax
	if args.Limit != nil {
		if *args.Limit < 1 || *args.Limit > maxSearchLimit {
			return nil, newError(errValidation, "limit must be 1 to %d", maxSearchLimit)
		}
		limit = int(*args.Limit)
	}
	gs, err := r.backend.SearchGroups(ctx, args.NamePrefix, limit)
	if err != nil {
		return nil, r.toMeshError("searchGroupsByNamePrefix", err)
	}
	return r.groupsOut(gs), nil
}

type sinceArgs struct {
	GroupID graphql.ID
	Domain  string
	Since   string
}

// GetEventsSince resolves Query.getEventsSince.
func (r *root) GetEventsSince(ctx context.Context, args sinceArgs) ([]eventOut, error) {
	snap, err := r.liveGroup(ctx, "getEventsSince", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	return r.poll(ctx, snap, args.Since)
}

// PollGroupData resolves Query.pollGroupData: events and every member's data in one call.
func (r *root) PollGroupData(ctx context.Context, args sinceArgs) (*pollGroupData, error) {
	snap, err := r.liveSnapshot(ctx, "pollGroupData", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	events, err := r.poll(ctx, snap, args.Since)
	if err != nil {
		return nil, err
	}
	return &pollGroupData{Events: events, NodeStatuses: statusesOf(snap)}, nil
}

// sincePosition reads `since` and says which node polls, when that is known:
//   - "": from the oldest retained event, as in the cloud;
//   - "<cursor>~<nodeId>": a position meshbox handed to that polling node;
//   - "<cursor>": a position handed to a poller meshbox could not attribute;
//   - an ISO time: a client's first poll, from its own clock. When the roster attributes it
//     to a node that has just joined, the node reads from its join, so neither the gap
//     between its join and its first poll nor its clock's error loses events.
func (r *root) sincePosition(ctx context.Context, snap rules.Snapshot, since string) (int64, string, error) {
	since = strings.TrimSpace(since)
	if since == "" {
		c, err := r.backend.CursorAt(ctx, snap.Group.ID, time.Time{})
		if err != nil {
			return 0, "", r.toMeshError("cursorAt", err)
		}
		return c, "", nil
	}
	if c, node, ok := parsePollToken(since); ok {
		return c, node, nil
	}
	if _, err := strconv.ParseInt(since, 10, 64); err == nil {
		return 0, "", newError(errValidation, "since must not be negative")
	}
	t, err := parseTime(since)
	if err != nil {
		return 0, "", newError(errValidation, "since must be a cursor or an ISO-8601 time")
	}
	if node, start, ok := r.roster.claimPoller(snap.Group.ID, callerOf(ctx).ip, since); ok {
		return start, node, nil
	}
	c, err := r.backend.CursorAt(ctx, snap.Group.ID, t)
	if err != nil {
		return 0, "", r.toMeshError("cursorAt", err)
	}
	return c, "", nil
}

// poll returns up to maxPolledEvents events after since, ascending, skipping the group's
// other item kinds, which polling clients learn about through nodeStatuses. The cursors of
// an attributed poll name its node, and the roster keeps the position it leaves the node at
// (the client moves to the last event's cursor).
func (r *root) poll(ctx context.Context, snap rules.Snapshot, since string) ([]eventOut, error) {
	cursor, node, err := r.sincePosition(ctx, snap, since)
	if err != nil {
		return nil, err
	}
	// A cursor from the future (the server's database was replaced) reads from now on
	// rather than failing every poll of a client that only logs errors.
	cursor = min(cursor, snap.Cursor)
	pos := cursor
	// A poll that names its node reads nothing after that node's leave.
	rd := r.backend.Open(snap.Group.ID, node)
	defer rd.Close()
	events := []eventOut{}
	gone := ""
	for range pollReadPages {
		res, err := rd.Read(ctx, cursor, maxPolledEvents)
		if err != nil {
			return nil, r.toMeshError("read", err)
		}
		gone = res.Gone
		for _, it := range res.Items {
			if it.Kind != stream.KindEvent {
				continue
			}
			events = append(events, r.eventOf(snap.Group, it, node))
			pos = it.Cursor
			if len(events) == maxPolledEvents {
				break
			}
		}
		if len(events) == maxPolledEvents || len(res.Items) < maxPolledEvents || res.Next <= cursor {
			break
		}
		cursor = res.Next
	}
	if gone != "" {
		// The node was removed (or expired, or left): once it has the events before its
		// leave, it is told as the cloud tells a member whose row is gone, NodeNotFound, on
		// which the Smalruby client disconnects.
		r.roster.forget(snap.Group.ID, node)
		if len(events) == 0 {
			return nil, r.toMeshError("poll", fmt.Errorf("node %s: %s: %w", node, gone, rules.ErrNodeNotFound))
		}
		return events, nil
	}
	if node != "" {
		r.roster.polled(snap.Group.ID, node, pos)
	}
	return events, nil
}

// ---- Mutation ----

// CreateDomain resolves Mutation.createDomain with the domain the server assigns the caller.
func (r *root) CreateDomain(ctx context.Context) (string, error) {
	d := callerOf(ctx).domain
	if d == "" {
		return "", newError(errInternal, "no domain for this caller")
	}
	return d, nil
}

// CreateGroup resolves Mutation.createGroup; it is idempotent per host and domain while the
// group lives, and expiresAt is fixed at creation.
func (r *root) CreateGroup(ctx context.Context, args struct {
	Name                     string
	HostID                   graphql.ID
	Domain                   string
	MaxConnectionTimeSeconds *int32
	UseWebSocket             bool
}) (*groupOut, error) {
	if err := validDomain(args.Domain); err != nil {
		return nil, err
	}
	if err := validID("hostId", args.HostID); err != nil {
		return nil, err
	}
	if args.Name == "" || len(args.Name) > maxNameLen {
		return nil, newError(errValidation, "name must be 1 to %d characters", maxNameLen)
	}
	maxSecs := int64(r.cfg.MaxConnectionTime / time.Second)
	lifetime := min(r.cfg.DefaultConnectionTime, r.cfg.MaxConnectionTime)
	if args.MaxConnectionTimeSeconds != nil {
		s := int64(*args.MaxConnectionTimeSeconds)
		if s < 1 || s > maxSecs {
			return nil, newError(errValidation, "maxConnectionTimeSeconds must be between 1 and %d", maxSecs)
		}
		lifetime = time.Duration(s) * time.Second
	}
	j, err := r.backend.CreateGroup(ctx, rules.NewGroup{
		Domain:       args.Domain,
		Name:         args.Name,
		HostID:       string(args.HostID),
		Lifetime:     lifetime,
		UseWebSocket: args.UseWebSocket,
	})
	if err != nil {
		return nil, r.toMeshError("createGroup", err)
	}
	r.roster.expect(j.Group.ID, j.Group.Host, callerOf(ctx).ip, j.Cursor, !j.Group.UseWebSocket)
	return r.groupOut(j.Group), nil
}

// JoinGroup resolves Mutation.joinGroup with what the client arms itself from: the group's
// expiresAt (its leave timer, which only the host re-arms), the group's useWebSocket (members
// follow it unless forced to poll) and the polling interval, given also to members of a
// WebSocket group because a forced poller uses it.
func (r *root) JoinGroup(ctx context.Context, args struct {
	GroupID      graphql.ID
	Domain       string
	NodeID       graphql.ID
	UseWebSocket *bool
}) (*nodeOut, error) {
	if err := validID("nodeId", args.NodeID); err != nil {
		return nil, err
	}
	if _, err := r.liveGroup(ctx, "joinGroup", args.GroupID, args.Domain); err != nil {
		return nil, err
	}
	j, err := r.backend.Join(ctx, string(args.GroupID), string(args.NodeID))
	if err != nil {
		return nil, r.toMeshError("joinGroup", err)
	}
	g, n := j.Group, j.Node
	// The client polls when the group does, or when it was forced to (it then asks false).
	polling := !g.UseWebSocket || (args.UseWebSocket != nil && !*args.UseWebSocket)
	r.roster.expect(g.ID, n.ID, callerOf(ctx).ip, j.Cursor, polling)
	out := r.nodeOut(g, n)
	exp := dt(g.ExpiresAt)
	out.ExpiresAt = &exp
	out.PollingIntervalSeconds = int32p(r.cfg.PollingInterval)
	return &out, nil
}

type nodeArgs struct {
	GroupID graphql.ID
	Domain  string
	NodeID  graphql.ID
}

type hostArgs struct {
	GroupID graphql.ID
	Domain  string
	HostID  graphql.ID
}

// LeaveGroup resolves Mutation.leaveGroup. Unlike the cloud service, the leave is an item
// of the group stream, so native clients see it.
func (r *root) LeaveGroup(ctx context.Context, args nodeArgs) (*leaveGroupPayload, error) {
	if err := validID("nodeId", args.NodeID); err != nil {
		return nil, err
	}
	snap, err := r.liveGroup(ctx, "leaveGroup", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	if err := r.backend.Leave(ctx, snap.Group.ID, string(args.NodeID)); err != nil {
		return nil, r.toMeshError("leaveGroup", err)
	}
	r.roster.forget(snap.Group.ID, string(args.NodeID))
	return &leaveGroupPayload{PeerID: args.NodeID, GroupID: args.GroupID, Domain: args.Domain, Message: "Successfully left group"}, nil
}

const dissolveMessage = "Group dissolved by host"

// DissolveGroup resolves Mutation.dissolveGroup; only the host may.
func (r *root) DissolveGroup(ctx context.Context, args hostArgs) (*meshMessage, error) {
	snap, err := r.liveGroup(ctx, "dissolveGroup", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	if string(args.HostID) != snap.Group.Host {
		return nil, newError(errUnauthorized, "Only the host can dissolve the group")
	}
	if err := r.backend.Dissolve(ctx, snap.Group.ID); err != nil {
		return nil, r.toMeshError("dissolveGroup", err)
	}
	r.roster.forgetGroup(snap.Group.ID)
	return &meshMessage{
		GroupID:       args.GroupID,
		Domain:        args.Domain,
		GroupDissolve: &groupDissolve{GroupID: args.GroupID, Domain: args.Domain, Message: dissolveMessage},
	}, nil
}

// RenewHeartbeat resolves Mutation.renewHeartbeat; host only, and expiresAt stays as created.
func (r *root) RenewHeartbeat(ctx context.Context, args hostArgs) (*heartbeatPayload, error) {
	snap, err := r.liveGroup(ctx, "renewHeartbeat", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	if string(args.HostID) != snap.Group.Host {
		return nil, newError(errUnauthorized, "Only the host can renew the group heartbeat")
	}
	g, _, err := r.backend.Heartbeat(ctx, snap.Group.ID, string(args.HostID))
	if err != nil {
		return nil, r.toMeshError("renewHeartbeat", err)
	}
	return &heartbeatPayload{
		GroupID:                  args.GroupID,
		Domain:                   args.Domain,
		ExpiresAt:                dt(g.ExpiresAt),
		HeartbeatIntervalSeconds: int32p(r.cfg.HostHeartbeatInterval),
	}, nil
}

// SendMemberHeartbeat resolves Mutation.sendMemberHeartbeat and reports the member's expiry.
func (r *root) SendMemberHeartbeat(ctx context.Context, args nodeArgs) (*memberHeartbeatPayload, error) {
	if err := validID("nodeId", args.NodeID); err != nil {
		return nil, err
	}
	snap, err := r.liveGroup(ctx, "sendMemberHeartbeat", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	_, n, err := r.backend.Heartbeat(ctx, snap.Group.ID, string(args.NodeID))
	if err != nil {
		return nil, r.toMeshError("sendMemberHeartbeat", err)
	}
	return &memberHeartbeatPayload{
		NodeID:                   args.NodeID,
		GroupID:                  args.GroupID,
		Domain:                   args.Domain,
		ExpiresAt:                dt(n.ExpiresAt),
		HeartbeatIntervalSeconds: int32p(r.cfg.MemberHeartbeatInterval),
	}, nil
}

// ReportDataByNode resolves Mutation.reportDataByNode: the list replaces the node's data.
func (r *root) ReportDataByNode(ctx context.Context, args struct {
	GroupID graphql.ID
	Domain  string
	NodeID  graphql.ID
	Data    []sensorData
}) (*meshMessage, error) {
	if err := validID("nodeId", args.NodeID); err != nil {
		return nil, err
	}
	snap, err := r.liveGroup(ctx, "reportDataByNode", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	data := make(map[string]string, len(args.Data))
	list := make([]sensorData, 0, len(args.Data))
	for _, d := range args.Data {
		if d.Key == "" {
			return nil, newError(errValidation, "data keys must not be empty")
		}
		if _, dup := data[d.Key]; dup {
			// A later entry for the same key wins, as a map update would.
			i := slices.IndexFunc(list, func(s sensorData) bool { return s.Key == d.Key })
			list[i].Value = d.Value
		} else {
			list = append(list, d)
		}
		data[d.Key] = d.Value
	}
	if _, err := r.backend.ReplaceData(ctx, snap.Group.ID, string(args.NodeID), data); err != nil {
		return nil, r.toMeshError("reportDataByNode", err)
	}
	return &meshMessage{
		GroupID: args.GroupID,
		Domain:  args.Domain,
		NodeStatus: &nodeStatus{
			NodeID: args.NodeID, GroupID: args.GroupID, Domain: args.Domain, Data: list, Timestamp: dt(r.now()),
		},
	}, nil
}

type eventInput struct {
	EventName string
	Payload   *string
	FiredAt   DateTime
	OrderKey  *string
}

type eventsArgs struct {
	GroupID graphql.ID
	Domain  string
	NodeID  graphql.ID
	Events  []eventInput
}

// publish appends the events to the group stream; fire and record differ only in what
// they answer, since every transport reads the one stream.
func (r *root) publish(ctx context.Context, op string, args eventsArgs, keepFiredAt bool) (rules.Snapshot, []int64, error) {
	if err := validID("nodeId", args.NodeID); err != nil {
		return rules.Snapshot{}, nil, err
	}
	snap, err := r.liveGroup(ctx, op, args.GroupID, args.Domain)
	if err != nil {
		return rules.Snapshot{}, nil, err
	}
	if len(args.Events) == 0 {
		return snap, nil, nil
	}
	in := make([]rules.EventIn, len(args.Events))
	for i, e := range args.Events {
		if e.EventName == "" {
			return rules.Snapshot{}, nil, newError(errValidation, "eventName must not be empty")
		}
		// An empty payload is stored as none, as the cloud stores null.
		in[i] = rules.EventIn{Name: e.EventName, Payload: optString(deref(e.Payload)), OrderKey: deref(e.OrderKey)}
		if keepFiredAt {
			in[i].FiredAt = e.FiredAt.Time
		}
	}
	cursors, err := r.backend.Publish(ctx, snap.Group.ID, string(args.NodeID), in)
	if err != nil {
		return rules.Snapshot{}, nil, r.toMeshError(op, err)
	}
	if len(cursors) != len(in) {
		return rules.Snapshot{}, nil, r.toMeshError(op, fmt.Errorf("publish returned %d cursors for %d events", len(cursors), len(in)))
	}
	return snap, cursors, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// FireEventsByNode resolves Mutation.fireEventsByNode.
func (r *root) FireEventsByNode(ctx context.Context, args eventsArgs) (*meshMessage, error) {
	snap, cursors, err := r.publish(ctx, "fireEventsByNode", args, true)
	if err != nil {
		return nil, err
	}
	events := make([]eventOut, len(cursors))
	for i, c := range cursors {
		e := args.Events[i]
		cur := strconv.FormatInt(c, 10)
		p := e.Payload
		if p != nil && *p == "" {
			p = nil
		}
		events[i] = eventOut{
			Name: e.EventName, FiredByNodeID: args.NodeID, GroupID: args.GroupID, Domain: snap.Group.Domain,
			Payload: p, Timestamp: e.FiredAt, Cursor: &cur, OrderKey: e.OrderKey,
		}
	}
	return &meshMessage{
		GroupID: args.GroupID,
		Domain:  args.Domain,
		BatchEvent: &batchEvent{
			Events: events, FiredByNodeID: args.NodeID, GroupID: args.GroupID, Domain: args.Domain, Timestamp: dt(r.now()),
		},
	}, nil
}

// RecordEventsByNode resolves Mutation.recordEventsByNode. The events are stamped with the
// server's time, as in the cloud. The client moves its poll position to nextSince; the
// cloud's (its last event) jumps over other nodes' events it has not fetched yet, so
// meshbox answers the position the node already holds: its next poll brings every other
// node's events once, and its own once (which the client drops). A node meshbox has no
// position for (after a restart) gets the position before its events.
func (r *root) RecordEventsByNode(ctx context.Context, args eventsArgs) (*recordEventsPayload, error) {
	snap, cursors, err := r.publish(ctx, "recordEventsByNode", args, false)
	if err != nil {
		return nil, err
	}
	pos := r.roster.position(snap.Group.ID, string(args.NodeID), snap.Cursor)
	return &recordEventsPayload{
		GroupID:       args.GroupID,
		Domain:        args.Domain,
		RecordedCount: int32(len(cursors)),
		NextSince:     formatPollToken(pos, string(args.NodeID)),
	}, nil
}

// ---- Subscription ----

// OnMessageInGroup resolves Subscription.onMessageInGroup: the group's stream from now on,
// turned into batchEvent, nodeStatus and groupDissolve messages.
func (r *root) OnMessageInGroup(ctx context.Context, args groupArgs) (<-chan *meshMessage, error) {
	snap, err := r.liveSnapshot(ctx, "onMessageInGroup", args.GroupID, args.Domain)
	if err != nil {
		return nil, err
	}
	out := make(chan *meshMessage)
	release := func() {}
	node, rel, ok := r.roster.claimRealtime(snap.Group.ID, callerOf(ctx).ip)
	if ok {
		release = rel // idempotent
		// The socket's pings now time this node's link (the dashboard's link quality).
		if sock, ok := ctx.Value(socketKey{}).(*live.Socket); ok {
			if lk, ok := r.backend.(linker); ok {
				sock.SetLink(lk.Link(snap.Group.ID, node, transportRealtime))
				release = func() { sock.SetLink(nil); rel() }
			}
		}
		atEnd(ctx, release)
	}
	go func() {
		defer release()
		r.follow(ctx, snap, node, out)
	}()
	markStarted(ctx)
	return out, nil
}
