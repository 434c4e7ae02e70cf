package meshv2

import (
	"context"
	"strings"
	"testing"
	"time"

	"meshbox/stream"
)

// TestRemovedNodeSubscriptionEnds (issue 22 row 10, AppSync real-time): a Mesh v2 pupil whose
// subscription meshbox attributed to it is removed by the teacher (the rules' Leave with
// reason removed, as DELETE …/nodes/{nid} with the admin token does). Its subscription gets
// the messages before its leave, then ends with an error of type NodeNotFound (the type on
// which the Smalruby client disconnects) and nothing after; a classmate's subscription in the
// same group goes on receiving.
func TestRemovedNodeSubscriptionEnds(t *testing.T) {
	t.Parallel()
	b, store := newStoreBackend(t, nil)
	s := newTestServer(t, Config{}, b)
	gid := s.group(t, true)
	header := `{"host":"x","x-amz-date":"20260101T000000Z","x-api-key":"k"}`
	// Two tabs behind one address: each subscription claims the newest node joined from it
	// that has none, so each joins right before it subscribes.
	s.join(t, gid, "pupil")
	pupil := s.dialRT(t, header)
	pupil.handshake()
	pupil.start("p", gid)
	pupil.expect("start_ack")
	s.join(t, gid, "mate")
	mate := s.dialRT(t, header)
	mate.handshake()
	mate.start("m", gid)
	mate.expect("start_ack")

	fire := func(name string) {
		s.ok(t, "fireEventsByNode", qFire, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "host",
			"events": []map[string]any{{"eventName": name, "firedAt": "2026-01-01T00:00:00.100Z"}}})
	}
	fire("before")
	for id, c := range map[string]*rtClient{"p": pupil, "m": mate} {
		if d := c.data(id).Data.OnMessageInGroup; d.BatchEvent == nil || d.BatchEvent.Events[0].Name != "before" {
			t.Fatalf("%s: %+v, want the event before the removal", id, d)
		}
	}

	if err := store.Leave(context.Background(), gid, "pupil", stream.ReasonRemoved); err != nil {
		t.Fatal(err)
	}
	fire("after")

	m := pupil.next()
	if m.Type != "error" || m.ID != "p" || errorType(t, m) != "NodeNotFound" {
		t.Fatalf("removed pupil's subscription got %s %s %s, want its error NodeNotFound", m.ID, m.Type, m.Payload)
	}
	if d := mate.data("m").Data.OnMessageInGroup; d.BatchEvent == nil || d.BatchEvent.Events[0].Name != "after" {
		t.Fatalf("classmate: %+v, want the event after the removal", d)
	}
	// The subscription is over: a stop for it is answered complete, with no data before it.
	pupil.send(map[string]string{"id": "p", "type": "stop"})
	if m := pupil.next(); m.Type != "complete" || m.ID != "p" {
		t.Fatalf("after its end the pupil got %s %s %s, want only complete", m.ID, m.Type, m.Payload)
	}
}

// TestRemovedPollingNodeReadsNothingAfter (issue 22 row 10, Mesh v2 polling): a polling pupil
// whose polls name it (the cursors meshbox hands it) reads the events before its removal,
// then gets NodeNotFound, never the events after.
func TestRemovedPollingNodeReadsNothingAfter(t *testing.T) {
	t.Parallel()
	b, store := newStoreBackend(t, nil)
	s := newTestServer(t, Config{}, b)
	gid := s.group(t, false)
	s.join(t, gid, "pupil")
	poll := func(since string) gqlResult {
		return s.do(t, qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": since})
	}
	record := func(name string) {
		s.ok(t, "recordEventsByNode", qRecord, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "host",
			"events": []map[string]any{{"eventName": name, "firedAt": "2026-01-01T00:00:00.100Z"}}})
	}
	record("before")
	// The first poll carries the client's clock; it is matched to the pupil (the polling
	// node joined from this address) and reads from its join.
	r := poll(time.Now().UTC().Format("2006-01-02T15:04:05.000Z"))
	evs := list(t, r.Data["getEventsSince"])
	if len(r.Errors) > 0 || len(evs) != 1 || obj(t, evs[0])["name"] != "before" {
		t.Fatalf("first poll: %+v", r)
	}
	pos := obj(t, evs[0])["cursor"].(string)
	if !strings.HasSuffix(pos, "~pupil") {
		t.Fatalf("the pupil's cursor %q does not name it", pos)
	}

	if err := store.Leave(context.Background(), gid, "pupil", stream.ReasonRemoved); err != nil {
		t.Fatal(err)
	}
	record("after")
	if r := poll(pos); len(r.Errors) == 0 || r.Errors[0]["errorType"] != "NodeNotFound" {
		t.Fatalf("removed pupil's poll after %s: %+v, want NodeNotFound", pos, r)
	}
	// A poll that names no node (another client) still reads the group.
	cursor, _, _ := strings.Cut(pos, "~")
	if r := poll(cursor); len(r.Errors) > 0 || len(list(t, r.Data["getEventsSince"])) != 1 {
		t.Fatalf("an anonymous poll after %s: %+v, want the event after", cursor, r)
	}
}
