package dashboard_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// feedCursors reads the cursors a group's activity feed shows, top (newest) first.
func (tb *tab) feedCursors(gid string) []int64 {
	tb.t.Helper()
	var cs []int64
	raw := tb.eval(`JSON.stringify([...document.querySelectorAll('[data-testid=group][data-gid=` + jsString(gid) + `] [data-testid=feed] li')].map((li) => Number(li.dataset.cursor)))`)
	if err := json.Unmarshal([]byte(raw), &cs); err != nil {
		tb.t.Fatalf("feed cursors %s: %v", raw, err)
	}
	return cs
}

// docScreenshot writes a screenshot for the documentation: into docs/screenshots when
// MESHBOX_DOCS_SCREENSHOTS=1 (to refresh the committed pictures), else beside the others in
// the git-ignored screenshots directory, so an ordinary test run leaves the tree clean. When
// bottom is not empty it is a JavaScript expression of the page's height worth showing (in CSS
// pixels, the page at one device pixel per CSS pixel): the picture is cut there, to stay small.
func (tb *tab) docScreenshot(name, bottom string) {
	tb.t.Helper()
	path := tb.screenshot(name)
	raw, err := os.ReadFile(path)
	if err != nil {
		tb.t.Fatal(err)
	}
	if bottom != "" {
		h, err := strconv.ParseFloat(tb.eval(`String(`+bottom+`)`), 64)
		if err != nil {
			tb.t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(raw))
		if err != nil {
			tb.t.Fatal(err)
		}
		r := img.Bounds()
		r.Max.Y = min(r.Max.Y, r.Min.Y+int(h))
		var buf bytes.Buffer
		if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, img.(interface {
			SubImage(image.Rectangle) image.Image
		}).SubImage(r)); err != nil {
			tb.t.Fatal(err)
		}
		raw = buf.Bytes()
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			tb.t.Fatal(err)
		}
	}
	if os.Getenv("MESHBOX_DOCS_SCREENSHOTS") != "1" {
		return
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), raw, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// TestDashboardBackfill: a teacher who opens the dashboard in the middle of a lesson sees what
// the groups did before (English and Japanese), newest first, and each later item once; a
// dashboard without the token shows none of it. The figures' units follow the plural rules of
// the page's language ("1 group", "2 groups"), and on a phone the join box with its QR code
// comes first. Screenshots at desktop and phone widths in both languages.
func TestDashboardBackfill(t *testing.T) {
	t.Parallel()
	// A classroom address, as a box on the school network shows it (127.0.0.1 brings a warning).
	b := startBox(t, "--public-url", "http://192.168.1.20:8080")
	robots := b.createGroup("room-3", "robots", "Ms-Tanaka")
	aiko := b.join(robots.Group.ID, "Aiko")
	ben := b.join(robots.Group.ID, "Ben")
	b.setData(aiko, map[string]string{"x": "120", "y": "40"})
	b.publishPayload(aiko, "move", "forward 10")
	b.publishPayload(ben, "move", "turn right")
	b.publishPayload(aiko, "score", "3")
	music := b.createGroup("room-3", "music", "Mr-Sato")
	chika := b.join(music.Group.ID, "Chika")
	b.publishPayload(chika, "note", "C4 quarter")
	b.publishPayload(music, "tempo", "120")
	secrets := []string{"robots", "Aiko", "forward 10", "C4 quarter", robots.Group.ID, music.Group.ID}
	// What each group's feed must show when the page opens: every item so far (joins, data,
	// events), a handful, well within the backfill's bounds.
	before := map[string]int{robots.Group.ID: 7, music.Group.ID: 4} // 3 joins+1 data+3 events; 2 joins+2 events
	newest := [2]string{"Aiko", "score"}                            // the robots' newest item: who, what

	// Without the token: figures, no feed, no name or payload.
	public := newTab(t)
	public.language("en")
	public.viewport(1280, 900, false, false)
	public.do("open dashboard", chromedp.Navigate(b.base+"/"))
	public.waitFor("figures", `document.getElementById("groups-live").textContent === "2" && document.getElementById("nodes-live").textContent === "5"`)
	public.waitFor("plural unit", `document.getElementById("groups-unit").textContent === "groups" && document.getElementById("nodes-unit").textContent === "members"`)

	for _, lang := range []string{"ja", "en"} {
		t.Run(lang, func(t *testing.T) {
			tb := newTab(t)
			tb.language(lang)
			tb.viewport(1280, 900, false, false)
			tb.do("open dashboard", chromedp.Navigate(b.teacherURL()))
			tb.waitFor("teacher mode", `document.getElementById("admin-state").dataset.state === "admin"`)
			for gid, n := range before {
				tb.waitFor("the activity before the page opened", fmt.Sprintf(`document.querySelectorAll('[data-testid=group][data-gid=%s] [data-testid=feed] li').length === %d`, jsString(gid), n))
			}
			feed := `document.querySelector('[data-testid=group][data-gid=` + jsString(robots.Group.ID) + `] [data-testid=feed]')`
			if got := tb.eval(feed + `.firstElementChild.textContent`); !strings.Contains(got, newest[0]) || !strings.Contains(got, newest[1]) {
				t.Errorf("the newest backfilled item (at the top) reads %q", got)
			}
			if got := tb.eval(feed + `.lastElementChild.dataset.kind`); got != "join" {
				t.Errorf("the oldest backfilled item is a %q, want the host's join", got)
			}
			cs := tb.feedCursors(robots.Group.ID)
			if !slices.IsSortedFunc(cs, func(a, b int64) int { return int(b - a) }) {
				t.Errorf("feed not newest first: %v", cs)
			}

			// A new item: shown once, on top; nothing backfilled comes again.
			payload := map[string]string{"ja": "back 5", "en": "turn left"}[lang]
			b.publishPayload(ben, "move", payload)
			tb.waitFor("the live item", feed+`.firstElementChild.textContent.includes(`+jsString(payload)+`)`)
			after := tb.feedCursors(robots.Group.ID)
			if len(after) != len(cs)+1 || !slices.Equal(after[1:], cs) {
				t.Errorf("feed after one new item: %v, before %v", after, cs)
			}
			before[robots.Group.ID]++
			newest = [2]string{"Ben", payload}
			tb.checkLanguage(lang, "dashboard with backfilled activity")
			if lang == "ja" {
				if got := tb.eval(`document.getElementById("groups-unit").textContent`); got != "グループ" {
					t.Errorf("Japanese group unit %q", got)
				}
			}
			tb.docScreenshot("dashboard-"+lang+"-desktop", "")

			tb.viewport(390, 844, true, false)
			tb.waitFor("no horizontal scrolling on a phone", `document.documentElement.scrollWidth <= window.innerWidth`)
			top := func(sel string) string {
				return `document.querySelector(` + jsString(sel) + `).getBoundingClientRect().top`
			}
			if got := tb.eval(`String(` + top(".join") + ` < ` + top("#groups-section") + ` && ` + top("#groups-section") + ` < ` + top(".cards") + `)`); got != "true" {
				t.Errorf("on a phone the order is not join box, groups, figures: join %s, groups %s, figures %s",
					tb.eval(`String(`+top(".join")+`)`), tb.eval(`String(`+top("#groups-section")+`)`), tb.eval(`String(`+top(".cards")+`)`))
			}
			// The pictures for the documentation at one device pixel per CSS pixel: a quarter
			// of the bytes of the phone's own density, and as readable on a computer screen.
			tb.do("phone at density 1", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(1)))
			// Cut below the groups: the join box, then the class and its activity.
			tb.docScreenshot("dashboard-"+lang+"-phone", `document.getElementById("groups-section").getBoundingClientRect().bottom + scrollY + 12`)
			if p := tb.consoleProblems(); len(p) > 0 {
				t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
			}
		})
	}

	// The page without the token, after all that: still no feed, no detail.
	public.waitFor("the new events counted", `document.getElementById("nodes-live").textContent === "5"`)
	if n := public.eval(`String(document.querySelectorAll("[data-testid=feed] li, [data-testid=group]").length)`); n != "0" {
		t.Errorf("the page without the token shows %s feed lines or groups", n)
	}
	html := public.eval(`document.documentElement.outerHTML`)
	for _, s := range secrets {
		if strings.Contains(html, s) {
			t.Errorf("the page without the token shows %q", s)
		}
	}

	// Plural forms: one group left reads "1 group" in English.
	b.call(http.MethodDelete, "/api/v1/groups/"+music.Group.ID, b.app.AdminToken(), nil, http.StatusNoContent, nil)
	public.waitFor("one group", `document.getElementById("groups-live").textContent === "1" && document.getElementById("groups-unit").textContent === "group"`)
	b.call(http.MethodDelete, "/api/v1/groups/"+robots.Group.ID+"/nodes/"+ben.Node.ID, b.app.AdminToken(), nil, http.StatusNoContent, nil)
	b.call(http.MethodDelete, "/api/v1/groups/"+robots.Group.ID+"/nodes/"+aiko.Node.ID, b.app.AdminToken(), nil, http.StatusNoContent, nil)
	public.waitFor("one member", `document.getElementById("nodes-live").textContent === "1" && document.getElementById("nodes-unit").textContent === "member"`)
	if p := public.consoleProblems(); len(p) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
	}
}

