package editor

import (
	"archive/zip"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
)

// The literals as the published bundle holds them: the cloud's address and key, as
// mesh-client.js writes them, folded by the minifier into plain string literals.
const (
	cloudURL = "https://mpe3yhgk6zdxfhjbay2vqcq5qe.appsync-api.ap-northeast-1.amazonaws.com/graphql"
	cloudKey = "da2-kdkm7p5cfzbr5jsikmoqvddowi"
)

// bundle is a minified-looking module with the address and key a few bytes apart.
func bundle(pad string) string {
	return pad + `const o="` + cloudURL + `",a="ap-northeast-1",s="` + cloudKey + `";new AWSAppSyncClient({url:o,region:a,auth:{type:"API_KEY",apiKey:s}});` + pad
}

// writeFolder writes files (name → content) under a new folder and returns it.
func writeFolder(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// zipEntry is one entry of a test archive, in order.
type zipEntry struct {
	name string
	body io.Reader
}

// writeZip writes the entries, deflated, into a new .zip and returns its path.
func writeZip(t *testing.T, entries ...zipEntry) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "smalruby.zip")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, e := range entries {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: e.name, Method: zip.Deflate})
		if err != nil {
			t.Fatal(err)
		}
		if e.body != nil {
			if _, err := io.Copy(w, e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveEditor opens the editor with cfg and serves it on a real HTTP server; it returns the
// server's base URL.
func serveEditor(t *testing.T, cfg Config) string {
	t.Helper()
	e, err := Open(cfg)
	if err != nil {
		t.Fatalf("open %s: %v", cfg.Path, err)
	}
	t.Cleanup(func() { e.Close() })
	r := chi.NewRouter()
	e.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// get fetches base+path with the Host header host (when set) and the extra headers, without
// following redirects, and returns the answer with its body read.
func get(t *testing.T, base, path, host string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func mustContain(t *testing.T, what, body string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(body, w) {
			t.Errorf("%s lacks %q", what, w)
		}
	}
}

func mustNotContain(t *testing.T, what, body string, nots ...string) {
	t.Helper()
	for _, n := range nots {
		if strings.Contains(body, n) {
			t.Errorf("%s still holds %q", what, n)
		}
	}
}
