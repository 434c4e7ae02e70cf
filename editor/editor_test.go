package editor

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"meshbox/auth"
)

// TestRewriteFollowsTheHost: with no --public-url, the editor's JavaScript names this box's
// /graphql as the browser reached it (Host), in the literal's own quotes, with the length,
// type, Vary and an ETag of its own per address; If-None-Match answers 304; the build's key
// stays when the box has no --api-key (any key is accepted then).
func TestRewriteFollowsTheHost(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{
		"index.html":         `<script src="lib.min.js"></script>`,
		"lib.min.js":         bundle("/*a*/"),
		"chunks/single.js":   `x='` + cloudURL + `';`,
		"chunks/plain.js":    `console.log("no address here")`,
		"static/notjs.json":  `{"u":"` + cloudURL + `"}`,
		"chunks/comment.js":  `// see ` + cloudURL + ` for the cloud`,
		"chunks/longer.js":   `y="` + cloudURL + `/realtime";`,
		"static/style.css":   `body{}`,
		"static/module.wasm": "\x00asm",
	})
	base := serveEditor(t, Config{Path: dir})

	resp, body := get(t, base, "/smalruby/lib.min.js", "192.168.1.20:8080")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	mustContain(t, "lib.min.js", body, `"http://192.168.1.20:8080/graphql"`, `"`+cloudKey+`"`)
	mustNotContain(t, "lib.min.js", body, "appsync-api")
	if got := resp.Header.Get("Content-Type"); got != "text/javascript; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(body)) {
		t.Errorf("Content-Length %s for %d bytes", got, len(body))
	}
	if got := resp.Header.Get("Vary"); got != "Host" {
		t.Errorf("Vary %q, want Host", got)
	}
	etag := resp.Header.Get("ETag")

	resp2, body2 := get(t, base, "/smalruby/lib.min.js", "meshbox.local:8080")
	mustContain(t, "lib.min.js by name", body2, `"http://meshbox.local:8080/graphql"`)
	if resp2.Header.Get("ETag") == etag || etag == "" {
		t.Errorf("the same ETag %q for two addresses", etag)
	}
	if r, _ := get(t, base, "/smalruby/lib.min.js", "192.168.1.20:8080", "If-None-Match", etag); r.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match with its ETag: status %d, want 304", r.StatusCode)
	}
	if r, _ := get(t, base, "/smalruby/lib.min.js", "meshbox.local:8080", "If-None-Match", etag); r.StatusCode != http.StatusOK {
		t.Errorf("another address with the first one's ETag: status %d, want 200", r.StatusCode)
	}

	_, single := get(t, base, "/smalruby/chunks/single.js", "192.168.1.20:8080")
	mustContain(t, "single quotes", single, `'http://192.168.1.20:8080/graphql'`)
	// Only whole literals: a comment, a longer string and a JSON file stay as they are.
	for _, p := range []string{"chunks/comment.js", "chunks/longer.js", "static/notjs.json"} {
		_, b := get(t, base, "/smalruby/"+p, "192.168.1.20:8080")
		mustContain(t, p, b, cloudURL)
	}
	r, _ := get(t, base, "/smalruby/chunks/plain.js", "192.168.1.20:8080")
	if r.Header.Get("Vary") != "" {
		t.Errorf("a file with nothing rewritten varies by %q", r.Header.Get("Vary"))
	}
	for p, want := range map[string]string{"static/style.css": "text/css; charset=utf-8", "static/module.wasm": "application/wasm", "index.html": "text/html; charset=utf-8"} {
		if r, _ := get(t, base, "/smalruby/"+p, ""); r.Header.Get("Content-Type") != want || r.Header.Get("ETag") == "" {
			t.Errorf("%s: Content-Type %q ETag %q", p, r.Header.Get("Content-Type"), r.Header.Get("ETag"))
		}
	}
}

