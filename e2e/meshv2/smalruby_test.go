package meshv2e2e

import (
	"archive/zip"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"meshbox/e2e/chrome"

	"meshbox/app"
	"meshbox/config"
)

// The made-up cloud literals smalruby/page.js carries, as the published bundle carries the
// cloud's.
const (
	fixtureEndpoint = "https://meshboxfixture00000000000000.appsync-api.ap-northeast-1.amazonaws.com/graphql"
	fixtureKey      = "da2-meshboxfixturekey000000000"
)

// buildEditor generates the fixture shaped like the published Smalruby editor (index.html,
// lib.min.js bundled and minified by esbuild from the replica and the npm aws-appsync client,
// static/) into a new folder, and checks that the bundle holds the address and key as one
// string literal each, as the published one does.
func buildEditor(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(filepath.Join("node_modules", "esbuild", "package.json")); err != nil {
		if os.Getenv("MESHBOX_E2E") == "" {
			t.Skip("npm dependencies missing: run `npm ci` in e2e/meshv2 (or set MESHBOX_E2E=1 to make this an error)")
		}
		t.Fatalf("MESHBOX_E2E is set but the npm dependencies are missing: run `npm ci` in e2e/meshv2: %v", err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "node", "smalruby/build.js", dir).CombinedOutput(); err != nil {
		t.Fatalf("build the editor fixture: %v\n%s", err, out)
	}
	lib, err := os.ReadFile(filepath.Join(dir, "lib.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	for _, lit := range []string{`"` + fixtureEndpoint + `"`, `"` + fixtureKey + `"`} {
		if n := strings.Count(string(lib), lit); n != 1 {
			t.Fatalf("lib.min.js holds %s %d times, want once as a literal", lit, n)
		}
	}
	return dir
}

// zipAsGitHub packs dir as GitHub's "Download ZIP" does: every file under one folder,
// REPO-BRANCH/, with the folder entries too.
func zipAsGitHub(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "smalruby.app-main.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		name := "smalruby.app-main/"
		if rel != "." {
			name += filepath.ToSlash(rel)
		}
		if d.IsDir() {
			if rel != "." {
				name += "/"
			}
			_, err := zw.Create(name)
			return err
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate})
		if err != nil {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(w, src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// page is one tab of a headless Chromium, recording what it logs as an error.
type page struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	problems []string
}

// openPages starts one Chromium with a tab per name.
func openPages(t *testing.T, names ...string) []*page {
	t.Helper()
	bctx := chrome.Start(t)
	var pages []*page
	for i, name := range names {
		ctx := bctx
		if i > 0 {
			ctx, _ = chromedp.NewContext(bctx) // a second tab; ends with the browser
			if err := chromedp.Do(ctx); err != nil {
				t.Fatalf("open tab %s: %v", name, err)
			}
		}
		p := &page{t: t, name: name, ctx: ctx}
		msgs := chromedp.Console(ctx)
		go func() {
			for m, err := range msgs {
				if err != nil {
					return
				}
				if m.Type == chromedp.ConsoleError || m.IsException() {
					p.mu.Lock()
					p.problems = append(p.problems, m.Text+" ("+m.URL+")")
					p.mu.Unlock()
				}
			}
		}()
		pages = append(pages, p)
	}
	return pages
}

func (p *page) open(url string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitReady("#status")); err != nil {
		p.t.Fatalf("%s: open %s: %v", p.name, url, err)
	}
}

// eval runs expr (awaiting a promise) and returns its value as JSON text.
func (p *page) eval(expr string) string {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[json.RawMessage](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %s: %v\nproblems: %v", p.name, expr, err, p.problemList())
	}
	return string(v)
}

// waitFor polls a predicate until it holds (the polling interval of the transport decides
// how soon).
func (p *page) waitFor(what, predicate string) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		p.t.Fatalf("%s: waiting for %s (%s): %v\nstatus: %s\nproblems: %v", p.name, what, predicate, err, p.eval(`document.getElementById("status").textContent`), p.problemList())
	}
}

