package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"meshbox/e2e/chrome"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// tab is one page of a fresh headless Chromium, recording console errors and exceptions.
type tab struct {
	t   *testing.T
	ctx context.Context

	mu       sync.Mutex
	problems []chromedp.ConsoleMessage
}

func newTab(t *testing.T) *tab {
	t.Helper()
	ctx := chrome.Start(t)
	tb := &tab{t: t, ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			if m.Type == chromedp.ConsoleError || m.IsException() {
				tb.mu.Lock()
				tb.problems = append(tb.problems, m)
				tb.mu.Unlock()
			}
		}
	}()
	return tb
}

// do runs steps with a timeout so a broken page fails the test instead of hanging it.
func (tb *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// waitFor polls a JavaScript predicate until it is true.
func (tb *tab) waitFor(what, predicate string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](predicate, chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		tb.t.Fatalf("waiting for %s (%s): %v", what, predicate, err)
	}
}

func (tb *tab) eval(expr string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// viewport sets the window size and whether the page prefers a dark color scheme.
func (tb *tab) viewport(w, h int64, mobile, dark bool) {
	tb.t.Helper()
	scheme := "light"
	if dark {
		scheme = "dark"
	}
	var vp chromedp.Action[chromedp.Void]
	if mobile {
		vp = chromedp.EmulateViewport(w, h, chromedp.EmulateMobile, chromedp.EmulateScale(2))
	} else {
		vp = chromedp.EmulateViewport(w, h)
	}
	tb.do("set viewport", vp, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
		})
		return chromedp.Void{}, err
	})
}

// screenshot writes a full-page PNG into the git-ignored screenshots directory.
func (tb *tab) screenshot(name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(screenshotDir(tb.t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatal(err)
	}
	return path
}

// consoleProblems returns the errors the page logged, except the browser's own network lines
// for admin calls the test expects to be refused (the page reports those to the user).
func (tb *tab) consoleProblems() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	var out []string
	for _, m := range tb.problems {
		if m.Source == "network" && strings.Contains(m.URL, "/api/v1/admin/") && strings.Contains(m.Text, "401") {
			continue
		}
		out = append(out, fmt.Sprintf("%s %s (%s)", m.Type, m.Text, m.URL))
	}
	return out
}

