// Package meshv2e2e runs the Node.js harnesses in this folder, which drive meshbox's Mesh v2
// endpoints with the real npm aws-appsync client, the way the Smalruby editor does.
package meshv2e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
)

const apiKey = "e2e-key"

// startServer starts a whole meshbox, as main does, requiring the API key; edit may change
// its settings further.
func startServer(t *testing.T, edit func(*config.Config)) string {
	t.Helper()
	return app.StartTest(t, func(c *config.Config) {
		c.APIKey = apiKey
		if edit != nil {
			edit(c)
		}
	}).URL()
}

// runNode runs `node --test` on one harness file against url. It is skipped only when the
// npm dependencies are not installed and MESHBOX_E2E is unset; with MESHBOX_E2E=1 a missing
// install fails the test.
func runNode(t *testing.T, file, url, key string, env ...string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join("node_modules", "aws-appsync", "package.json")); err != nil {
		if os.Getenv("MESHBOX_E2E") == "" {
			t.Skip("npm dependencies missing: run `npm ci` in e2e/meshv2 (or set MESHBOX_E2E=1 to make this an error)")
		}
		t.Fatalf("MESHBOX_E2E is set but the npm dependencies are missing: run `npm ci` in e2e/meshv2: %v", err)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node not found: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"--test", "--test-reporter=spec", file}
	// --test-force-exit (Node ≥ 20.14) ends the run as soon as the tests are done; Debian
	// bookworm's Node 18 lacks it and waits instead for the client's idle sockets and timers to
	// end (some seconds), with the same result.
	if exec.CommandContext(ctx, node, "--test-force-exit", "--version").Run() == nil {
		args = append([]string{"--test-force-exit"}, args...)
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(append(os.Environ(), "MESHBOX_URL="+url, "MESHBOX_API_KEY="+key), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test %s output:\n%s", file, out)
	if err != nil {
		t.Fatalf("harness failed: %v", err)
	}
}

// TestAWSAppSyncClient runs every query, mutation and the subscription through the client.
// MESHBOX_URL (with MESHBOX_API_KEY) points it at a running meshbox instead of the
// in-process server.
func TestAWSAppSyncClient(t *testing.T) {
	t.Parallel()
	url, key := os.Getenv("MESHBOX_URL"), os.Getenv("MESHBOX_API_KEY")
	if url == "" {
		url, key = startServer(t, nil), apiKey
	}
	runNode(t, "meshv2.test.js", url, key)
}

// TestClassroom replays the extension's own logic (replica.js): members that heartbeat stay
// past the member TTL, members follow the group's transport, and polling members of a mixed
// group get every other node's events once, in order. The TTLs and intervals are short so
// the test does not wait for minutes.
func TestClassroom(t *testing.T) {
	t.Parallel()
	const memberTTL = 3 * time.Second
	url := startServer(t, func(c *config.Config) {
		c.MemberTTL = memberTTL
		c.MemberHeartbeatInterval = time.Second
		c.PollingInterval = time.Second
		c.PurgeInterval = 200 * time.Millisecond
	})
	runNode(t, "classroom.test.js", url, apiKey, fmt.Sprintf("MESHBOX_MEMBER_TTL_SECONDS=%d", int(memberTTL/time.Second)))
}

// TestNoWebSocketFailsTheProbe starts meshbox with --no-websocket: the host's WebSocket probe
// fails, as behind a school filter, so its group polls.
func TestNoWebSocketFailsTheProbe(t *testing.T) {
	t.Parallel()
	url := startServer(t, func(c *config.Config) { c.NoWebSocket = true })
	runNode(t, "classroom.test.js", url, apiKey, "MESHBOX_EXPECT_NO_WEBSOCKET=1")
}
