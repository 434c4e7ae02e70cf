// Package netns runs a test inside a network namespace of its own, so tests of what meshbox
// sends on a network (mDNS answers, the absence of outbound connections) see only the
// interfaces they made, never the machine's real network.
package netns

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// childEnv marks the re-executed test binary with the name of the test it runs inside the
// namespace.
const childEnv = "MESHBOX_NETNS_TEST"

// Run re-runs the calling test in a fresh network namespace (unshare --net) in which the
// loopback interface is up and the shell commands of setup have run (ip, nft…). In that child
// it returns true and the test goes on; in the parent it waits for the child, reports its
// output and result, and returns false, and the test should return.
//
// It needs root, unshare and ip (Debian's util-linux and iproute2). Without them the test is
// skipped, or fails when MESHBOX_E2E is set (as `make test` does).
func Run(t *testing.T, setup ...string) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	unshare, err1 := exec.LookPath("unshare")
	_, err2 := exec.LookPath("ip")
	switch {
	case os.Geteuid() != 0:
		// Not something make deps can install: skip, also under MESHBOX_E2E.
		t.Skip("needs root to make a network namespace")
	case err1 != nil || err2 != nil:
		missing(t, "needs unshare and ip (apt-get install util-linux iproute2)")
	}
	script := "set -e\nip link set lo up\n" + strings.Join(setup, "\n") + "\nexec \"$@\"\n"
	args := []string{"--net", "--", "sh", "-c", script, "sh",
		os.Args[0], "-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v", "-test.count=1"}
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	t.Logf("in a network namespace of its own:\n%s", out)
	if err != nil {
		t.Fatalf("test in network namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("test did not pass in the network namespace")
	}
	return false
}

func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("MESHBOX_E2E") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}
