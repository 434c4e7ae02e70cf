package service

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The unit must run meshbox unprivileged, keep its database in a state directory, restart it
// after a crash, allow enough descriptors for many streams, and lock the rest down.
func TestInstalledUnitIsHardened(t *testing.T) {
	t.Parallel()
	bin, err := os.Executable() // any existing executable: systemd-analyze checks the path
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Run([]string{"install", "--unit-dir", dir, "--binary", bin, "--memory-limit", "300MiB"}, &out); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "meshbox.service")
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	unit := string(text)
	for _, want := range []string{
		"ExecStart=" + bin + "\n",
		"Environment=MESHBOX_DB=/var/lib/meshbox/meshbox.db\n",
		"Environment=MESHBOX_ADDR=:8080\n",
		"Environment=MESHBOX_MEMORY_LIMIT=300MiB\n",
		"DynamicUser=yes\n", "StateDirectory=meshbox\n", "LimitNOFILE=65536\n", "Restart=on-failure\n",
		"NoNewPrivileges=yes\n", "ProtectSystem=strict\n", "ProtectHome=yes\n", "PrivateTmp=yes\n",
		"CapabilityBoundingSet=\n", "SystemCallFilter=@system-service\n",
		"RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX AF_NETLINK\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(unit, "CAP_NET_BIND_SERVICE") {
		t.Error("port 8080 needs no capability")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v, %v", fi.Mode(), err)
	}
	if !strings.Contains(out.String(), "systemctl enable --now meshbox") {
		t.Errorf("no next steps printed: %q", out.String())
	}
	verify(t, path)
}

// A low port gets exactly the one capability it needs.
func TestUnitForPort80BindsWithOneCapability(t *testing.T) {
	t.Parallel()
	text, err := Unit{Binary: "/usr/local/bin/meshbox", Addr: ":80", MDNS: false}.Render()
	if err != nil {
		t.Fatal(err)
	}
	unit := string(text)
	for _, want := range []string{"AmbientCapabilities=CAP_NET_BIND_SERVICE\n", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE\n", "Environment=MESHBOX_MDNS=false\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	if strings.Contains(unit, "MEMORY_LIMIT") {
		t.Error("memory limit set although none was asked for")
	}
}

func TestBadUnitSettingsAreRefused(t *testing.T) {
	t.Parallel()
	for _, u := range []Unit{
		{Binary: "meshbox", Addr: ":8080"},
		{Binary: "/opt/my meshbox", Addr: ":8080"},
		{Binary: "/usr/local/bin/meshbox", Addr: "8080"},
		{Binary: "/usr/local/bin/meshbox", Addr: ":99999"},
		{Binary: "/usr/local/bin/meshbox", Addr: ":8080", MemoryLimit: "lots"},
	} {
		if _, err := u.Render(); err == nil {
			t.Errorf("%+v accepted", u)
		}
	}
	if err := Run([]string{"uninstall"}, &bytes.Buffer{}); err == nil {
		t.Error("unknown command accepted")
	}
}

// verify runs systemd's own checker on the unit where systemd is installed.
func verify(t *testing.T, path string) {
	t.Helper()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: unit syntax not verified by systemd")
		return
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUninstallRemovesOnlyItsUnit: uninstall removes the unit install wrote and the link
// `systemctl enable` made, says what is left to do and that the data is kept; it refuses a
// unit someone else wrote, and says so when nothing is installed. The help spells --settings.
func TestUninstallRemovesOnlyItsUnit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var out bytes.Buffer
	if err := Run([]string{"install", "--unit-dir", dir, "--binary", "/usr/local/bin/meshbox"}, &out); err != nil {
		t.Fatal(err)
	}
	unit := filepath.Join(dir, "meshbox.service")
	wants := filepath.Join(dir, "multi-user.target.wants")
	if err := os.Mkdir(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(unit, filepath.Join(wants, "meshbox.service")); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := Run([]string{"uninstall", "--unit-dir", dir}, &out); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{unit, filepath.Join(wants, "meshbox.service")} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", p, err)
		}
	}
	if !strings.Contains(out.String(), "systemctl daemon-reload") || !strings.Contains(out.String(), StateDir) {
		t.Errorf("uninstall said %q", out.String())
	}
	if err := Run([]string{"uninstall", "--unit-dir", dir}, &out); err == nil || !strings.Contains(err.Error(), "no meshbox service is installed") {
		t.Errorf("uninstall with nothing installed: %v", err)
	}
	if err := os.WriteFile(unit, []byte("[Unit]\nDescription=someone else's\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Run([]string{"uninstall", "--unit-dir", dir}, &out); err == nil || !strings.Contains(err.Error(), "was not written by meshbox") {
		t.Errorf("uninstall of a foreign unit: %v", err)
	}
	if _, err := os.Stat(unit); err != nil {
		t.Errorf("the foreign unit was removed: %v", err)
	}
	out.Reset()
	if err := Run([]string{"install", "--help"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "--unit-dir") || strings.Contains(out.String(), "\n  -unit-dir") {
		t.Errorf("install --help does not spell settings --name:\n%s", out.String())
	}
}
