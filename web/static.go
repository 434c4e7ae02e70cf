package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
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
	return a, nil
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
