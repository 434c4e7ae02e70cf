package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's log writes and the test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// startRun runs meshbox through run() as main does and returns its base URL.
func startRun(t *testing.T, ctx context.Context, dbPath string) (string, chan error, *syncBuffer) {
	t.Helper()
	return startRunEnv(t, ctx, map[string]string{"MESHBOX_DB": dbPath, "MESHBOX_ADDR": "127.0.0.1:0", "MESHBOX_MDNS": "false"})
}

// startRunEnv runs meshbox through run() with the given environment and returns its base URL.
func startRunEnv(t *testing.T, ctx context.Context, env map[string]string) (string, chan error, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, out) }()
	re := regexp.MustCompile(`addr=(http://\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			return m[1], done, out
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, out)
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("meshbox did not start:\n%s", out)
	return "", nil, nil
}

// hostOf is what a test keeps of a group it created: the id and the host's token.
type hostOf struct {
	Group struct{ ID string }
	Token string
}

// createGroup creates a group on a running meshbox.
func createGroup(t *testing.T, base, name string) hostOf {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/groups", "application/json", strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j hostOf
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create group: %d %v", resp.StatusCode, err)
	}
	return j
}

func TestRunServesAndShutsDownGracefully(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "meshbox.db")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done, out := startRun(t, ctx, dbPath)
	if _, err := os.Stat(dbPath); err != nil {
		t.Fatalf("database not created: %v", err)
	}
	j := createGroup(t, base, "g")

	// An open SSE stream must not hold shutdown up.
	sse, err := http.Get(base + "/api/v1/groups/" + j.Group.ID + "/stream?token=" + j.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Body.Close()
	bufio.NewReader(sse.Body).ReadString('\n')

	// Publish continuously while shutting down: every acknowledged publish must survive.
	var mu sync.Mutex
	var acked []int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("POST", base+"/api/v1/groups/"+j.Group.ID+"/events", strings.NewReader(`{"events":[{"name":"e"}]}`))
				req.Header.Set("Authorization", "Bearer "+j.Token)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return
				}
				var out struct{ Cursors []int64 }
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					mu.Lock()
					acked = append(acked, out.Cursors...)
					mu.Unlock()
				}
			}
		}()
	}
	// Shut down once publishes are flowing (some acknowledged), not after a fixed time.
	waitUntil(t, "acknowledged publishes before shutdown", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 16
	})
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("shutdown hung:\n%s", out)
	}
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("shutdown took %v", took)
	}
	close(stop)
	wg.Wait()
	if len(acked) == 0 {
		t.Fatal("no publish was acknowledged")
	}

	// Restart on the same database: every acknowledged item is there, and cursors go on.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	base, done, _ = startRun(t, ctx2, dbPath)
	req, _ := http.NewRequest("GET", base+"/api/v1/groups/"+j.Group.ID+"/events?since=0&limit=5000", nil)
	req.Header.Set("Authorization", "Bearer "+j.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		Items []struct{ Cursor int64 }
		Next  int64
	}
	json.NewDecoder(resp.Body).Decode(&p)
	resp.Body.Close()
	have := map[int64]bool{}
	for _, it := range p.Items {
		have[it.Cursor] = true
	}
	for _, c := range acked {
		if !have[c] {
			t.Fatalf("acknowledged cursor %d lost after restart (%d acked, %d stored)", c, len(acked), len(p.Items))
		}
	}
	cancel2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestHelpAndVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"--help"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"-addr", "MESHBOX_ADDR", "MESHBOX_DB", "MESHBOX_EVENT_TTL", "MESHBOX_ADMIN_TOKEN", "MESHBOX_DOMAIN_MODE"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--help lacks %s", want)
		}
	}
	out.Reset()
	if err := run(context.Background(), []string{"--version"}, func(string) string { return "" }, &out); err != nil ||
		!regexp.MustCompile(`^meshbox \S+ \(commit \S+, go1\.\d+\S*, linux/[\w/]+\)\n$`).MatchString(out.String()) {
		t.Fatalf("--version: %q %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"--synchronous", "sometimes"}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("a bad setting was accepted")
	}
	fmt.Fprint(io.Discard, "")
}

// Without the setting, GOMEMLIMIT (read by the Go runtime at start) stays in force and the
// start-up log names it. The test binary runs itself again with GOMEMLIMIT set.
func TestGOMEMLIMITIsHonoured(t *testing.T) {
	if os.Getenv("MESHBOX_TEST_GOMEMLIMIT") != "" {
		ctx, cancel := context.WithCancel(context.Background())
		_, done, out := startRun(t, ctx, filepath.Join(t.TempDir(), "meshbox.db"))
		cancel()
		<-done
		fmt.Print(out.String())
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestGOMEMLIMITIsHonoured$", "-test.v")
	cmd.Env = append(os.Environ(), "MESHBOX_TEST_GOMEMLIMIT=1", "GOMEMLIMIT=123MiB")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !regexp.MustCompile(`msg="memory limit" bytes=` + fmt.Sprint(123<<20)).Match(out) {
		t.Fatalf("GOMEMLIMIT=123MiB not in force:\n%s", out)
	}
}

// --memory-limit (or MESHBOX_MEMORY_LIMIT) sets the Go runtime's soft limit, and the start-up log
// says which limit is in force.
func TestMemoryLimitIsApplied(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(old) })
	ctx, cancel := context.WithCancel(context.Background())
	_, done, out := startRunEnv(t, ctx, map[string]string{
		"MESHBOX_DB": filepath.Join(t.TempDir(), "meshbox.db"), "MESHBOX_ADDR": "127.0.0.1:0", "MESHBOX_MDNS": "false",
		"MESHBOX_MEMORY_LIMIT": "300MiB",
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := debug.SetMemoryLimit(-1); got != 300<<20 {
		t.Fatalf("memory limit %d, want %d", got, 300<<20)
	}
	if !strings.Contains(out.String(), "memory limit") || !strings.Contains(out.String(), fmt.Sprint(300<<20)) {
		t.Fatalf("start-up log does not name the limit:\n%s", out)
	}
}

// `meshbox healthcheck` (the container's HEALTHCHECK) answers ok while meshbox is ready, for the
// image's wildcard address as for an explicit one, and fails when nothing listens.
func TestHealthcheck(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	base, done, _ := startRun(t, ctx, filepath.Join(t.TempDir(), "meshbox.db"))
	port := base[strings.LastIndex(base, ":")+1:]
	for _, addr := range []string{":" + port, "127.0.0.1:" + port} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{"healthcheck"}, func(k string) string {
			return map[string]string{"MESHBOX_ADDR": addr}[k]
		}, &out); err != nil || out.String() != "ok\n" {
			t.Fatalf("healthcheck on %s: %q, %v", addr, out.String(), err)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := run(context.Background(), []string{"healthcheck", "--addr", "127.0.0.1:" + port}, func(string) string { return "" }, io.Discard); err == nil {
		t.Fatal("healthcheck passed with meshbox stopped")
	}
}

// waitUntil polls cond until it holds: the condition is observable, its timing is not.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		runtime.Gosched()
	}
}
