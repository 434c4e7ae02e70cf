package meshv2

import (
	"context"
	"testing"
	"time"

	"meshbox/hub"
	"meshbox/rules"
	"meshbox/rules/rulestest"
	"meshbox/testclock"
)

// newStoreBackend opens a real SQLite store in t.TempDir() with a hub, wired as main does.
func newStoreBackend(t *testing.T, now func() time.Time) (*StoreBackend, *rules.Engine) {
	t.Helper()
	store := rulestest.Open(t, "", rules.Options{HostTTL: 150 * time.Second, MemberTTL: 600 * time.Second, MaxGroupLifetime: time.Hour, EventTTL: 10 * time.Minute, Now: now})
	h := hub.New(store, hub.Options{})
	store.Start(rules.Hooks{OnCommit: h.Publish, Active: h.Active})
	return NewStoreBackend(store, h), store
}

// backends runs a test against the in-memory fake and against the real store.
func backends(t *testing.T, test func(t *testing.T, b Backend)) {
	t.Run("fake", func(t *testing.T) { t.Parallel(); test(t, newFakeBackend()) })
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		b, _ := newStoreBackend(t, nil)
		test(t, b)
	})
}

func TestStoreBackendLifetimes(t *testing.T) {
	t.Parallel()
	clock := testclock.New()
	b, store := newStoreBackend(t, clock.Now)
	s := newTestServer(t, Config{MaxConnectionTime: time.Hour}, b)
	s.h.root.now = clock.Now
	gid := s.group(t, true)
	s.join(t, gid, "m1")

	// A member silent past its TTL is removed; the host heartbeat keeps the group.
	for range 5 {
		clock.Advance(130 * time.Second)
		s.ok(t, "renewHeartbeat", qRenew, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host"})
	}
	if _, err := store.Purge(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.fails(t, errNodeNotFound, qMemberHB, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1"})

	// The host's heartbeat lapsing ends the group.
	clock.Advance(151 * time.Second)
	s.fails(t, errGroupNotFound, qRenew, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host"})

	// expiresAt is absolute: heartbeats do not move it.
	g2 := obj(t, s.ok(t, "createGroup", qCreateGroup, map[string]any{
		"name": "h2", "hostId": "h2", "domain": "classroom", "maxConnectionTimeSeconds": 100, "useWebSocket": true,
	}))
	clock.Advance(60 * time.Second)
	hb := obj(t, s.ok(t, "renewHeartbeat", qRenew, map[string]any{"groupId": g2["id"], "domain": "classroom", "hostId": "h2"}))
	if hb["expiresAt"] != g2["expiresAt"] {
		t.Fatalf("heartbeat moved expiresAt from %v to %v", g2["expiresAt"], hb["expiresAt"])
	}
	clock.Advance(41 * time.Second)
	s.fails(t, errGroupNotFound, qRenew, map[string]any{"groupId": g2["id"], "domain": "classroom", "hostId": "h2"})
}
