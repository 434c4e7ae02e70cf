package types_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"meshbox/app"
)

// tool returns the path of a tool the test needs, or skips (fails with MESHBOX_E2E=1) when it
// is missing.
func tool(t *testing.T, path, hint string) string {
	t.Helper()
	if p, err := exec.LookPath(path); err == nil {
		return p
	}
	if os.Getenv("MESHBOX_E2E") != "" {
		t.Fatalf("MESHBOX_E2E is set but %s is missing: %s", path, hint)
	}
	t.Skipf("%s missing: %s (or set MESHBOX_E2E=1 to make this an error)", path, hint)
	return ""
}

// fetch GETs path from the box and checks the answer is 200 with the content type and an ETag
// that answers a revalidation with 304, as the box's other static files do.
func fetch(t *testing.T, base, path, wantType string) []byte {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != wantType {
		t.Errorf("GET %s: Content-Type %q, want %q", path, ct, wantType)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatalf("GET %s: no ETag", path)
	}
	req, _ := http.NewRequest(http.MethodGet, base+path, nil)
	req.Header.Set("If-None-Match", etag)
	again, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	again.Body.Close()
	if again.StatusCode != http.StatusNotModified {
		t.Errorf("GET %s with If-None-Match %s: %d, want 304", path, etag, again.StatusCode)
	}
	return body
}

// TestDeclarationsMatchTheClient fetches /meshbox.js and /meshbox.d.ts from a real meshbox and
// runs the real tsc --strict over example.ts (the whole API as docs/api.md documents it, with
// misuses that must not compile) and over the list of every public name meshbox.js really has
// (names.mjs), so a name added to the client without its declaration fails here.
func TestDeclarationsMatchTheClient(t *testing.T) {
	tsc, _ := filepath.Abs(filepath.Join("node_modules", ".bin", "tsc"))
	tsc = tool(t, tsc, "run `npm ci` in e2e/types (make deps does)")
	node := tool(t, "node", "apt-get install -y nodejs")

	a := app.StartTest(t, nil)
	dir := t.TempDir()
	js := fetch(t, a.URL(), "/meshbox.js", "text/javascript; charset=utf-8")
	dts := fetch(t, a.URL(), "/meshbox.d.ts", "text/typescript; charset=utf-8")
	if !strings.Contains(string(dts), "export declare class MeshClient") {
		t.Fatalf("/meshbox.d.ts does not declare MeshClient:\n%s", dts)
	}
	example, err := os.ReadFile("example.ts")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"meshbox.js": js, "meshbox.d.ts": dts, "example.ts": example} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	script, _ := filepath.Abs("names.mjs")
	names, err := exec.CommandContext(ctx, node, script, filepath.Join(dir, "meshbox.js")).Output()
	if err != nil {
		t.Fatalf("list meshbox.js's names: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "names.ts"), names, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "esnext",
		"--moduleResolution", "bundler", "--lib", "es2022,dom", "example.ts", "names.ts")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("tsc --strict refused the declarations: %v\n%s\nnames.ts:\n%s", err, out, names)
	}
}