// TestRewritePublicURL: with --public-url the address written is PUBLIC/graphql whatever the
// request's Host, and the answer does not vary by it.
func TestRewritePublicURL(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{"index.html": "x", "lib.min.js": bundle("")})
	base := serveEditor(t, Config{Path: dir, PublicURL: "https://school.example/meshbox/"})
	resp, body := get(t, base, "/smalruby/lib.min.js", "192.168.1.20:8080")
	mustContain(t, "lib.min.js", body, `"https://school.example/meshbox/graphql"`)
	mustNotContain(t, "lib.min.js", body, "192.168.1.20")
	if v := resp.Header.Get("Vary"); v != "" {
		t.Errorf("Vary %q with a public URL", v)
	}
}

// TestRewriteBehindProxy: behind an HTTPS reverse proxy (--trust-proxy), the address is the
// one the browser used (X-Forwarded-Proto, X-Forwarded-Host), and the answer varies by those;
// without --trust-proxy the same headers are ignored (a pupil cannot make the box write an
// address of their choosing into a classmate's cache).
func TestRewriteBehindProxy(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{"index.html": "x", "lib.min.js": bundle("")})
	fwd := []string{"X-Forwarded-Proto", "https", "X-Forwarded-Host", "mesh.school.example"}

	trusted := serveEditor(t, Config{Path: dir, Clients: auth.Clients{TrustProxy: true}})
	resp, body := get(t, trusted, "/smalruby/lib.min.js", "10.0.0.5:8080", fwd...)
	mustContain(t, "behind the proxy", body, `"https://mesh.school.example/graphql"`)
	if v := resp.Header.Get("Vary"); v != "Host, X-Forwarded-Host, X-Forwarded-Proto" {
		t.Errorf("Vary %q", v)
	}
	if resp, _ := get(t, trusted, "/smalruby/lib.min.js", "10.0.0.5:8080", "X-Forwarded-Host", `evil.example"/x`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a forwarded host that is no host: status %d, want 400", resp.StatusCode)
	}

	direct := serveEditor(t, Config{Path: dir})
	_, body = get(t, direct, "/smalruby/lib.min.js", "10.0.0.5:8080", fwd...)
	mustContain(t, "without --trust-proxy", body, `"http://10.0.0.5:8080/graphql"`)
	mustNotContain(t, "without --trust-proxy", body, "mesh.school.example")
}

// TestRewriteRefusesAnImplausibleHost: a Host header that is no host[:port] is never written
// into a page (400 for a file that would carry it); files without an address are served.
func TestRewriteRefusesAnImplausibleHost(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{"index.html": "page", "lib.min.js": bundle(""), "plain.js": "1"})
	base := serveEditor(t, Config{Path: dir})
	for _, host := range []string{"a..b", "-x.example", "x.example:99999", "x.example:", "x_y.example", "[::1", "a.example:80:80"} {
		if resp, body := get(t, base, "/smalruby/lib.min.js", host); resp.StatusCode != http.StatusBadRequest || strings.Contains(body, host) {
			t.Errorf("Host %q: status %d", host, resp.StatusCode)
		}
	}
	for _, p := range []string{"/smalruby/", "/smalruby/plain.js"} {
		if resp, _ := get(t, base, p, "a..b"); resp.StatusCode != http.StatusOK {
			t.Errorf("%s with a bad Host: status %d, want 200", p, resp.StatusCode)
		}
	}
	for _, host := range []string{"[fe80::1]:8080", "10.1.2.3", "pc-12.school.example:443"} {
		if resp, body := get(t, base, "/smalruby/lib.min.js", host); resp.StatusCode != http.StatusOK || !strings.Contains(body, "http://"+host+"/graphql") {
			t.Errorf("Host %q: status %d", host, resp.StatusCode)
		}
	}
}

// TestAPIKeyReplaced: with --api-key the build's key beside the address becomes the box's,
// escaped for the literal's quotes; a da2- key far from any address is not the Mesh key and
// stays.
func TestAPIKeyReplaced(t *testing.T) {
	t.Parallel()
	const boxKey = `class 4b "key" $x`
	other := "da2-zzzzzzzzzzzzzzzzzzzzzzzzzz"
	js := bundle("") + strings.Repeat(";", keyWindow+100) + `k="` + other + `"`
	dir := writeFolder(t, map[string]string{"index.html": "x", "lib.min.js": js})
	base := serveEditor(t, Config{Path: dir, APIKey: boxKey})
	_, body := get(t, base, "/smalruby/lib.min.js", "box:8080")
	mustContain(t, "lib.min.js", body, `"class\u00204b\u0020\u0022key\u0022\u0020\u0024x"`, `"http://box:8080/graphql"`, other)
	mustNotContain(t, "lib.min.js", body, cloudKey)
}

