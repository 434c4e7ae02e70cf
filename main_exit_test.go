package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run meshbox's real main() in a child process (the test binary itself),
// to see exactly what a user sees: the exit status and what is printed.
func TestMain(m *testing.M) {
	if os.Getenv("MESHBOX_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// mainResult is what one run of the meshbox command printed and returned.
type mainResult struct {
	stdout, stderr string
	status         int
}

// runMain runs the meshbox command with args and env (only MESHBOX_* variables, nothing
// inherited), optionally as another user, and waits for it to exit.
func runMain(t *testing.T, args []string, env map[string]string, cred *syscall.Credential) mainResult {
	t.Helper()
	bin := os.Args[0]
	if cred != nil {
		bin = copyExecutable(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"MESHBOX_TEST_RUN_MAIN=1", "PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	status := 0
	if errors.As(err, &exit) {
		status = exit.ExitCode()
	} else if err != nil {
		t.Fatalf("run meshbox: %v", err)
	}
	return mainResult{stdout.String(), stderr.String(), status}
}

// copyExecutable puts a copy of the test binary where any user may run it.
func copyExecutable(t *testing.T) string {
	t.Helper()
	dir := openDir(t)
	body, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "meshbox.test")
	if err := os.WriteFile(bin, body, 0o755); err != nil {
		t.Fatal(err)
	}
	return bin
}

// openDir is a temporary directory every user may enter (t.TempDir is private to its owner).
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "meshbox-main-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestStartupErrors runs the meshbox command with each kind of bad setting and checks that it
// prints exactly one line naming the setting, the value and what is accepted, and exits 2.
func TestStartupErrors(t *testing.T) {
	t.Parallel()
	dir := openDir(t)
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"flag duration", []string{"--event-ttl=abc"}, nil,
			"meshbox: --event-ttl=abc is not a duration; use a number with a unit, such as 90s, 10m or 1h"},
		{"environment duration", nil, map[string]string{"MESHBOX_EVENT_TTL": "abc"},
			"meshbox: MESHBOX_EVENT_TTL=abc is not a duration; use a number with a unit, such as 90s, 10m or 1h"},
		{"synchronous as typed", []string{"--synchronous=bogus"}, nil,
			"meshbox: --synchronous=bogus is not a synchronous mode; use normal or full"},
		{"environment boolean", nil, map[string]string{"MESHBOX_TRUST_PROXY": "maybe"},
			"meshbox: MESHBOX_TRUST_PROXY=maybe is not true or false; use true or false"},
		{"log level", []string{"--log-level=loud"}, nil,
			"meshbox: --log-level=loud is not a log level; use debug, info, warn or error"},
		{"log format", []string{"--log-format=xml"}, nil,
			"meshbox: --log-format=xml is not a log format; use text or json"},
		{"weak teacher password", []string{"--admin-token=7391"}, nil,
			"meshbox: --admin-token is too short (4 characters): a short password can be guessed from any pupil's computer; use at least 16 characters, or leave it unset and meshbox creates a strong one at first start"},
		{"weak teacher password from the environment", nil, map[string]string{"MESHBOX_ADMIN_TOKEN": "sensei-2026"},
			"meshbox: MESHBOX_ADMIN_TOKEN is too short (11 characters): a short password can be guessed from any pupil's computer; use at least 16 characters, or leave it unset and meshbox creates a strong one at first start"},
		{"unknown flag", []string{"--event-tl=1m"}, nil,
			"meshbox: --event-tl is not a setting; meshbox --help lists them"},
		{"database folder missing", []string{"--addr=127.0.0.1:0", "--db=" + dir + "/nope/meshbox.db"}, nil,
			"meshbox: --db=" + dir + "/nope/meshbox.db is in a folder that does not exist (" + dir + "/nope); create the folder first, or choose a file in an existing folder"},
		{"database path is a folder", []string{"--addr=127.0.0.1:0"}, map[string]string{"MESHBOX_DB": dir + "/adir"},
			"meshbox: MESHBOX_DB=" + dir + "/adir is a folder, not a file; name a file inside it, such as " + dir + "/adir/meshbox.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := runMain(t, tc.args, tc.env, nil)
			if got.status != 2 || got.stderr != tc.want+"\n" || got.stdout != "" {
				t.Errorf("exit %d\nstderr %q\nstdout %q\nwant exit 2 and %q", got.status, got.stderr, got.stdout, tc.want)
			}
		})
	}
}

