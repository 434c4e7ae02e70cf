// Resolvers of the operations on events: firing them (WebSocket groups) and recording them
// (polling groups), and reading them back by position, alone or with the group's data in one
// poll.

package meshv2

import (
	"context"
	"fmt"
	"meshbox/rules"
	"meshbox/stream"
	"strconv"
	"strings"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
)

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
