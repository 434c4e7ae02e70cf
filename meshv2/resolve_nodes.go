// Resolvers of the operations on a group's members: joining, leaving, their heartbeats and
// the list of members.

package meshv2

import (
	"context"
	"meshbox/rules"

	graphql "github.com/graph-gophers/graphql-go"
)

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