// TestStartupUnwritableFolder gives meshbox a database in a folder its user cannot write. As
// root (who may write anywhere) the command runs as the user nobody instead.
func TestStartupUnwritableFolder(t *testing.T) {
	t.Parallel()
	dir := openDir(t)
	ro := filepath.Join(dir, "ro")
	if err := os.Mkdir(ro, 0o755); err != nil {
		t.Fatal(err)
	}
	var cred *syscall.Credential
	user := ""
	if os.Getuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
		user = "nobody"
	} else {
		if err := os.Chmod(ro, 0o555); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(ro, 0o755) })
	}
	uidGid := fmt.Sprintf("%d:%d", os.Getuid(), os.Getgid())
	if cred != nil {
		uidGid = fmt.Sprintf("%d:%d", cred.Uid, cred.Gid)
	}
	db := filepath.Join(ro, "meshbox.db")
	got := runMain(t, []string{"--addr=127.0.0.1:0", "--db=" + db}, nil, cred)
	prefix := "meshbox: --db=" + db + " is in a folder this user ("
	suffix := ") cannot write (" + ro + "); SQLite keeps its journal files beside the database: give this user write permission on the folder (in a container with a bind mount: chown " +
		uidGid + " the host folder, or use a named volume), or choose another folder\n"
	if got.status != 2 || !strings.HasPrefix(got.stderr, prefix) || !strings.HasSuffix(got.stderr, suffix) || strings.Count(got.stderr, "\n") != 1 ||
		(user != "" && !strings.Contains(got.stderr, "("+user+", uid ")) {
		t.Errorf("exit %d, stderr %q", got.status, got.stderr)
	}
}

// TestLoopbackWarning: bound to loopback, meshbox says at start that students cannot connect;
// bound to every network it does not.
func TestLoopbackWarning(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done, out := startRun(t, ctx, filepath.Join(t.TempDir(), "meshbox.db"))
	const warning = `level=WARN msg="listening on this computer only: students' devices cannot connect; use --addr :8080 to accept them" addr=127.0.0.1:0`
	if !strings.Contains(out.String(), warning) {
		t.Errorf("no loopback warning in the log:\n%s", out)
	}
	cancel()
	<-done

	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	base, done2, out2 := startRunEnv(t, ctx2, map[string]string{"MESHBOX_DB": filepath.Join(t.TempDir(), "meshbox.db"), "MESHBOX_ADDR": ":0"})
	if strings.Contains(out2.String(), "listening on this computer only") {
		t.Errorf("loopback warning while listening on every network:\n%s", out2)
	}

	// The join address comes from this computer's network interfaces, not loopback, although
	// the page was opened on the box itself.
	var real []string
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLinkLocalUnicast() {
				real = append(real, p.Addr().String())
			}
		}
	}
	if len(real) > 0 {
		_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
		resp, err := http.Get("http://127.0.0.1:" + port + "/api/v1/dashboard/join")
		if err != nil {
			t.Fatal(err)
		}
		var j struct {
			URLs    []string
			Source  string
			Warning string
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := json.Unmarshal(body, &j); err != nil {
			t.Fatalf("join: %s: %v", body, err)
		}
		if len(j.URLs) == 0 || j.Source != "network" || strings.Contains(j.URLs[0], "127.0.0.1") {
			t.Errorf("join address %s, want one of this computer's interfaces %v", body, real)
		} else if first := strings.TrimSuffix(strings.TrimPrefix(j.URLs[0], "http://"), ":"+port+"/"); !contains(real, first) && j.Warning == "" {
			t.Errorf("join address %s is not an interface address %v", j.URLs[0], real)
		}
	} else {
		t.Log("this computer has no network interface besides loopback; join address from interfaces not checked here")
	}
	cancel2()
	<-done2
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// TestTakenPortIsOneSentence: a second meshbox on a port already in use stops with one line
// that says what is wrong and what to do, in words, and exits 1.
func TestTakenPortIsOneSentence(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	got := runMain(t, []string{"--addr=127.0.0.1:" + port, "--db=" + filepath.Join(openDir(t), "meshbox.db"), "--mdns=false"}, nil, nil)
	want := fmt.Sprintf("meshbox: another program, perhaps another meshbox, is using port %s: stop it or choose another port with --addr (such as --addr=:%d)\n", port, p+1)
	if got.status != 1 || got.stderr != want {
		t.Errorf("exit %d\nstderr %q\nwant exit 1 and %q", got.status, got.stderr, want)
	}
}

// TestCleanStopSaysNoError: a graceful stop logs "meshbox stopped" without an err=<nil>.
func TestCleanStopSaysNoError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	_, done, out := startRun(t, ctx, filepath.Join(t.TempDir(), "meshbox.db"))
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if !strings.Contains(out.String(), `msg="meshbox stopped"`) || strings.Contains(out.String(), "err=<nil>") {
		t.Errorf("the stop's log line:\n%s", out)
	}
}
