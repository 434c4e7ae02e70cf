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