func (p *page) problemList() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.problems...)
}

// TestSmalrubyEditorServedByTheBox is a Smalruby lesson with no cloud and no build: the box
// serves the school's editor (a folder), a second box serves the same editor from GitHub's
// ZIP with --public-url naming the first (an editor hosted elsewhere). Two pages open
// /smalruby/, one on each; both talk to the first box's /graphql with the box's API key
// written in place of the build's (the build's own key would be refused: 401). One page
// hosts a group, the other joins it by ?mesh=DOMAIN, and broadcasts and variables cross
// both ways, over WebSocket, and over polling when the box refuses WebSocket.
func TestSmalrubyEditorServedByTheBox(t *testing.T) {
	t.Parallel()
	dir := buildEditor(t)
	zipped := zipAsGitHub(t, dir)
	for _, mode := range []struct {
		name        string
		noWebSocket bool
	}{{"websocket", false}, {"polling", true}} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			mesh := app.StartTest(t, func(c *config.Config) {
				c.APIKey = apiKey
				c.Smalruby = dir
				c.NoWebSocket = mode.noWebSocket
				c.PollingInterval = time.Second
			}).URL()
			elsewhere := app.StartTest(t, func(c *config.Config) {
				c.APIKey = apiKey
				c.Smalruby = zipped
				c.PublicURL = mesh
			}).URL()
			domain := "class-4b-" + mode.name
			pages := openPages(t, "host (folder)", "member (zip)")
			host, member := pages[0], pages[1]
			host.open(mesh + "/smalruby/?mesh=" + domain + "&id=hostpc" + mode.name)
			member.open(elsewhere + "/smalruby?mesh=" + domain + "&id=memberpc" + mode.name) // the redirect keeps ?mesh=
			for _, p := range pages {
				if got := p.eval(`mesh.endpoint`); got != `"`+mesh+`/graphql"` {
					t.Fatalf("%s: the editor talks to %s, want %s/graphql", p.name, got, mesh)
				}
			}
			if got := member.eval(`location.pathname + location.search`); got != `"/smalruby/?mesh=`+domain+`&id=memberpc`+mode.name+`"` {
				t.Errorf("member landed on %s", got)
			}

			host.eval(`mesh.createGroup()`)
			member.eval(`mesh.joinGroup()`)
			wantWS := !mode.noWebSocket
			for _, p := range pages {
				if got := p.eval(`mesh.node.useWebSocket`); got != map[bool]string{true: "true", false: "false"}[wantWS] {
					t.Errorf("%s: useWebSocket %s, want %v", p.name, got, wantWS)
				}
			}
			// Broadcasts and variables both ways. A subscriber only gets what is sent after
			// its subscription starts, so each side sends again until the other has it.
			host.eval(`(() => { clearInterval(window.again); window.again = setInterval(() => { mesh.broadcast("from-host"); mesh.setVariable("score", "7"); }, 500); return 0; })()`)
			member.eval(`(() => { clearInterval(window.again); window.again = setInterval(() => { mesh.broadcast("from-member"); mesh.setVariable("answer", "42"); }, 500); return 0; })()`)
			member.waitFor("the host's broadcast", `mesh.received().includes("hostpc`+mode.name+`:from-host")`)
			member.waitFor("the host's variable", `mesh.variable("score") === "7"`)
			host.waitFor("the member's broadcast", `mesh.received().includes("memberpc`+mode.name+`:from-member")`)
			host.waitFor("the member's variable", `mesh.variable("answer") === "42"`)
			for _, p := range pages {
				p.eval(`(() => { clearInterval(window.again); mesh.node.stop(); return 0; })()`)
				for _, pr := range p.problemList() {
					// The host's WebSocket probe against a box that refuses WebSocket is logged
					// by the browser: it is how the editor learns to poll.
					if !(mode.noWebSocket && strings.Contains(pr, "WebSocket connection")) {
						t.Errorf("%s logged: %s", p.name, pr)
					}
				}
			}
		})
	}
}
