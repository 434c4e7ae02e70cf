// Resolvers of the operations on the members' data (their sensor values, Mesh v2's shared
// variables): reporting a node's data and reading one node's or the whole group's.

package meshv2

import (
	"context"
	"errors"
	"meshbox/rules"
	"slices"
	"strings"

	graphql "github.com/graph-gophers/graphql-go"
)

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
