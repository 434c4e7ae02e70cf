package dashboard_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestJoinBoxOffersSmalruby: a box serving the Smalruby editor (--smalruby) offers, in the
// dashboard's join box, the editor's link for the domain the class meets in (the shared one,
// here room-4b), first, with its QR code; the Mesh endpoint stays on offer for schools that
// host the editor elsewhere.
func TestJoinBoxOffersSmalruby(t *testing.T) {
	t.Parallel()
	const public = "http://192.0.2.50:8080"
	editor := t.TempDir()
	if err := os.WriteFile(filepath.Join(editor, "index.html"), []byte("<title>Smalruby</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	b := startBox(t, "--public-url", public, "--smalruby", editor, "--shared-domain", "room-4b")
	tb := newTab(t)
	tb.language("en")
	tb.viewport(1280, 900, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.teacherURL()))
	link := public + "/smalruby/?mesh=room-4b"
	tb.waitFor("the editor's link", `document.getElementById("join-text").textContent === "`+link+`"`)
	tb.waitFor("its QR code", `document.getElementById("join-qr").complete && document.getElementById("join-qr").naturalWidth > 0 && document.getElementById("join-qr").src.includes("smalruby")`)
	if got := decodeQR(t, tb, "#join-qr"); got != link {
		t.Errorf("QR code says %q, want %q", got, link)
	}
	if got := tb.eval(`document.querySelector("#join-kind option[data-smalruby]").textContent`); got != "Smalruby editor, domain room-4b" {
		t.Errorf("option %q", got)
	}
	tb.screenshot("dashboard-smalruby")
	tb.eval(`(() => { const s = document.getElementById("join-kind"); s.value = "/graphql"; s.dispatchEvent(new Event("change")); return ""; })()`)
	tb.waitFor("the Mesh endpoint", `document.getElementById("join-text").textContent === "`+public+`/graphql"`)
	// The link works: the box serves the editor there.
	if body := b.get("/smalruby/?mesh=room-4b", ""); body != "<title>Smalruby</title>" {
		t.Errorf("GET the editor's link: %q", body)
	}
	if p := tb.consoleProblems(); len(p) > 0 {
		t.Errorf("console: %v", p)
	}
}
