// Package meshv2e2e runs the Node.js harness in this folder, which drives meshbox's Mesh v2
// endpoints with the real npm aws-appsync client, the way the Smalruby editor does.
package meshv2e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
)

const apiKey = "e2e-key"

// startServer starts a whole meshbox, as main does, requiring the API key.
func startServer(t *testing.T) string {
	t.Helper()
	return app.StartTest(t, func(c *config.Config) { c.APIKey = apiKey }).URL()
}

// TestAWSAppSyncClient runs `node --test` on the harness. It is skipped only when the npm
// dependencies are not installed and MESHBOX_E2E is unset; with MESHBOX_E2E=1 a missing
// install fails the test. MESHBOX_URL (with MESHBOX_API_KEY) points it at a running meshbox
// instead of the in-process server.
func TestAWSAppSyncClient(t *testing.T) {
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
	url, key := os.Getenv("MESHBOX_URL"), os.Getenv("MESHBOX_API_KEY")
	if url == "" {
		url, key = startServer(t), apiKey
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	args := []string{"--test", "--test-reporter=spec", "meshv2.test.js"}
	// --test-force-exit (Node ≥ 20.14) ends the run as soon as the tests are done; Debian
	// bookworm's Node 18 lacks it and waits instead for the client's idle sockets and timers to
	// end (some seconds), with the same result.
	if exec.CommandContext(ctx, node, "--test-force-exit", "--version").Run() == nil {
		args = append([]string{"--test-force-exit"}, args...)
	}
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), "MESHBOX_URL="+url, "MESHBOX_API_KEY="+key)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test output:\n%s", out)
	if err != nil {
		t.Fatalf("harness failed: %v", err)
	}
}
