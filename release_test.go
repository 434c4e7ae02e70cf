package main

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// TestReleaseBinariesAnswerReadyz starts meshbox built for arm64 and for armv7 under qemu-user,
// as a Raspberry Pi would run them, and asks /readyz: the cross-built binary (SQLite included)
// opens its database and serves. It tests the binaries of `make release` when
// MESHBOX_RELEASE_DIR names its dist folder, and otherwise builds its own.
func TestReleaseBinariesAnswerReadyz(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-builds meshbox and runs it under emulation")
	}
	for _, target := range []struct{ arch, arm, qemu, suffix, platform string }{
		{"arm64", "", "qemu-aarch64", "linux-arm64", "linux/arm64"},
		{"arm", "7", "qemu-arm", "linux-armv7", "linux/arm/v7"},
	} {
		t.Run(target.suffix, func(t *testing.T) {
			t.Parallel()
			qemu, err := exec.LookPath(target.qemu)
			if err != nil {
				if os.Getenv("MESHBOX_E2E") != "" {
					t.Fatalf("%s not found (apt-get install qemu-user)", target.qemu)
				}
				t.Skipf("%s not found (apt-get install qemu-user)", target.qemu)
			}
			var bin string
			if dist := os.Getenv("MESHBOX_RELEASE_DIR"); dist != "" {
				m, _ := filepath.Glob(filepath.Join(dist, "meshbox-*-"+target.suffix))
				if len(m) != 1 {
					t.Fatalf("want one %s binary in %s, found %v", target.suffix, dist, m)
				}
				bin = m[0]
			} else {
				bin = filepath.Join(t.TempDir(), "meshbox-"+target.suffix)
				cmd := exec.Command("go", "build", "-o", bin, ".") // the flags of `make test-arm`, whose build cache it shares
				cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+target.arch, "GOARM="+target.arm)
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Fatalf("build: %v\n%s", err, out)
				}
			}
			if out, err := exec.Command(qemu, bin, "--version").CombinedOutput(); err != nil || !regexp.MustCompile(`^meshbox \S+ \(commit \S+, go1\.\S+, `+target.platform+`\)`).Match(out) {
				t.Fatalf("--version under %s: %q, %v", target.qemu, out, err)
			}
			_, base := startCommand(t, exec.Command(qemu, bin, "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "meshbox.db"), "--mdns=false"))
			resp, err := http.Get(base + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("/readyz: %d", resp.StatusCode)
			}
			// The container's HEALTHCHECK, as the image runs it (MESHBOX_ADDR=:PORT).
			u, err := url.Parse(base)
			if err != nil {
				t.Fatal(err)
			}
			hc := exec.Command(qemu, bin, "healthcheck")
			hc.Env = append(os.Environ(), "MESHBOX_ADDR=:"+u.Port())
			if out, err := hc.CombinedOutput(); err != nil || string(out) != "ok\n" {
				t.Fatalf("healthcheck under %s: %q, %v", target.qemu, out, err)
			}
		})
	}
}
