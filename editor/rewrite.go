package editor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"regexp"
	"sort"
	"strings"
	"unicode/utf16"
)

// What the published editor's JavaScript holds, as the extension's mesh-client.js has it
// (`process.env.MESH_GRAPHQL_ENDPOINT || 'https://….appsync-api.….amazonaws.com/graphql'`,
// the same for MESH_API_KEY with a `da2-…` key) once webpack's DefinePlugin and the minifier
// have folded it: one quoted string literal for the address and one for the key, a few
// dozen bytes apart. Only whole quoted literals are matched, so an address inside a comment,
// a longer string or a source map's JSON-escaped text is left alone.
var (
	endpointLiteral = regexp.MustCompile("[\"'`]https://[a-z0-9]{1,64}\\.appsync-api\\.[a-z0-9-]{1,32}\\.amazonaws\\.com/graphql[\"'`]")
	keyLiteral      = regexp.MustCompile("[\"'`]da2-[a-z0-9]{26}[\"'`]")
	// A Workbox precache manifest entry, as GenerateSW writes it into service-worker.js:
	// {url:"lib.min.js",revision:"91b5…"} (either order, keys quoted or not; revision null for
	// files with a hash in their name). The precache keeps a file until its revision changes.
	manifestEntry = regexp.MustCompile(`\{\s*"?url"?\s*:\s*"([^"\\]{1,512})"\s*,\s*"?revision"?\s*:\s*(null|"[^"\\]{0,128}")\s*\}|\{\s*"?revision"?\s*:\s*(null|"[^"\\]{0,128}")\s*,\s*"?url"?\s*:\s*"([^"\\]{1,512})"\s*\}`)
)

const (
	// scanChunk is how much of a file the scan holds at once (plus scanOverlap): files of
	// tens of megabytes are read as a stream, never whole.
	scanChunk = 64 << 10
	// scanOverlap is kept from one chunk to the next, longer than any match, so a literal
	// across a chunk boundary is found whole.
	scanOverlap = 2048
	// keyWindow is how near an address literal a `da2-` key must be to count as the build's
	// Mesh key ("beside the URL"): another AppSync key elsewhere in the bundle is not ours.
	keyWindow = 4096
)

// litKind says what a literal is.
type litKind int

const (
	litEndpoint litKind = iota // an AppSync GraphQL address, inside its quotes
	litKey                     // a da2- API key, inside its quotes
	litRevision                // a precache revision (null or "…", quotes included)
)

// literal is one place a served file differs from the stored one.
type literal struct {
	off, n int64 // where it is in the stored file
	kind   litKind
	quote  byte   // the string's quote, for escaping (litEndpoint, litKey)
	url    string // the precached file's URL as written (litRevision)
	old    string // the revision as written (litRevision)
}

// scan is what the start-up scan (or a rescan of a changed file) learned of one JavaScript
// file.
type scan struct {
	version string   // the file's version this describes (file.version)
	sum     [32]byte // SHA-256 of the stored file
	lits    []literal
}

// endpoints reports whether the file holds an address to rewrite.
func (s *scan) endpoints() int {
	n := 0
	for _, l := range s.lits {
		if l.kind == litEndpoint {
			n++
		}
	}
	return n
}

// scanFile reads r to its end once, in chunks, and finds the literals to rewrite.
func scanFile(r io.Reader, version string) (*scan, error) {
	h := sha256.New()
	buf := make([]byte, scanChunk+scanOverlap)
	var (
		base    int64 // offset of buf[0] in the file
		filled  int
		lits    []literal
		lastEnd int64 // end of the last literal taken, so a boundary never yields one twice
	)
	take := func(l literal, end int64) {
		if l.off < lastEnd {
			return
		}
		lits = append(lits, l)
		lastEnd = end
	}
	for {
		n, err := io.ReadFull(r, buf[filled:])
		h.Write(buf[filled : filled+n])
		filled += n
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return nil, err
		}
		cut := filled // matches starting at or after cut are found again in the next round
		if !eof {
			cut = filled - scanOverlap
		}
		var found []literal
		var ends []int64
		chunk := buf[:filled]
		for _, m := range endpointLiteral.FindAllIndex(chunk, -1) {
			if m[0] < cut && chunk[m[0]] == chunk[m[1]-1] {
				found = append(found, literal{off: base + int64(m[0]) + 1, n: int64(m[1]-m[0]) - 2, kind: litEndpoint, quote: chunk[m[0]]})
				ends = append(ends, base+int64(m[1]))
			}
		}
		for _, m := range keyLiteral.FindAllIndex(chunk, -1) {
			if m[0] < cut && chunk[m[0]] == chunk[m[1]-1] {
				found = append(found, literal{off: base + int64(m[0]) + 1, n: int64(m[1]-m[0]) - 2, kind: litKey, quote: chunk[m[0]]})
				ends = append(ends, base+int64(m[1]))
			}
		}
		for _, m := range manifestEntry.FindAllSubmatchIndex(chunk, -1) {
			if m[0] >= cut {
				continue
			}
			u, rv := m[2:4], m[4:6] // {url, revision}
			if m[2] < 0 {
				u, rv = m[8:10], m[6:8] // {revision, url}
			}
			found = append(found, literal{off: base + int64(rv[0]), n: int64(rv[1] - rv[0]), kind: litRevision,
				url: string(chunk[u[0]:u[1]]), old: string(chunk[rv[0]:rv[1]])})
			ends = append(ends, base+int64(rv[1]))
		}
		idx := make([]int, len(found))
		for i := range idx {
			idx[i] = i
		}
		sort.Slice(idx, func(a, b int) bool { return found[idx[a]].off < found[idx[b]].off })
		for _, i := range idx {
			take(found[i], ends[i])
		}
		if eof {
			break
		}
		copy(buf, buf[cut:filled])
		base += int64(cut)
		filled -= cut
	}
	s := &scan{version: version, lits: keysBesideEndpoints(lits)}
	h.Sum(s.sum[:0])
	return s, nil
}