// TestPluralAndNumberForms checks the catalogs' plural forms and number formats through the
// page's own i18n module, as the browser runs it: English says "1 group" and "2 groups",
// Japanese has one form, and both group digits the way their locale does.
func TestPluralAndNumberForms(t *testing.T) {
	t.Parallel()
	b := startBox(t)
	tb := newTab(t)
	tb.do("open dashboard", chromedp.Navigate(b.base+"/"))
	tb.waitFor("live stream", `document.getElementById("live-text").dataset.state === "live"`)
	got := map[string]string{}
	expr := `(async () => {
		const { I18n } = await import("/assets/i18n.js");
		const out = {};
		for (const lang of ["en", "ja"]) {
			const x = new I18n([]);
			await x.use(lang);
			out[lang + " 1 group"] = x.tp("dash.groups.unit", 1);
			out[lang + " 2 groups"] = x.tp("dash.groups.unit", 2);
			out[lang + " 1 member"] = x.tp("dash.members.unit", 1);
			out[lang + " 0 members"] = x.tp("dash.members.unit", 0);
			out[lang + " 1234 members of a group"] = x.tp("dash.group.members", 1234);
			out[lang + " 1 member of a group"] = x.tp("dash.group.members", 1);
		}
		return JSON.stringify(out);
	})()`
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	want := map[string]string{
		"en 1 group": "group", "en 2 groups": "groups", "en 1 member": "member", "en 0 members": "members",
		"en 1234 members of a group": "1,234 members", "en 1 member of a group": "1 member",
		"ja 1 group": "グループ", "ja 2 groups": "グループ", "ja 1 member": "人のメンバー", "ja 0 members": "人のメンバー",
		"ja 1234 members of a group": "メンバー 1,234 人", "ja 1 member of a group": "メンバー 1 人",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %q, want %q", k, got[k], w)
		}
	}
}