// TestZipEditorFolder: a GitHub "Download ZIP" holds REPO-BRANCH/ with the editor in it; the
// first folder holding index.html is the editor, read straight from the zip. Nothing outside it
// is served: not a file beside it, not an entry named ../x, not by a path with .. or an
// encoded one.
func TestZipEditorFolder(t *testing.T) {
	t.Parallel()
	zp := writeZip(t,
		zipEntry{"README.md", strings.NewReader("outside")},
		zipEntry{"smalruby.app-main/", nil},
		zipEntry{"smalruby.app-main/deeper/more/index.html", strings.NewReader("not the editor")},
		zipEntry{"smalruby.app-main/index.html", strings.NewReader("<title>editor</title>")},
		zipEntry{"smalruby.app-main/lib.min.js", strings.NewReader(bundle(""))},
		zipEntry{"smalruby.app-main/static/blocks-media/x.svg", strings.NewReader("<svg/>")},
		zipEntry{"smalruby.app-main/../secret.txt", strings.NewReader("escaped")},
		zipEntry{"secret.txt", strings.NewReader("secret")},
	)
	base := serveEditor(t, Config{Path: zp})
	if resp, body := get(t, base, "/smalruby/", ""); resp.StatusCode != http.StatusOK || body != "<title>editor</title>" {
		t.Fatalf("/smalruby/: %d %q", resp.StatusCode, body)
	}
	resp, body := get(t, base, "/smalruby/lib.min.js", "192.168.1.20:8080")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("lib.min.js: %d", resp.StatusCode)
	}
	mustContain(t, "lib.min.js from the zip", body, `"http://192.168.1.20:8080/graphql"`)
	if resp, _ := get(t, base, "/smalruby/static/blocks-media/x.svg", ""); resp.Header.Get("Content-Type") != "image/svg+xml" {
		t.Errorf("svg: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if resp, _ := get(t, base, "/smalruby/deeper/more/", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("a folder's index.html: %d", resp.StatusCode)
	}
	if resp, _ := get(t, base, "/smalruby/deeper?mesh=d1", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/smalruby/deeper/?mesh=d1" {
		t.Errorf("a folder without its slash: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := get(t, base, "/smalruby?mesh=room-1", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/smalruby/?mesh=room-1" {
		t.Errorf("/smalruby: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, p := range []string{"/smalruby/../secret.txt", "/smalruby/%2e%2e/secret.txt", "/smalruby/..%2fsecret.txt", "/smalruby/secret.txt",
		"/smalruby/../README.md", "/smalruby/README.md", "/smalruby/static/..%5c..%5csecret.txt", "/smalruby//secret.txt", "/smalruby/./index.html"} {
		if resp, body := get(t, base, p, ""); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "secret") || strings.Contains(body, "escaped") {
			t.Errorf("%s: status %d body %q", p, resp.StatusCode, body)
		}
	}
}

// TestZipAtTheTop: a zip of the editor's files themselves (index.html at its top) serves them.
func TestZipAtTheTop(t *testing.T) {
	t.Parallel()
	zp := writeZip(t, zipEntry{"index.html", strings.NewReader("top")}, zipEntry{"sub/index.html", strings.NewReader("sub")})
	base := serveEditor(t, Config{Path: zp})
	if _, body := get(t, base, "/smalruby/", ""); body != "top" {
		t.Errorf("got %q", body)
	}
}

// TestOpenRefusesWhatIsNoEditor: a zip or folder without index.html is refused at start.
func TestOpenRefusesWhatIsNoEditor(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		writeZip(t, zipEntry{"repo-main/README.md", strings.NewReader("x")}),
		writeFolder(t, map[string]string{"a/b.txt": "x"}),
	} {
		if _, err := Open(Config{Path: p}); !errors.Is(err, ErrNoEditor) {
			t.Errorf("%s: %v, want ErrNoEditor", p, err)
		}
	}
	notZip := filepath.Join(t.TempDir(), "x.zip")
	os.WriteFile(notZip, []byte("not a zip"), 0o644)
	if _, err := Open(Config{Path: notZip}); err == nil {
		t.Error("a file that is no zip was opened")
	}
}

// TestFolderEscapes: in a folder, the first subfolder holding index.html is the editor; a
// symbolic link out of it and a file beside it are never served.
func TestFolderEscapes(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{
		"secret.txt":                    "secret",
		"smalruby.app-main/index.html":  "editor",
		"smalruby.app-main/lib.min.js":  bundle(""),
		"smalruby.app-main/static/a.js": "1",
	})
	if err := os.Symlink(filepath.Join(dir, "secret.txt"), filepath.Join(dir, "smalruby.app-main", "link.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(dir, "smalruby.app-main", "up")); err != nil {
		t.Fatal(err)
	}
	base := serveEditor(t, Config{Path: dir})
	if _, body := get(t, base, "/smalruby/", ""); body != "editor" {
		t.Fatalf("/smalruby/ = %q", body)
	}
	for _, p := range []string{"/smalruby/../secret.txt", "/smalruby/%2e%2e/secret.txt", "/smalruby/link.txt", "/smalruby/up/secret.txt", "/smalruby/static/../../secret.txt"} {
		if resp, body := get(t, base, p, ""); resp.StatusCode != http.StatusNotFound || strings.Contains(body, "secret") {
			t.Errorf("%s: status %d body %q", p, resp.StatusCode, body)
		}
	}
}

// TestFolderEditedWhileServing: a file of a folder changed after start is rescanned, so the
// rewrite never lands at stale offsets.
func TestFolderEditedWhileServing(t *testing.T) {
	t.Parallel()
	dir := writeFolder(t, map[string]string{"index.html": "x", "lib.min.js": bundle("")})
	base := serveEditor(t, Config{Path: dir})
	get(t, base, "/smalruby/lib.min.js", "box:1")
	if err := os.WriteFile(filepath.Join(dir, "lib.min.js"), []byte(bundle("/* a longer header than before */")), 0o644); err != nil {
		t.Fatal(err)
	}
	_, body := get(t, base, "/smalruby/lib.min.js", "box:1")
	if want := strings.ReplaceAll(bundle("/* a longer header than before */"), cloudURL, "http://box:1/graphql"); body != want {
		t.Errorf("after an edit:\n got %q\nwant %q", body, want)
	}
}

// TestServiceWorkerPrecache: a Workbox service worker's precache entry for a rewritten file
// gets a revision of its own per address (so a worker installed from another address fetches
// it again rather than keeping a copy that points elsewhere); other entries keep theirs.
func TestServiceWorkerPrecache(t *testing.T) {
	t.Parallel()
	sw := `e.precacheAndRoute([{url:"gui.0123abcd.js",revision:null},{url:"index.html",revision:"d1"},{revision:"c9",url:"chunks/plain.js"}],{})`
	dir := writeFolder(t, map[string]string{"index.html": "x", "gui.0123abcd.js": bundle(""), "chunks/plain.js": "1", "service-worker.js": sw})
	base := serveEditor(t, Config{Path: dir})
	resp, a := get(t, base, "/smalruby/service-worker.js", "192.168.1.20:8080")
	_, b := get(t, base, "/smalruby/service-worker.js", "meshbox.local:8080")
	mustContain(t, "service worker", a, `{url:"index.html",revision:"d1"}`, `{revision:"c9",url:"chunks/plain.js"}`)
	mustNotContain(t, "service worker", a, `{url:"gui.0123abcd.js",revision:null}`)
	if a == b {
		t.Error("the service worker is the same for two addresses")
	}
	if resp.Header.Get("Vary") != "Host" || resp.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("Vary %q Content-Type %q", resp.Header.Get("Vary"), resp.Header.Get("Content-Type"))
	}
	// A precache request carries a query; it is the same file.
	if resp, body := get(t, base, "/smalruby/gui.0123abcd.js?__WB_REVISION__=x", "192.168.1.20:8080"); resp.StatusCode != http.StatusOK || !strings.Contains(body, "192.168.1.20") {
		t.Errorf("precache request: %d", resp.StatusCode)
	}
}