// overview reads the dashboard API directly, to check what the server (not the page) holds.
func (b *box) overview() (groups int, nodes map[string]bool) {
	b.t.Helper()
	var o struct {
		GroupsLive int `json:"groupsLive"`
		Domains    []struct {
			Groups []struct {
				Nodes []struct {
					ID string `json:"id"`
				} `json:"nodes"`
			} `json:"groups"`
		} `json:"domains"`
	}
	b.call(http.MethodGet, "/api/v1/dashboard/overview", b.app.AdminToken(), nil, http.StatusOK, &o)
	nodes = map[string]bool{}
	for _, d := range o.Domains {
		for _, g := range d.Groups {
			for _, n := range g.Nodes {
				nodes[n.ID] = true
			}
		}
	}
	return o.GroupsLive, nodes
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDashboardLive opens the dashboard on a real meshbox, drives a class through the API and
// watches groups, nodes, data and items appear without a reload; then it is refused an admin
// action without the token and performs two with it. Screenshots at desktop and phone widths,
// light and dark, are written to e2e/dashboard/screenshots.
func TestDashboardLive(t *testing.T) {
	t.Parallel()
	const adminToken = "teacher-secret-42"
	b := startBox(t, "--admin-token", adminToken)
	tb := newTab(t)
	tb.viewport(1366, 900, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.base+"/"))
	tb.waitFor("live stream", `document.getElementById("live-text").dataset.state === "live"`)
	if v := tb.eval(`document.getElementById("admin-state").dataset.state`); v != "locked" {
		t.Errorf("admin state = %q, want %q", v, "locked")
	}

	// A class arrives while the page is open without the token: figures only.
	host := b.createGroup("room-12", "robotics", "teacher")
	ada := b.join(host.Group.ID, "ada-lovelace")
	bob := b.join(host.Group.ID, "bob")
	b.openSSE(ada)
	b.setData(ada, map[string]string{"color": "red", "score": "3", "motto": "secret-motto"})
	b.publish(host, "start", "go")
	tb.waitFor("overview counters", `document.getElementById("groups-live").textContent === "1" && document.getElementById("nodes-live").textContent === "3"`)
	tb.waitFor("locked banner", `!document.getElementById("locked-banner").hidden`)
	for _, secret := range []string{"room-12", "robotics", "ada-lovelace", "secret-motto", "p-start", ada.Node.ID, host.Group.ID} {
		if tb.eval(`String(document.documentElement.outerHTML.includes(`+jsString(secret)+`))`) != "false" {
			t.Errorf("the page without the token shows %q", secret)
		}
	}

	// A wrong token is refused at unlock.
	tb.do("enter wrong token", chrome.TypeInto("#admin-token", "guess"), chromedp.Click(chromedp.CSS("#admin-unlock")))
	tb.waitFor("wrong token refused", `document.getElementById("toast").textContent.includes("not accepted") && document.getElementById("admin-state").dataset.state === "locked"`)
	tb.waitFor("refused token cleared", `document.getElementById("admin-token").value === ""`)
	tb.do("unlock", chrome.TypeInto("#admin-token", adminToken), chromedp.Click(chromedp.CSS("#admin-unlock")))
	tb.waitFor("admin unlocked", `document.getElementById("admin-state").dataset.state === "admin"`)

	group := `document.querySelector('[data-testid=group][data-gid=` + jsString(host.Group.ID) + `]')`
	tb.waitFor("group card", group+` !== null`)
	tb.waitFor("three members", group+`.querySelectorAll('[data-testid=node]').length === 3`)
	adaRow := group + `.querySelector('tr[data-nid=` + jsString(ada.Node.ID) + `]')`
	tb.waitFor("ada's transport", adaRow+`.querySelector('[data-transport=sse]') !== null`)
	tb.waitFor("ada's data", adaRow+`.textContent.includes("color=red") && `+adaRow+`.textContent.includes("score=3")`)
	feed := group + `.querySelector('[data-testid=feed]').textContent`
	b.publish(host, "start2")
	tb.waitFor("events in the feed", feed+`.includes("sent start2")`)
	tb.waitFor("domain heading", `document.querySelector('[data-domain="room-12"] h3').textContent.includes("room-12")`)
	tb.waitFor("join URL and QR code", `document.getElementById("join-text").textContent.startsWith("http") && document.getElementById("join-qr").naturalWidth > 0`)

	// Live, not only on load: later items and data changes show up too.
	b.publish(bob, "late-arrival")
	b.setData(ada, map[string]string{"score": "4"})
	tb.waitFor("a later event", feed+`.includes("sent late-arrival")`)
	tb.waitFor("changed data", adaRow+`.textContent.includes("score=4")`)
	tb.waitFor("the rate chart", `document.getElementById("line-events").getAttribute("points").split(" ").length > 1`)

	tb.screenshot("dashboard-desktop")
	tb.viewport(1366, 900, false, true)
	tb.screenshot("dashboard-desktop-dark")
	tb.viewport(390, 844, true, false)
	tb.waitFor("no horizontal scrolling on a phone", `document.documentElement.scrollWidth <= window.innerWidth`)
	tb.screenshot("dashboard-phone")
	tb.viewport(390, 844, true, true)
	tb.screenshot("dashboard-phone-dark")
	tb.viewport(1366, 900, false, false)

	// With the token: remove bob, then dissolve the group.
	bobRemove := `tr[data-nid="` + bob.Node.ID + `"] button[data-action=remove]`
	tb.do("remove bob", chromedp.Click(chromedp.CSS(bobRemove)), chromedp.Click(chromedp.CSS(bobRemove)))
	tb.waitFor("bob gone from the page", adaRow+` !== null && `+group+`.querySelector('tr[data-nid=`+jsString(bob.Node.ID)+`]') === null`)
	tb.waitFor("bob's leave in the feed", group+`.querySelector('[data-testid=feed] li[data-kind=leave][data-reason=removed]') !== null`)
	if _, nodes := b.overview(); nodes[bob.Node.ID] {
		t.Fatal("the page shows bob removed but the server still has him")
	}
	dissolve := `[data-gid="` + host.Group.ID + `"] button[data-action=dissolve]`
	tb.do("dissolve", chromedp.Click(chromedp.CSS(dissolve)), chromedp.Click(chromedp.CSS(dissolve)))
	tb.waitFor("group gone from the page", group+` === null && !document.getElementById("no-groups").hidden`)
	if groups, _ := b.overview(); groups != 0 {
		t.Fatalf("server still has %d live groups after dissolve", groups)
	}

	if p := tb.consoleProblems(); len(p) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
	}
}

