package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"unicode"
)

// TestMarkdownLinksResolve keeps the documentation's relative links true: every link in every
// Markdown file of the repository must name a file or folder that exists, and every #anchor a
// heading of the file it points into, slugged as GitHub slugs it. The README and docs/ are split
// by reader and link to each other's sections; a heading renamed in one file would otherwise
// leave a dead link in another that nobody notices until a teacher clicks it. External links
// (http, https, mailto, …) are not fetched: the tests run offline.
func TestMarkdownLinksResolve(t *testing.T) {
	files := markdownFiles(t)
	if len(files) == 0 {
		t.Fatal("no Markdown files found")
	}
	docs := map[string]*mdDoc{}
	for _, f := range files {
		d, err := readMarkdown(f)
		if err != nil {
			t.Fatal(err)
		}
		docs[f] = d
	}
	dead := checkMarkdownLinks(docs, func(p string) bool {
		_, err := os.Stat(filepath.FromSlash(p))
		return err == nil
	})
	for _, d := range dead {
		t.Error(d)
	}
	if len(dead) == 0 {
		t.Logf("%d Markdown files, every relative link and anchor resolves", len(files))
	}
}

// TestMarkdownLinkCheckerFindsDeadLinks proves the checker above can fail: a missing file, a
// missing anchor in the same file and in another file, and a duplicate heading's second slug
// (which exists) next to a third (which does not).
func TestMarkdownLinkCheckerFindsDeadLinks(t *testing.T) {
	a := parseMarkdown("docs/a.md", []byte("# Title\n\n## Set-up (fresh machine)\n\n## Set-up (fresh machine)\n\n"+
		"## 先生のための手順（かんたん）\n\n"+
		"[ok](#set-up-fresh-machine-1) [ok](../README.md#meshbox) [ok](#先生のための手順かんたん)\n"+
		"`[not a link](#nowhere)`\n\n```\n[not a link either](gone.md)\n```\n"+
		"[dead](#set-up-fresh-machine-2)\n[dead](gone.md)\n[dead](../README.md#nowhere) [ok](https://example.org/#x)\n"))
	readme := parseMarkdown("README.md", []byte("# meshbox\n\n[ok](docs/a.md#title)\n"))
	dead := checkMarkdownLinks(map[string]*mdDoc{"docs/a.md": a, "README.md": readme}, func(p string) bool {
		return p == "docs/a.md" || p == "README.md"
	})
	want := []string{
		"docs/a.md:15: #set-up-fresh-machine-2",
		"docs/a.md:16: gone.md",
		"docs/a.md:17: ../README.md#nowhere",
	}
	if len(dead) != len(want) {
		t.Fatalf("dead links = %q, want %d starting %q", dead, len(want), want)
	}
	for i, w := range want {
		if !strings.HasPrefix(dead[i], w) {
			t.Errorf("dead[%d] = %q, want it to start %q", i, dead[i], w)
		}
	}
}