// TestScanAcrossChunks: a literal that straddles the scan's chunk boundary is found once.
func TestScanAcrossChunks(t *testing.T) {
	t.Parallel()
	for _, at := range []int{scanChunk - 10, scanChunk - 1, scanChunk, scanChunk + scanOverlap - 5, 2*scanChunk - 40} {
		js := strings.Repeat(" ", at) + `"` + cloudURL + `"` + strings.Repeat(" ", 3*scanChunk)
		s, err := scanFile(strings.NewReader(js), "v")
		if err != nil {
			t.Fatal(err)
		}
		if len(s.lits) != 1 || s.lits[0].off != int64(at+1) || s.lits[0].n != int64(len(cloudURL)) {
			t.Errorf("at %d: %+v", at, s.lits)
		}
	}
}

// repeatReader yields n bytes of a pattern without holding them.
type repeatReader struct {
	pattern []byte
	n, at   int64
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.at >= r.n {
		return 0, io.EOF
	}
	if rem := r.n - r.at; int64(len(p)) > rem {
		p = p[:rem]
	}
	for i := range p {
		p[i] = r.pattern[(r.at+int64(i))%int64(len(r.pattern))]
	}
	r.at += int64(len(p))
	return len(p), nil
}

// TestLargeEntriesStreamed: a 24 MiB file and a 16 MiB bundle in the zip are served (and the
// bundle rewritten) while the process allocates a small fraction of their size: nothing is
// read whole. Not parallel: it measures the process's allocations.
func TestLargeEntriesStreamed(t *testing.T) {
	const big, js = 24 << 20, 16 << 20
	head := bundle("")
	zp := writeZip(t,
		zipEntry{"e/index.html", strings.NewReader("x")},
		zipEntry{"e/static/big.bin", &repeatReader{pattern: []byte("meshbox "), n: big}},
		zipEntry{"e/lib.min.js", io.MultiReader(strings.NewReader(head), &repeatReader{pattern: []byte("var a=1;"), n: js}, strings.NewReader(head))},
	)
	base := serveEditor(t, Config{Path: zp})
	fetch := func(path string) (int64, uint64, []byte) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		tail := &tailWriter{}
		n, err := io.Copy(tail, resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		runtime.ReadMemStats(&after)
		return n, after.TotalAlloc - before.TotalAlloc, tail.last
	}
	n, alloc, _ := fetch("/smalruby/static/big.bin")
	if n != big {
		t.Fatalf("big.bin: %d bytes", n)
	}
	t.Logf("24 MiB entry: %d KiB allocated", alloc>>10)
	if alloc > 4<<20 {
		t.Errorf("serving a 24 MiB entry allocated %d KiB: it was not streamed", alloc>>10)
	}
	n, alloc, last := fetch("/smalruby/lib.min.js")
	host := strings.TrimPrefix(base, "http://")
	want := int64(js + 2*len(strings.ReplaceAll(head, cloudURL, "http://"+host+"/graphql")))
	if n != want {
		t.Errorf("lib.min.js: %d bytes, want %d", n, want)
	}
	if !bytes.Contains(last, []byte(`"http://`+host+`/graphql"`)) {
		t.Errorf("the address at the end of the bundle was not rewritten: %q", last)
	}
	t.Logf("16 MiB bundle: %d KiB allocated", alloc>>10)
	if alloc > 4<<20 {
		t.Errorf("serving a 16 MiB bundle allocated %d KiB: it was not streamed", alloc>>10)
	}
}

// tailWriter keeps the last bytes written.
type tailWriter struct{ last []byte }

func (w *tailWriter) Write(p []byte) (int, error) {
	w.last = append(w.last, p...)
	if len(w.last) > 1024 {
		w.last = append(w.last[:0], w.last[len(w.last)-1024:]...)
	}
	return len(p), nil
}
