package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/embed"
)

// asset is one embedded file with what its responses need, computed once at start.
type asset struct {
	body        []byte
	etag        string
	contentType string
}

// assets holds every file under embed/assets, keyed by its path below assets/.
type assets struct {
	files map[string]asset
}

func loadAssets() (*assets, error) {
	sub, err := fs.Sub(embed.Assets, "assets")
	if err != nil {
		return nil, fmt.Errorf("open embedded assets: %w", err)
	}
	a := &assets{files: make(map[string]asset)}
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		ct := mime.TypeByExtension(path.Ext(p))
		if path.Ext(p) == ".ts" {
			// The system's mime.types says .ts is an MPEG transport stream (video/mp2t).
			// TypeScript has no registered type; text/typescript is what Deno and editors
			// map to TypeScript, and a browser shows a text/* file instead of downloading it.
			ct = "text/typescript; charset=utf-8"
		}
		if ct == "" {
			ct = http.DetectContentType(body)
		}
		// Embedded files carry no modification time, so a content hash is the validator:
		// it changes exactly when a new binary ships different bytes.
		a.files[p] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: ct}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read embedded assets: %w", err)
	}
	if err := a.addLanguageList(); err != nil {
		return nil, err
	}
	return a, nil
}

// languageListPath is the list of message catalogs the pages offer, made from the catalogs
// present, so adding a language is adding its file to embed/assets/i18n/.
const languageListPath = "i18n/languages.json"

// addLanguageList checks every catalog (i18n/CODE.json) and serves the list of languages,
// each named in its own language by its "lang.name" message.
func (a *assets) addLanguageList() error {
	type language struct {
		Code string `json:"code"`
		Name string `json:"name"`
	}
	var langs []language
	for p, f := range a.files {
		code, ok := strings.CutPrefix(p, "i18n/")
		if !ok || !strings.HasSuffix(code, ".json") || p == languageListPath {
			continue
		}
		code = strings.TrimSuffix(code, ".json")
		var catalog map[string]any
		if err := json.Unmarshal(f.body, &catalog); err != nil {
			return fmt.Errorf("message catalog %s: %w", p, err)
		}
		name, _ := catalog["lang.name"].(string)
		if name == "" {
			return fmt.Errorf("message catalog %s: no \"lang.name\"", p)
		}
		langs = append(langs, language{Code: code, Name: name})
	}
	sort.Slice(langs, func(i, j int) bool { return langs[i].Code < langs[j].Code })
	body, err := json.Marshal(langs)
	if err != nil {
		return fmt.Errorf("language list: %w", err)
	}
	sum := sha256.Sum256(body)
	a.files[languageListPath] = asset{body: body, etag: `"` + hex.EncodeToString(sum[:12]) + `"`, contentType: "application/json"}
	return nil
}

// dashboardCSP allows only this box's own files: the dashboard must work with no internet
// and never needs anything else.
const dashboardCSP = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

func (h *Handler) serveAsset(name string, dashboard bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if dashboard {
			w.Header().Set("Content-Security-Policy", dashboardCSP)
			w.Header().Set("Referrer-Policy", "no-referrer")
		}
		h.writeAsset(w, r, name)
	}
}

func (h *Handler) serveAssetDir(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "*")
	if name == "" || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	h.writeAsset(w, r, name)
}

// writeAsset answers with the file, or 304 when the browser's If-None-Match still matches.
// Cache-Control no-cache makes browsers revalidate each time, which costs one tiny 304 and
// means a new binary's files are picked up at once.
func (h *Handler) writeAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := h.assets.files[name]
	if !ok {
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	// ServeContent handles If-None-Match (304), HEAD and ranges from the ETag header.
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}