// TestGitHubSlugs pins the heading slugs to GitHub's: lower case, spaces to '-', punctuation
// gone except '-' and '_', letters of every script kept.
func TestGitHubSlugs(t *testing.T) {
	for heading, want := range map[string]string{
		"Native API (`/api/v1`, JSON)":                    "native-api-apiv1-json",
		"Link quality (which pupil's link is bad)":        "link-quality-which-pupils-link-is-bad",
		"Measuring what a box can carry: `meshbox bench`": "measuring-what-a-box-can-carry-meshbox-bench",
		"The browser client: [`/meshbox.js`](x.md)":       "the-browser-client-meshboxjs",
		"snake_case and A-B":                              "snake_case-and-a-b",
		"先生のための手順（かんたん）":                                  "先生のための手順かんたん",
		"1. 起動する — Raspberry Pi":                          "1-起動する--raspberry-pi",
		"Done ✅ **now**":                                  "done--now",
	} {
		if got := githubSlug(heading); got != want {
			t.Errorf("githubSlug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// mdDoc is one Markdown file: its links with their lines, and its headings' anchors.
type mdDoc struct {
	path    string
	links   []mdLink
	anchors map[string]bool
}

type mdLink struct {
	line   int
	target string
}

// markdownFiles lists the repository's Markdown files as git sees them (tracked, or new and not
// ignored), leaving out node_modules; outside a git checkout it walks the tree.
func markdownFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	out, err := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "*.md").Output()
	if err == nil {
		for _, f := range strings.Split(string(out), "\x00") {
			if f != "" && !strings.Contains("/"+f, "/node_modules/") {
				if _, err := os.Stat(f); err == nil { // deleted but not yet committed
					files = append(files, f)
				}
			}
		}
		return files
	}
	t.Logf("git ls-files: %v; walking the tree instead", err)
	err = filepath.WalkDir(".", func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, filepath.ToSlash(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func readMarkdown(file string) (*mdDoc, error) {
	b, err := os.ReadFile(filepath.FromSlash(file))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	return parseMarkdown(file, b), nil
}

var (
	// inlineLink is [text](target) or ![alt](target), with an optional "title"; the target may
	// be in <angle brackets>.
	inlineLink = regexp.MustCompile(`!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]*)(?:\s+"[^"]*")?\s*\)`)
	// refDef is a reference definition: [name]: target
	refDef    = regexp.MustCompile(`^ {0,3}\[[^\]]+\]:\s*(\S+)`)
	htmlLink  = regexp.MustCompile(`(?i)<(?:a|img)\s[^>]*?(?:href|src)="([^"]*)"`)
	htmlID    = regexp.MustCompile(`(?i)<a\s[^>]*?(?:id|name)="([^"]*)"`)
	codeSpan  = regexp.MustCompile("(`+)[^`]*?(`+)")
	atx       = regexp.MustCompile(`^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$`)
	setext    = regexp.MustCompile(`^ {0,3}(=+|-+)\s*$`)
	fenceOpen = regexp.MustCompile("^ {0,3}(```+|~~~+)")
)

// parseMarkdown finds the links and the heading anchors of a file, outside code: fenced
// blocks and code spans are skipped.
func parseMarkdown(file string, b []byte) *mdDoc {
	d := &mdDoc{path: file, anchors: map[string]bool{}}
	seen := map[string]int{}
	addHeading := func(text string) {
		slug := githubSlug(text)
		a := slug
		for n := seen[slug]; ; n++ {
			if n > 0 {
				a = fmt.Sprintf("%s-%d", slug, n)
			}
			if !d.anchors[a] {
				break
			}
		}
		seen[slug]++
		d.anchors[a] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	fence, prev := "", ""
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if fence != "" {
			if strings.HasPrefix(strings.TrimSpace(line), fence) {
				fence = ""
			}
			prev = ""
			continue
		}
		if m := fenceOpen.FindStringSubmatch(line); m != nil {
			fence = m[1]
			prev = ""
			continue
		}
		if m := atx.FindStringSubmatch(line); m != nil {
			addHeading(m[2])
		} else if setext.MatchString(line) && strings.TrimSpace(prev) != "" && !strings.HasPrefix(strings.TrimSpace(prev), "|") {
			addHeading(strings.TrimSpace(prev))
		}
		for _, m := range htmlID.FindAllStringSubmatch(line, -1) {
			d.anchors[m[1]] = true
		}
		text := codeSpan.ReplaceAllString(line, "")
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			d.links = append(d.links, mdLink{n, strings.Trim(m[1], "<>")})
		}
		for _, m := range htmlLink.FindAllStringSubmatch(text, -1) {
			d.links = append(d.links, mdLink{n, m[1]})
		}
		if m := refDef.FindStringSubmatch(text); m != nil {
			d.links = append(d.links, mdLink{n, strings.Trim(m[1], "<>")})
		}
		prev = line
	}
	return d
}

// headingLink is a link inside a heading: only its text counts towards the slug.
var headingLink = regexp.MustCompile(`!?\[([^\]]*)\]\([^)]*\)`)

// githubSlug is the anchor GitHub gives a heading: its text lower-cased, every character that is
// not a letter, a digit, a mark, '-', '_' or a space dropped, and spaces turned into '-'.
func githubSlug(heading string) string {
	text := headingLink.ReplaceAllString(heading, "$1")
	text = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(text, "")
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(text)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}

// checkMarkdownLinks returns every dead relative link as "file:line: target: why", in file
// order. exists says whether a repository path (slash-separated, cleaned) exists.
func checkMarkdownLinks(docs map[string]*mdDoc, exists func(string) bool) []string {
	var names []string
	for f := range docs {
		names = append(names, f)
	}
	sort.Strings(names)
	var dead []string
	for _, f := range names {
		d := docs[f]
		for _, l := range d.links {
			if why := deadReason(d, l.target, docs, exists); why != "" {
				dead = append(dead, fmt.Sprintf("%s:%d: %s: %s", f, l.line, l.target, why))
			}
		}
	}
	return dead
}

var scheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)

func deadReason(from *mdDoc, target string, docs map[string]*mdDoc, exists func(string) bool) string {
	if target == "" {
		return "empty link"
	}
	if scheme.MatchString(target) || strings.HasPrefix(target, "//") {
		return "" // external: not fetched
	}
	file, frag, _ := strings.Cut(target, "#")
	if q := strings.Index(file, "?"); q >= 0 {
		file = file[:q]
	}
	if p, err := url.PathUnescape(file); err == nil {
		file = p
	}
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	to := from
	if file != "" {
		var p string
		if strings.HasPrefix(file, "/") { // GitHub resolves these from the repository's root
			p = path.Clean(strings.TrimPrefix(file, "/"))
		} else {
			p = path.Join(path.Dir(from.path), file)
		}
		if p == ".." || strings.HasPrefix(p, "../") {
			return "points outside the repository"
		}
		if !exists(p) {
			return "no such file"
		}
		if frag == "" {
			return ""
		}
		if !strings.HasSuffix(p, ".md") {
			return "" // an anchor into a non-Markdown file (a line number, say) is not checked
		}
		to = docs[p]
		if to == nil {
			return "the target is not a Markdown file of the repository"
		}
	}
	if frag == "" || to.anchors[frag] || strings.HasPrefix(frag, "L") && isLineAnchor(frag) {
		return ""
	}
	return "no heading with this anchor in " + to.path
}

// isLineAnchor is GitHub's #L12 or #L12-L20.
func isLineAnchor(frag string) bool {
	return regexp.MustCompile(`^L\d+(-L\d+)?$`).MatchString(frag)
}