// keysBesideEndpoints drops the keys that are not within keyWindow bytes of an address.
func keysBesideEndpoints(lits []literal) []literal {
	var eps []int64
	for _, l := range lits {
		if l.kind == litEndpoint {
			eps = append(eps, l.off)
		}
	}
	out := lits[:0]
	for _, l := range lits {
		if l.kind == litKey {
			near := false
			for _, e := range eps {
				if d := e - l.off; d <= keyWindow && d >= -keyWindow {
					near = true
					break
				}
			}
			if !near {
				continue
			}
		}
		out = append(out, l)
	}
	return out
}

// edit replaces n bytes at off with text.
type edit struct {
	off, n int64
	text   []byte
}

// target is what a served file's edits are worked out for: the Mesh address this student's
// browser should use and the key to put beside it ("" keeps the build's).
type target struct {
	endpoint string
	key      string
}

// editsFor turns a scan's literals into the edits for one target. revision gives the new
// precache revision of a file a service worker names (ok false: leave it as it is).
func editsFor(s *scan, t target, revision func(url, old string) (string, bool)) []edit {
	var out []edit
	for _, l := range s.lits {
		switch l.kind {
		case litEndpoint:
			out = append(out, edit{l.off, l.n, jsString(t.endpoint, l.quote)})
		case litKey:
			if t.key != "" {
				out = append(out, edit{l.off, l.n, jsString(t.key, l.quote)})
			}
		case litRevision:
			if revision == nil {
				continue
			}
			if rev, ok := revision(l.url, l.old); ok {
				out = append(out, edit{l.off, l.n, []byte(`"` + rev + `"`)})
			}
		}
	}
	return out
}

// rewrittenSize is the size of the file once edited.
func rewrittenSize(size int64, edits []edit) int64 {
	for _, e := range edits {
		size += int64(len(e.text)) - e.n
	}
	return size
}

// etagOf is the ETag of a file as served: of the stored content when nothing is edited,
// else of the stored content and the edits, so each base address has its own, and a browser
// that reached the box by another address never keeps a copy pointing elsewhere.
func etagOf(s *scan, version string, edits []edit) string {
	if len(edits) == 0 {
		return `"` + version + `"`
	}
	h := sha256.New()
	h.Write(s.sum[:])
	for _, e := range edits {
		fmt.Fprintf(h, "%d/%d/%d:", e.off, e.n, len(e.text))
		h.Write(e.text)
	}
	return `"r` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
}

// copyEdited copies r to w with the edits applied (sorted by offset, not overlapping),
// holding nothing but io.Copy's buffer: a large bundle is streamed.
func copyEdited(w io.Writer, r io.Reader, edits []edit) error {
	var pos int64
	for _, e := range edits {
		if _, err := io.CopyN(w, r, e.off-pos); err != nil {
			return err
		}
		if _, err := w.Write(e.text); err != nil {
			return err
		}
		if _, err := io.CopyN(io.Discard, r, e.n); err != nil {
			return err
		}
		pos = e.off + e.n
	}
	_, err := io.Copy(w, r)
	return err
}

// precachedName resolves a precache manifest URL written in the service worker at sw to the
// editor file it names; ok false for another site's or a query's URL, or one leaving the
// editor.
func precachedName(sw, url string) (string, bool) {
	if strings.Contains(url, ":") || strings.HasPrefix(url, "/") || strings.ContainsAny(url, "?#") {
		return "", false
	}
	name := path.Join(path.Dir(sw), url)
	return name, safeName(name)
}

// jsString writes s as the text of a JavaScript string literal quoted with quote: letters,
// digits and the URL punctuation as they are, everything else (the quotes, backslash, $, any
// control or non-ASCII character) as \u escapes, so no setting can end the string early.
func jsString(s string, quote byte) []byte {
	var b []byte
	for _, r := range s {
		if r < 0x80 && urlSafe(byte(r)) && byte(r) != quote {
			b = append(b, byte(r))
			continue
		}
		if r >= 0x10000 {
			r1, r2 := utf16.EncodeRune(r)
			b = fmt.Appendf(b, `\u%04x\u%04x`, r1, r2)
			continue
		}
		b = fmt.Appendf(b, `\u%04x`, r)
	}
	return b
}

func urlSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~:/?#[]@!&()*+,;=%", c) >= 0
}
