// Package mountns runs a test inside a mount namespace of its own with a small tmpfs mounted
// for it, so tests of a full disk fill a real filesystem of a known size and the mount never
// outlives the test nor shows anywhere else on the machine.
package mountns

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// childEnv marks the re-executed test binary with the name of the test it runs inside the
// namespace; dirEnv tells it where its filesystem is mounted.
const (
	childEnv = "MESHBOX_MOUNTNS_TEST"
	dirEnv   = "MESHBOX_MOUNTNS_DIR"
	// execEnv names the program the test binary runs under (go test -exec), such as
	// qemu-aarch64: the re-run in the namespace needs it too.
	execEnv = "MESHBOX_TEST_EXEC"
)

// Run re-runs the calling test in a fresh mount namespace (unshare --mount, private
// propagation) in which a tmpfs of size bytes is mounted on a new directory. In that child it
// returns the directory and true, and the test goes on; in the parent it waits for the child,
// reports its output and result, and returns false, and the test should return. The child
// runs with -test.v, so its log reaches the parent's output.
//
// It needs root and unshare (Debian's util-linux); without them the test is skipped, or fails
// when MESHBOX_E2E is set (as `make test` does).
func Run(t *testing.T, size int64) (string, bool) {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return os.Getenv(dirEnv), true
	}
	unshare, err := exec.LookPath("unshare")
	switch {
	case os.Geteuid() != 0:
		t.Skip("needs root to mount a small filesystem in a mount namespace")
	case err != nil:
		if os.Getenv("MESHBOX_E2E") != "" {
			t.Fatal("needs unshare (apt-get install util-linux)")
		}
		t.Skip("needs unshare (apt-get install util-linux)")
	}
	dir := t.TempDir()
	script := fmt.Sprintf("set -e\nmount -t tmpfs -o size=%d tmpfs %q\nexec \"$@\"\n", size, dir)
	args := []string{"--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"}
	if emu := os.Getenv(execEnv); emu != "" {
		// A test binary of another architecture (make test-arm runs them under qemu-user, with
		// no binfmt handler) runs in the namespace through the same emulator.
		args = append(args, emu)
	}
	args = append(args, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name(), dirEnv+"="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil && strings.Contains(string(out), "mount:") && !strings.Contains(string(out), "=== RUN") {
		t.Skipf("the kernel refused a tmpfs in a mount namespace: %s", out)
	}
	t.Logf("on a %d KiB tmpfs in a mount namespace of its own:\n%s", size>>10, out)
	if err != nil {
		t.Fatalf("test in mount namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test did not pass in the mount namespace")
	}
	return "", false
}
