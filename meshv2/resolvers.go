// The resolvers: the root object that resolves every field of Query, Mutation
// and Subscription, split by what the operations act on: groups (resolve_groups.go), their
// members (resolve_nodes.go), the members' data (resolve_data.go), events (resolve_events.go)
// and the subscription (resolve_subscription.go). This file holds what they share: the
// protocol's limits, the caller, argument checks, the one map from backend errors to the
// cloud's errors, and the check that a group is alive.

package meshv2

import (
	"context"
	"errors"
	"log/slog"
	"meshbox/apierror"
	"meshbox/rules"
	"time"

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

type groupArgs struct {
	GroupID graphql.ID
	Domain  string
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
