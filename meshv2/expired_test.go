package meshv2

import (
	"context"
	"testing"
	"time"

	"meshbox/testclock"
)

// TestJoinExpiredGroupSaysExpired (issue 24 item 6): joinGroup on a group whose lifetime passed
// answers errorType GroupNotFound with the cloud's message "Group expired" both before the purge
// marks the end and after (the purge records the end as a dissolve; the answer used to become
// "Group not found" then, which the cloud's request specs check). A group whose host stopped
// sending heartbeats says so, and one the host dissolved is "Group not found", before and after.
func TestJoinExpiredGroupSaysExpired(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	b, store := newStoreBackend(t, clock.Now)
	s := newTestServer(t, Config{MaxConnectionTime: time.Hour}, b)
	s.h.root.now = clock.Now
	message := func(gid string) string {
		t.Helper()
		res := s.do(t, qJoin, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "late", "useWebSocket": true})
		if len(res.Errors) == 0 || res.Errors[0]["errorType"] != errGroupNotFound {
			t.Fatalf("join: %v %v, want errorType %s", res.Data, res.Errors, errGroupNotFound)
		}
		return res.Errors[0]["message"].(string)
	}
	create := func(host string, seconds int) string {
		g := obj(t, s.ok(t, "createGroup", qCreateGroup, map[string]any{
			"name": host, "hostId": host, "domain": "classroom", "maxConnectionTimeSeconds": seconds, "useWebSocket": true,
		}))
		return g["id"].(string)
	}
	short := create("h1", 60) // its lifetime ends first
	lost := create("h2", 3000)
	clock.Advance(61 * time.Second)
	s.ok(t, "renewHeartbeat", qRenew, map[string]any{"groupId": lost, "domain": "classroom", "hostId": "h2"})
	if got := message(short); got != "Group expired" {
		t.Errorf("expired, before the purge: %q", got)
	}
	clock.Advance(151 * time.Second) // past the host TTL: h2's host is gone
	if got := message(lost); got != "Group host heartbeat expired" {
		t.Errorf("host gone, before the purge: %q", got)
	}
	if _, err := store.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := message(short); got != "Group expired" {
		t.Errorf("expired, after the purge: %q", got)
	}
	if got := message(lost); got != "Group host heartbeat expired" {
		t.Errorf("host gone, after the purge: %q", got)
	}
	gone := create("h3", 3000)
	s.ok(t, "dissolveGroup", qDissolve, map[string]any{"groupId": gone, "domain": "classroom", "hostId": "h3"})
	if got := message(gone); got != "Group not found" {
		t.Errorf("dissolved: %q", got)
	}
}

// TestFrozenHostTabEndsItsGroup (issue 24 item 5): a Mesh v2 host whose tab froze keeps its
// WebSocket (the browser answers pings) and its subscription but sends no heartbeat. As in the
// cloud, only heartbeats keep a Mesh v2 node alive: once the host TTL has passed, the purge ends
// the group and the member's subscription gets onGroupDissolve. (An open subscription used to
// count as the host's activity, and the group lived as long as the frozen tab's socket.)
func TestFrozenHostTabEndsItsGroup(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	b, store := newStoreBackend(t, clock.Now)
	s := newTestServer(t, Config{MaxConnectionTime: time.Hour}, b)
	s.h.root.now = clock.Now
	gid := s.group(t, true)
	header := `{"host":"x","x-amz-date":"20260101T000000Z","x-api-key":"k"}`
	host := s.dialRT(t, header) // the host's tab: its subscription stays open
	host.handshake()
	host.start("h", gid)
	host.expect("start_ack")
	s.join(t, gid, "m1")
	member := s.dialRT(t, header)
	member.handshake()
	member.start("m", gid)
	member.expect("start_ack")

	clock.Advance(100 * time.Second) // the member keeps heartbeating; the frozen host does not
	s.ok(t, "sendMemberHeartbeat", qMemberHB, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1"})
	clock.Advance(51 * time.Second) // past the host TTL (150 s)
	if _, err := store.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	for {
		d := member.data("m").Data.OnMessageInGroup
		if d.GroupDissolve != nil {
			break
		}
		if d.NodeStatus == nil && d.BatchEvent == nil {
			t.Fatalf("member got %+v, want onGroupDissolve", d)
		}
	}
	s.fails(t, errGroupNotFound, qRenew, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host"})
}