// TestDashboardWithoutToken checks a box started without an admin token, as a teacher starts
// it: the page opened without the token shows the figures and the join helper, and not one
// group or node name, datum or payload, in the page or on the JSON; the one-click link printed
// at start opens the details; and the join QR code decodes to the address it prints.
func TestDashboardWithoutToken(t *testing.T) {
	t.Parallel()
	b := startBox(t)
	host := b.createGroup("secret-domain", "secret-group", "secret-host")
	ada := b.join(host.Group.ID, "secret-ada")
	b.openSSE(ada)
	b.setData(ada, map[string]string{"secret-key": "secret-value"})
	secrets := []string{"secret-", host.Group.ID, ada.Node.ID, host.Node.ID}

	tb := newTab(t)
	tb.viewport(1280, 800, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.base+"/"))
	tb.waitFor("live stream", `document.getElementById("live-text").dataset.state === "live"`)
	tb.waitFor("figures", `document.getElementById("groups-live").textContent === "1" && document.getElementById("nodes-live").textContent === "2"`)
	b.publish(host, "secret-event")
	b.publishPayload(ada, "go", "secret-payload")
	tb.waitFor("the events counted", `document.getElementById("events-rate").textContent !== "0" || document.getElementById("rejected-total") !== null`)
	tb.waitFor("locked banner", `!document.getElementById("locked-banner").hidden && document.getElementById("admin-state").dataset.state === "locked"`)
	if v := tb.eval(`document.querySelectorAll("[data-testid=group], [data-testid=node], button[data-action]").length + ""`); v != "0" {
		t.Errorf("%s group, node or admin elements on the page without the token", v)
	}
	html := tb.eval(`document.documentElement.outerHTML`)
	for _, s := range secrets {
		if strings.Contains(html, s) {
			t.Errorf("the page without the token shows %q", s)
		}
	}
	raw := b.get("/api/v1/dashboard/overview", "")
	for _, s := range secrets {
		if strings.Contains(raw, s) {
			t.Errorf("the overview JSON without the token shows %q", s)
		}
	}
	if raw := b.get("/api/v1/dashboard/overview", b.app.AdminToken()); !strings.Contains(raw, "secret-ada") {
		t.Errorf("the overview JSON with the token lacks the details: %.300s", raw)
	}
	tb.screenshot("dashboard-without-token")

	// The one-click link: the details appear, and the token leaves the address bar.
	teacher := newTab(t)
	teacher.viewport(1280, 800, false, false)
	teacher.do("open the teacher link", chromedp.Navigate(b.base+"/#token="+b.app.AdminToken()))
	teacher.waitFor("the class", `document.querySelectorAll('[data-testid=node]').length === 2 && document.getElementById("admin-state").dataset.state === "admin"`)
	teacher.waitFor("secret data", `document.querySelector('[data-testid=node]').parentNode.textContent.includes("secret-key=secret-value")`)
	if u := teacher.eval(`location.href`); strings.Contains(u, "token") {
		t.Errorf("the token stays in the address bar: %s", u)
	}

	tb.waitFor("QR code", `document.getElementById("join-qr").complete && document.getElementById("join-qr").naturalWidth > 0`)
	tb.screenshot("dashboard-readonly")

	// The QR code must scan to the printed address: decode the rendered image with zbarimg.
	text := tb.eval(`document.getElementById("join-text").textContent`)
	got := decodeQR(t, tb, "#join-qr")
	if got != text || !strings.HasPrefix(got, "http://") {
		t.Errorf("QR code says %q, page says %q", got, text)
	}
	if p := tb.consoleProblems(); len(p) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
	}
}
