package editor

import (
	"archive/zip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
)

// ErrNoEditor is returned by Open when the folder or zip holds no index.html.
var ErrNoEditor = errors.New("no index.html in it: give the Smalruby editor's folder or its ZIP as downloaded from GitHub")

// maxSearchDepth bounds how deep Open looks for the editor's index.html in a folder: a
// GitHub ZIP unpacked by hand puts it one or two folders down, never deeper.
const maxSearchDepth = 3

// source is where the editor's files are: a folder or a zip. Names are slash-separated,
// relative to the editor's own folder and valid in the sense of fs.ValidPath; a source
// never opens anything outside that folder.
type source interface {
	// open opens a file; fs.ErrNotExist when there is none, errIsDir for a folder.
	open(name string) (*file, error)
	// jsFiles lists the JavaScript files, for the scan at start.
	jsFiles() ([]string, error)
	// root describes where the editor sits, for the log.
	root() string
	close() error
}

// errIsDir is open's answer for a folder: the handler serves its index.html.
var errIsDir = errors.New("is a folder")

// file is one open file of the editor.
type file struct {
	io.ReadCloser
	size int64
	// version changes whenever the file's content may have: the zip entry's CRC-32 and size,
	// or a file's size and modification time. It names the scan that still applies (see
	// scans) and makes the ETag of a file served as it is.
	version string
}

// openSource opens a folder or a .zip file.
func openSource(p string) (source, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return openFolder(p)
	}
	return openZip(p)
}

// ---- a zip, read in place -------------------------------------------------------------------

// zipSource serves the entries under the editor's folder inside a zip, read straight from the
// archive (an *os.File read at offsets, safe for concurrent readers): no unpacking step.
type zipSource struct {
	f       *os.File
	prefix  string               // the editor's folder inside the zip, "" or ending in "/"
	files   map[string]*zip.File // by name relative to prefix; only entries inside it
	dirs    map[string]bool      // folders under prefix ("" is the editor's own)
	display string
}

func openZip(p string) (*zipSource, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	zr, err := zip.NewReader(f, st.Size())
	// An archive with names such as ../x is still read: those entries are never served
	// (safeName below), whatever GODEBUG=zipinsecurepath says.
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		f.Close()
		return nil, fmt.Errorf("not a zip file: %w", err)
	}
	prefix, ok := editorFolder(zr.File)
	if !ok {
		f.Close()
		return nil, ErrNoEditor
	}
	z := &zipSource{f: f, prefix: prefix, files: map[string]*zip.File{}, dirs: map[string]bool{"": true}, display: p + "!/" + prefix}
	for _, e := range zr.File {
		if !strings.HasPrefix(e.Name, prefix) || strings.HasSuffix(e.Name, "/") || e.Mode().IsDir() {
			continue
		}
		name := e.Name[len(prefix):]
		if !safeName(name) || !e.Mode().IsRegular() { // escapes and symbolic links stay unserved
			continue
		}
		if _, dup := z.files[name]; !dup { // the first of duplicate entries, as unzip does
			z.files[name] = e
		}
		for d := path.Dir(name); d != "."; d = path.Dir(d) {
			z.dirs[d] = true
		}
	}
	return z, nil
}

// editorFolder is the first folder of the archive that holds index.html: the shallowest, and
// among equally deep ones the first in the archive. A GitHub "Download ZIP" holds one folder,
// REPO-BRANCH/, with the editor's files in it; a zip of the files themselves has it at the top.
func editorFolder(entries []*zip.File) (string, bool) {
	best, depth := "", -1
	for _, e := range entries {
		if path.Base(e.Name) != "index.html" || !safeName(e.Name) {
			continue
		}
		dir := strings.TrimSuffix(e.Name, "index.html")
		if d := strings.Count(dir, "/"); depth < 0 || d < depth {
			best, depth = dir, d
		}
	}
	return best, depth >= 0
}

// safeName reports whether a name stays inside the folder it is relative to: no "..", no
// absolute path, no empty or "." element, no backslash (a Windows separator to some readers)
// and no NUL or colon (a drive letter, an NTFS stream).
func safeName(name string) bool {
	return fs.ValidPath(name) && name != "." && !strings.ContainsAny(name, "\\:\x00")
}

func (z *zipSource) open(name string) (*file, error) {
	if z.dirs[name] {
		return nil, errIsDir
	}
	e, ok := z.files[name]
	if !ok {
		return nil, fs.ErrNotExist
	}
	rc, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("open %s in the zip: %w", name, err)
	}
	return &file{ReadCloser: rc, size: int64(e.UncompressedSize64), version: fmt.Sprintf("z%08x-%x", e.CRC32, e.UncompressedSize64)}, nil
}

func (z *zipSource) jsFiles() ([]string, error) {
	var out []string
	for name := range z.files {
		if isJS(name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func (z *zipSource) root() string { return z.display }
func (z *zipSource) close() error { return z.f.Close() }

// ---- a folder -------------------------------------------------------------------------------

// folderSource serves the files under the editor's folder through an os.Root, which refuses
// any name that leaves it, symbolic links included.
type folderSource struct {
	r       *os.Root
	display string
}

func openFolder(p string) (*folderSource, error) {
	top, err := os.OpenRoot(p)
	if err != nil {
		return nil, err
	}
	dir, ok := findIndex(top.FS(), ".")
	if !ok {
		top.Close()
		return nil, ErrNoEditor
	}
	if dir == "." {
		return &folderSource{r: top, display: p}, nil
	}
	r, err := top.OpenRoot(dir)
	top.Close()
	if err != nil {
		return nil, err
	}
	return &folderSource{r: r, display: path.Join(p, dir)}, nil
}

// findIndex is the first folder under dir holding index.html, breadth first: dir itself, then
// its subfolders in name order, down to maxSearchDepth.
func findIndex(fsys fs.FS, dir string) (string, bool) {
	queue := []string{dir}
	for d := 0; d <= maxSearchDepth && len(queue) > 0; d++ {
		var next []string
		for _, q := range queue {
			if st, err := fs.Stat(fsys, path.Join(q, "index.html")); err == nil && st.Mode().IsRegular() {
				return q, true
			}
			entries, err := fs.ReadDir(fsys, q)
			if err != nil {
				continue
			}
			for _, e := range entries {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					next = append(next, path.Join(q, e.Name()))
				}
			}
		}
		queue = next
	}
	return "", false
}

func (s *folderSource) open(name string) (*file, error) {
	f, err := s.r.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, errIsDir
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, fs.ErrNotExist
	}
	return &file{ReadCloser: f, size: st.Size(), version: fmt.Sprintf("f%x-%x", st.ModTime().UnixNano(), st.Size())}, nil
}

func (s *folderSource) jsFiles() ([]string, error) {
	var out []string
	err := fs.WalkDir(s.r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // an unreadable folder is left out, the rest is served
		}
		if d.IsDir() && p != "." && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if d.Type().IsRegular() && isJS(p) {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

func (s *folderSource) root() string { return s.display }
func (s *folderSource) close() error { return s.r.Close() }

// isJS reports whether a file is JavaScript, whose AppSync address is rewritten.
func isJS(name string) bool {
	switch strings.ToLower(path.Ext(name)) {
	case ".js", ".mjs", ".cjs":
		return true
	}
	return false
}
