package meshv2

import (
	"context"
	"errors"
	"meshbox/apierror"
	"meshbox/rules"
	"meshbox/stream"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
)

// followBatch is how many stream items one subscription reads at a time.
const followBatch = 512

// follow turns a group's stream after snap.Cursor into Mesh v2 messages until ctx ends or the
// group ends, or node (the node the subscription was attributed to, "" for none) leaves it.
// It holds only a cursor and the members' data (to report a node's whole data list after
// each change), so a slow subscriber never holds items in memory.
func (r *root) follow(ctx context.Context, snap rules.Snapshot, node string, out chan<- *meshMessage) {
	defer close(out)
	g := snap.Group
	data := dataOf(snap)
	cursor := snap.Cursor
	send := func(m *meshMessage) bool {
		select {
		case out <- m:
			return true
		case <-ctx.Done():
			return false
		}
	}
	rd := r.backend.Open(g.ID, node)
	defer rd.Close()
	for {
		if err := rd.Wait(ctx, cursor); err != nil {
			return
		}
		res, err := rd.Read(ctx, cursor, followBatch)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, rules.ErrGroupNotFound) || errors.Is(err, rules.ErrGroupEnded) {
			send(r.dissolved(g))
			return
		}
		if err != nil {
			r.log.Warn("mesh v2 subscription read failed", "group", g.ID, "err", err)
			select {
			case <-time.After(time.Second):
				continue
			case <-ctx.Done():
				return
			}
		}
		if res.Truncated {
			// Items were purged before this reader got them; resend every member's data so
			// the client's view is whole again, then go on from the fresh snapshot.
			fresh, err := r.backend.Snapshot(ctx, g.ID)
			if err != nil {
				send(r.dissolved(g))
				return
			}
			data = dataOf(fresh)
			for _, n := range fresh.Nodes {
				st := statusOf(g, n)
				if !send(&meshMessage{GroupID: graphql.ID(g.ID), Domain: g.Domain, NodeStatus: &st}) {
					return
				}
			}
			cursor = fresh.Cursor
			continue
		}
		msgs, ended := r.messagesOf(g, res.Items, data)
		for _, m := range msgs {
			if !send(m) {
				return
			}
		}
		if ended {
			return
		}
		if res.Gone != "" {
			// The node this subscription reads for was removed (or expired, or left from
			// another tab): the messages before its leave went out, nothing after it does.
			// The subscription ends with the error the cloud gives a member whose row is
			// gone (the connection sends it in place of complete).
			endWith(ctx, rtError{ErrorType: apierror.MeshNodeNotFound, Message: goneMessage(node, res.Gone)})
			return
		}
		if res.Next > cursor {
			cursor = res.Next
		}
	}
}

// goneMessage says why a node's subscription ended.
func goneMessage(node, reason string) string {
	switch reason {
	case stream.ReasonExpired:
		return "Node " + node + " expired"
	case stream.ReasonLeft:
		return "Node " + node + " left the group"
	}
	return "Node " + node + " was removed from the group"
}

func dataOf(snap rules.Snapshot) map[string]map[string]string {
	data := make(map[string]map[string]string, len(snap.Nodes))
	for _, n := range snap.Nodes {
		m := make(map[string]string, len(n.Data))
		for k, v := range n.Data {
			m[k] = v
		}
		data[n.ID] = m
	}
	return data
}

func (r *root) dissolved(g rules.Group) *meshMessage {
	return &meshMessage{
		GroupID:       graphql.ID(g.ID),
		Domain:        g.Domain,
		GroupDissolve: &groupDissolve{GroupID: graphql.ID(g.ID), Domain: g.Domain, Message: dissolveMessage},
	}
}

// messagesOf converts one page of items. Consecutive events of one node become one
// batchEvent (a publish is one run of items); a data item becomes the node's nodeStatus with
// its whole data; a dissolve ends the subscription. Joins and leaves only update the data
// map, since the Mesh v2 schema has no message for them.
func (r *root) messagesOf(g rules.Group, items []stream.Item, data map[string]map[string]string) (msgs []*meshMessage, ended bool) {
	var batch *batchEvent
	flush := func() {
		if batch != nil {
			msgs = append(msgs, &meshMessage{GroupID: graphql.ID(g.ID), Domain: g.Domain, BatchEvent: batch})
			batch = nil
		}
	}
	for _, it := range items {
		switch it.Kind {
		case stream.KindEvent:
			if batch != nil && string(batch.FiredByNodeID) != it.Node {
				flush()
			}
			if batch == nil {
				batch = &batchEvent{FiredByNodeID: graphql.ID(it.Node), GroupID: graphql.ID(g.ID), Domain: g.Domain}
			}
			batch.Events = append(batch.Events, r.eventOf(g, it, ""))
			batch.Timestamp = dt(it.At)
		case stream.KindData:
			flush()
			m := data[it.Node]
			if m == nil {
				m = make(map[string]string, len(it.Data))
				data[it.Node] = m
			}
			for k, v := range it.Data {
				if v == "" {
					delete(m, k)
				} else {
					m[k] = v
				}
			}
			st := statusOf(g, rules.Node{ID: it.Node, Data: m, DataAt: it.At})
			msgs = append(msgs, &meshMessage{GroupID: graphql.ID(g.ID), Domain: g.Domain, NodeStatus: &st})
		case stream.KindJoin:
			if data[it.Node] == nil {
				data[it.Node] = map[string]string{}
			}
		case stream.KindLeave:
			delete(data, it.Node)
		case stream.KindDissolve:
			flush()
			msgs = append(msgs, r.dissolved(g))
			return msgs, true
		}
	}
	flush()
	return msgs, false
}
