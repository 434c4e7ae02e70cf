package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// unwritableChildEnv makes the test binary, started again as another user, run meshbox.
const unwritableChildEnv = "MESHBOX_TEST_UNWRITABLE_DB"

// A container's non-root user (uid 65532) given a bind mount owned by root must hear, at start,
// which directory it cannot write, as which uid, and how to fix it, instead of SQLite's
// "unable to open database file (14)".
func TestUnwritableDatabaseDirectoryIsExplained(t *testing.T) {
	if db := os.Getenv(unwritableChildEnv); db != "" {
		err := run(context.Background(), []string{"--db", db, "--addr", "127.0.0.1:0", "--mdns=false"}, func(string) string { return "" }, io.Discard)
		fmt.Printf("run error: %v\n", err)
		return
	}
	if os.Geteuid() != 0 {
		// As an ordinary user, a directory without write permission shows the same.
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o555); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(dir, 0o755)
		err := run(context.Background(), []string{"--db", filepath.Join(dir, "meshbox.db"), "--addr", "127.0.0.1:0", "--mdns=false"}, func(string) string { return "" }, io.Discard)
		checkExplained(t, fmt.Sprint(err), dir, os.Getuid())
		return
	}
	// As root (CI), run meshbox as the image's user on a directory that root owns, like a
	// bind mount of a host directory.
	base, err := os.MkdirTemp("", "meshbox-datadir-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	data := filepath.Join(base, "data")
	for _, d := range []string{base, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(d, 0o755)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(base, "meshbox.test")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^TestUnwritableDatabaseDirectoryIsExplained$")
	cmd.Env = append(os.Environ(), unwritableChildEnv+"="+filepath.Join(data, "meshbox.db"), "HOME=/")
	cmd.Dir = base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65532, Gid: 65532}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	checkExplained(t, string(out), data, 65532)
	if _, err := os.Stat(filepath.Join(data, "meshbox.db")); err == nil {
		t.Fatal("a database file was created although the directory is not writable")
	}
}

func checkExplained(t *testing.T, msg, dir string, uid int) {
	t.Helper()
	for _, want := range []string{dir, "cannot write", fmt.Sprintf("uid %d", uid), fmt.Sprintf("chown %d:%d", uid, uid), "named volume"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not say %q:\n%s", want, msg)
		}
	}
}
