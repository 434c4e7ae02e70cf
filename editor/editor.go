// Package editor serves the school's copy of the Smalruby editor at /smalruby/, pointed at
// this box: a folder, or the ZIP GitHub's "Download ZIP" gives of the published build (the
// smalruby/smalruby.app repository), read in place. The build has the cloud's Mesh address
// compiled into its JavaScript; every JavaScript file is served with that address replaced by
// this box's /graphql as the student's browser reached it (and, with an API key set, the
// build's key by the box's), so the unmodified editor talks to meshbox. Nothing outside the
// editor's own folder is ever served.
package editor

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/go-chi/chi/v5"

	"meshbox/apierror"
	"meshbox/auth"
)

// Path is where the editor is served; the dashboard's join box and mDNS name it.
const Path = "/smalruby/"

// Config holds what the editor's handler needs.
type Config struct {
	// Path is the editor: a folder, or a .zip (the editor is the first folder in it holding
	// index.html).
	Path string
	// PublicURL, when set, is the box's address as students reach it (--public-url): the
	// Mesh address written into the editor is PublicURL/graphql whatever the request says.
	PublicURL string
	// APIKey is the box's --api-key; when set, the build's key beside the address is replaced
	// by it. Empty leaves the build's key, which meshbox then accepts like any other.
	APIKey string
	// Clients works out the address the browser used (Host, or behind a trusted proxy the
	// forwarded scheme and host).
	Clients auth.Clients
	// Logger receives the start-up summary and read errors; nil discards.
	Logger *slog.Logger
}

// Editor serves one copy of the editor.
type Editor struct {
	cfg  Config
	src  source
	log  *slog.Logger
	errs apierror.Writer

	mu    sync.Mutex
	scans map[string]*scan // JavaScript files by name, for the version they describe
}

// Open opens the editor at cfg.Path and scans its JavaScript for the Mesh address once.
func Open(cfg Config) (*Editor, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := openSource(cfg.Path)
	if err != nil {
		return nil, err
	}
	e := &Editor{cfg: cfg, src: src, log: log, errs: apierror.Writer{Log: log}, scans: map[string]*scan{}}
	names, err := src.jsFiles()
	if err != nil {
		src.close()
		return nil, fmt.Errorf("list the editor's files: %w", err)
	}
	var endpoints, rewritten int
	for _, name := range names {
		s, err := e.scanOf(name)
		if err != nil {
			src.close()
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		if n := s.endpoints(); n > 0 {
			endpoints += n
			rewritten++
		}
	}
	if endpoints == 0 {
		// Served anyway: the teacher sees the editor and this line explains why Mesh blocks
		// talk to the cloud (or to nothing, offline).
		log.Warn("the Smalruby editor's JavaScript holds no AppSync Mesh address to point at this box: its Mesh blocks will not use meshbox", "editor", src.root())
	} else {
		log.Info("serving the Smalruby editor", "path", Path, "editor", src.root(), "files_rewritten", rewritten, "addresses", endpoints)
	}
	return e, nil
}

// Close closes the folder or zip.
func (e *Editor) Close() error { return e.src.close() }

// Routes registers the editor's routes on r.
func (e *Editor) Routes(r chi.Router) {
	// The editor's files are referenced relative to its page, so the page must be opened
	// at /smalruby/, with the slash.
	slash := func(w http.ResponseWriter, r *http.Request) {
		to := Path
		if r.URL.RawQuery != "" {
			to += "?" + r.URL.RawQuery // ?mesh=DOMAIN survives
		}
		http.Redirect(w, r, to, http.StatusMovedPermanently)
	}
	r.Get(strings.TrimSuffix(Path, "/"), slash)
	r.Head(strings.TrimSuffix(Path, "/"), slash)
	r.Get(Path+"*", e.serve)
	r.Head(Path+"*", e.serve)
}

// notFound answers a name that is not a file of the editor.
func (e *Editor) notFound(w http.ResponseWriter, r *http.Request) {
	e.errs.Write(w, r, apierror.New(http.StatusNotFound, "not_found", "no such file in the Smalruby editor"))
}

// serve answers one file of the editor: a folder's index.html for a folder, JavaScript with
// the Mesh address rewritten, anything else as stored. ETags make reloads 304s.
func (e *Editor) serve(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, Path)
	dir := name == "" || strings.HasSuffix(name, "/")
	if dir {
		name += "index.html"
	}
	if !safeName(name) {
		e.notFound(w, r)
		return
	}
	f, err := e.src.open(name)
	if errors.Is(err, errIsDir) && !dir {
		to := path.Base(name) + "/"
		if r.URL.RawQuery != "" {
			to += "?" + r.URL.RawQuery
		}
		http.Redirect(w, r, to, http.StatusMovedPermanently)
		return
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, errIsDir) {
			e.log.Warn("cannot read a file of the Smalruby editor", "name", name, "err", err)
		}
		e.notFound(w, r)
		return
	}
	defer f.Close()

	hd := w.Header()
	var edits []edit
	var sc *scan
	if isJS(name) {
		if sc, err = e.scanFor(name, f); err != nil {
			e.log.Warn("cannot read a file of the Smalruby editor", "name", name, "err", err)
			e.errs.Write(w, r, fmt.Errorf("read %s: %w", name, err))
			return
		}
		if len(sc.lits) > 0 {
			t, ok := e.target(r)
			if !ok {
				e.errs.Write(w, r, apierror.New(http.StatusBadRequest, "bad_host", "the Host header names no host this box can point the editor at"))
				return
			}
			edits = editsFor(sc, t, func(url, old string) (string, bool) { return e.revision(name, url, old, t) })
		}
		if e.cfg.PublicURL == "" && len(edits) > 0 {
			// The answer depends on the address the browser used: caches keep one per address.
			hd.Set("Vary", e.cfg.Clients.OriginVaries())
		}
	}
	etag := etagOf(sc, f.version, edits)
	hd.Set("ETag", etag)
	hd.Set("Content-Type", contentType(name))
	// Revalidate every time: a 304 is tiny, and a changed address or editor is picked up.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	if matchesETag(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.FormatInt(rewrittenSize(f.size, edits), 10))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if err := copyEdited(w, f, edits); err != nil && r.Context().Err() == nil {
		// Headers are gone: the browser sees a short body and retries; the log says why.
		e.log.Debug("editor file cut short", "name", name, "err", err)
	}
}

