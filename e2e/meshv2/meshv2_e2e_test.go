// Package meshv2e2e runs the Node.js harnesses in this folder, which drive meshbox's Mesh v2
// endpoints with the real npm aws-appsync client, the way the Smalruby editor does.
package meshv2e2e

import (
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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

// TestAmplify6Client runs amplify.test.js: the real Amplify 6 client (npm aws-amplify),
// configured with meshbox's /graphql, defaultAuthMode 'apiKey' and the box's --api-key,
// creates a group, subscribes to onMessageInGroup, fires an event through a mutation and
// receives it; the same calls with a wrong key are refused.
//
// Amplify 6 always opens its real-time socket as wss://<endpoint>/realtime for an endpoint
// that is not an AppSync domain (it rewrites http:// to wss:// too), so a plain-HTTP meshbox
// cannot be reached by it: it has to be behind HTTPS, the deployment docs/api.md describes.
// The test puts a TLS reverse proxy (Go's, which passes WebSocket upgrades through) in front
// of meshbox, trusted by Node through NODE_EXTRA_CA_CERTS, and checks what Amplify really
// asked for: /graphql/realtime, the key in a `header-` subprotocol, no ?header= query.
func TestAmplify6Client(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat(filepath.Join("node_modules", "aws-amplify", "package.json")); err != nil && os.Getenv("MESHBOX_E2E") == "" {
		t.Skip("npm dependencies missing: run `npm ci` in e2e/meshv2 (or set MESHBOX_E2E=1 to make this an error)")
	}
	target, err := url.Parse(startServer(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var upgrades []*http.Request
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			mu.Lock()
			upgrades = append(upgrades, r.Clone(context.Background()))
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemCert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw})
	if err := os.WriteFile(ca, pemCert, 0o600); err != nil {
		t.Fatal(err)
	}
	runNode(t, "amplify.test.js", front.URL, apiKey, "NODE_EXTRA_CA_CERTS="+ca)

	mu.Lock()
	defer mu.Unlock()
	if len(upgrades) == 0 {
		t.Fatal("Amplify opened no WebSocket through the proxy")
	}
	for _, r := range upgrades {
		protos := strings.Join(r.Header.Values("Sec-WebSocket-Protocol"), ",")
		if r.URL.Path != "/graphql/realtime" || r.URL.RawQuery != "" || !strings.Contains(protos, "graphql-ws") || !strings.Contains(protos, "header-") {
			t.Errorf("Amplify's upgrade: path %q query %q protocols %q; want /graphql/realtime, no query, graphql-ws and header-…", r.URL.Path, r.URL.RawQuery, protos)
		}
	}
}
