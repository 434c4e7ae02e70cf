// Resolvers of the operations on groups: listing and searching them, the caller's domain,
// and the host's own calls (create, dissolve, heartbeat).

package meshv2

import (
	"context"
	"meshbox/rules"
	"time"
	"unicode/utf8"

	graphql "github.com/graph-gophers/graphql-go"
)

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

type hostArgs struct {
	GroupID graphql.ID
	Domain  string
	HostID  graphql.ID
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