// target is the Mesh address (and key) for this request: PublicURL/graphql when set, else
// the scheme and host the browser used. ok is false for a Host that names no plausible host.
func (e *Editor) target(r *http.Request) (target, bool) {
	base := strings.TrimRight(e.cfg.PublicURL, "/")
	if base == "" {
		origin, ok := e.cfg.Clients.Origin(r)
		if !ok {
			return target{}, false
		}
		base = origin
	}
	return target{endpoint: base + "/graphql", key: e.cfg.APIKey}, true
}

// revision is the precache revision a service worker at sw gets for url: for a file served
// rewritten, one derived from the rewritten file's ETag, so a service worker installed from
// another address (or before a key change) fetches it again rather than keeping a copy that
// points elsewhere. Other files keep theirs.
func (e *Editor) revision(sw, url, old string, t target) (string, bool) {
	name, ok := precachedName(sw, url)
	if !ok || !isJS(name) || name == sw {
		return "", false
	}
	f, err := e.src.open(name)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc, err := e.scanFor(name, f)
	if err != nil || sc.endpoints() == 0 {
		return "", false
	}
	tag := etagOf(sc, f.version, editsFor(sc, t, nil))
	return strings.Trim(tag, `"`) + "-" + strings.Trim(old, `"`), true
}

// scanOf opens a file and returns its scan (see scanFor).
func (e *Editor) scanOf(name string) (*scan, error) {
	f, err := e.src.open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return e.scanFor(name, f)
}

// scanFor returns the scan of the open file f, scanning a file not seen before, or changed
// since (a folder edited while meshbox runs), from another opening of it: f itself is left
// unread for serving.
func (e *Editor) scanFor(name string, f *file) (*scan, error) {
	e.mu.Lock()
	s := e.scans[name]
	e.mu.Unlock()
	if s != nil && s.version == f.version {
		return s, nil
	}
	g, err := e.src.open(name)
	if err != nil {
		return nil, err
	}
	defer g.Close()
	if g.version != f.version {
		return nil, fmt.Errorf("%s changed while it was read", name)
	}
	s, err = scanFile(g, g.version)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.scans[name] = s
	e.mu.Unlock()
	return s, nil
}

// matchesETag reports whether an If-None-Match header names etag (weak comparison, as
// RFC 9110 asks for If-None-Match).
func matchesETag(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// contentType is the type of an editor file by its extension, the same on every computer
// (a service worker and WebAssembly are refused under a wrong type), then this computer's
// MIME table.
func contentType(name string) string {
	ext := strings.ToLower(path.Ext(name))
	switch ext {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js", ".mjs", ".cjs":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".json", ".map":
		return "application/json"
	case ".webmanifest":
		return "application/manifest+json"
	case ".wasm":
		return "application/wasm"
	case ".svg":
		return "image/svg+xml"
	case ".png":
		return "image/png"
	case ".jpg", ".jpeg":
		return "image/jpeg"
	case ".gif":
		return "image/gif"
	case ".ico":
		return "image/x-icon"
	case ".wav":
		return "audio/wav"
	case ".mp3":
		return "audio/mpeg"
	case ".woff2":
		return "font/woff2"
	case ".txt":
		return "text/plain; charset=utf-8"
	case ".hex", ".sb3":
		return "application/octet-stream"
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}
