package browser_test

import (
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
)

// settings are the meshbox settings a test changes from the defaults.
type settings struct {
	noWebSocket   bool
	eventTTL      time.Duration
	purgeInterval time.Duration
	// tailItems shrinks the hub's in-memory tail, which serves readers even after the store
	// purged its items, so that a reader that missed a few items really has to go to the store.
	tailItems int
	// memberHeartbeat is the heartbeat interval the server asks members for.
	memberHeartbeat time.Duration
	// pingInterval is how often WebSocket peers are pinged and SSE streams get their ping
	// event.
	pingInterval time.Duration
	// natsURL keeps the groups in a JetStream stream (instances given the same one share them).
	natsURL string
}

// meshbox is a real meshbox running in the test process, on a database file in a temp dir. It
// can be stopped and started again on the same address and database.
type meshbox struct {
	URL  string
	addr string
	db   string
	s    settings
	app  *app.App
}

func startMeshbox(t *testing.T, s settings) *meshbox {
	t.Helper()
	m := &meshbox{addr: "127.0.0.1:0", db: filepath.Join(t.TempDir(), "meshbox.db"), s: s}
	m.start(t)
	t.Cleanup(func() { m.stop(t) })
	return m
}

func (m *meshbox) args() []string {
	args := []string{"--addr", m.addr, "--db", m.db, "--log-level", "warn", "--mdns=false"}
	if m.s.noWebSocket {
		args = append(args, "--no-websocket")
	}
	if m.s.eventTTL > 0 {
		args = append(args, "--event-ttl", m.s.eventTTL.String())
	}
	if m.s.purgeInterval > 0 {
		args = append(args, "--purge-interval", m.s.purgeInterval.String())
	}
	if m.s.memberHeartbeat > 0 {
		args = append(args, "--member-heartbeat-interval", m.s.memberHeartbeat.String())
	}
	if m.s.pingInterval > 0 {
		args = append(args, "--ping-interval", m.s.pingInterval.String())
	}
	if m.s.tailItems > 0 {
		args = append(args, "--tail-items", strconv.Itoa(m.s.tailItems))
	}
	if m.s.natsURL != "" {
		args = append(args, "--nats-url", m.s.natsURL)
	}
	return args
}

// start starts meshbox; after the first start it reuses the same address, as a restarted
// server would.
func (m *meshbox) start(t *testing.T) {
	t.Helper()
	cfg, err := config.Parse(m.args(), func(string) string { return "" }, io.Discard, "test")
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var out io.Writer = io.Discard
	if os.Getenv("MESHBOX_E2E_LOG") == "1" {
		out = os.Stderr
	}
	var a *app.App
	// The old listener's port can take a moment to be free again.
	for i := 0; ; i++ {
		a, err = app.Start(context.Background(), cfg, app.NewLogger(cfg, out), "e2e")
		if err == nil || i == 50 || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("start meshbox: %v", err)
	}
	m.app = a
	u, err := url.Parse(a.URL())
	if err != nil {
		t.Fatalf("meshbox url: %v", err)
	}
	m.addr = u.Host
	m.URL = "http://" + u.Host
}

// stop shuts meshbox down gracefully, as SIGTERM would.
func (m *meshbox) stop(t *testing.T) {
	t.Helper()
	if m.app == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.app.Shutdown(ctx); err != nil {
		t.Errorf("shutdown meshbox: %v", err)
	}
	m.app = nil
}
