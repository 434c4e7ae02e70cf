package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"

	"github.com/chromedp/cdproto/cdp"

	"meshbox/e2e/chrome"
	"meshbox/embed"
)

// catalog reads one language's messages from the embedded assets, with plural forms reduced to
// the texts they may show.
func catalog(t *testing.T, lang string) map[string][]string {
	t.Helper()
	raw, err := embed.Assets.ReadFile("assets/i18n/" + lang + ".json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for k, v := range m {
		switch v := v.(type) {
		case string:
			out[k] = []string{v}
		case map[string]any:
			for _, f := range v {
				out[k] = append(out[k], f.(string))
			}
		}
	}
	return out
}

// language makes the tab's browser speak lang: navigator.languages and Accept-Language, as a
// browser set to that language does.
func (tb *tab) language(lang string) {
	tb.t.Helper()
	ua := tb.eval(`navigator.userAgent`)
	tb.do("set language "+lang, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, t, emulation.SetUserAgentOverride, emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: lang})
		return chromedp.Void{}, err
	})
}

// checkLanguage asserts the page is in lang: its lang attribute, every element marked with a
// catalog key shows that catalog's text, and nothing shows a bare catalog key or an unfilled
// {placeholder}, in the text or in tooltips, placeholders and labels.
func (tb *tab) checkLanguage(lang string, page string) {
	tb.t.Helper()
	if got := tb.eval(`document.documentElement.lang`); got != lang {
		tb.t.Errorf("%s: <html lang=%q>, want %q", page, got, lang)
	}
	want := catalog(tb.t, lang)
	var marked [][2]string
	if err := json.Unmarshal([]byte(tb.eval(`JSON.stringify([...document.querySelectorAll('[data-i18n]')].map((e) => [e.dataset.i18n, e.textContent]))`)), &marked); err != nil {
		tb.t.Fatal(err)
	}
	if len(marked) < 10 {
		tb.t.Errorf("%s: only %d translated elements", page, len(marked))
	}
	for _, m := range marked {
		if texts, ok := want[m[0]]; !ok || !contains(texts, m[1]) {
			tb.t.Errorf("%s (%s): element %s shows %q, catalog has %q", page, lang, m[0], m[1], texts)
		}
	}
	shown := tb.eval(`document.body.innerText + "\n" + document.title + "\n" + [...document.querySelectorAll('[title],[placeholder],[aria-label],[alt]')].map((e) => [e.title, e.placeholder, e.getAttribute('aria-label'), e.getAttribute('alt')].filter(Boolean).join("\n")).join("\n")`)
	for key := range catalog(tb.t, "en") {
		if regexp.MustCompile(`(^|[^\w.])` + regexp.QuoteMeta(key) + `($|[^\w.])`).MatchString(shown) {
			tb.t.Errorf("%s (%s): untranslated catalog key %q on the page", page, lang, key)
		}
	}
	if m := regexp.MustCompile(`\{[a-z]+\}`).FindString(shown); m != "" {
		tb.t.Errorf("%s (%s): unfilled placeholder %s on the page", page, lang, m)
	}
	japanese := regexp.MustCompile(`[\p{Hiragana}\p{Katakana}\p{Han}]`)
	if lang == "ja" && len(japanese.FindAllString(shown, -1)) < 50 {
		tb.t.Errorf("%s: hardly any Japanese on the Japanese page:\n%s", page, shown)
	}
	if lang == "en" {
		// Japanese may appear only as the name of the language in the switch.
		if rest := strings.ReplaceAll(shown, "日本語", ""); japanese.MatchString(rest) {
			tb.t.Errorf("%s: Japanese on the English page: %q", page, japanese.FindAllString(rest, 5))
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// evalAwait runs a JavaScript expression that returns a promise and waits for it.
func (tb *tab) evalAwait(expr string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr, chromedp.EvalAwaitPromise)); err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
}

// switchLanguage picks lang in the page's language switch, as a person does.
func (tb *tab) switchLanguage(lang string) {
	tb.t.Helper()
	tb.eval(fmt.Sprintf(`(() => { const s = document.getElementById("lang-switch"); s.value = %s; s.dispatchEvent(new Event("change")); return ""; })()`, jsString(lang)))
	tb.waitFor("language "+lang, fmt.Sprintf(`document.documentElement.lang === %s`, jsString(lang)))
}

// TestDashboardInTwoLanguages opens the dashboard with a browser set to Japanese and one set
// to English, with a class in progress, and checks each page speaks its language only, at
// phone and desktop widths (screenshots of each), that a phone shows the groups before the
// figures, that the chart has labels, and that the language switch works and is remembered.
func TestDashboardInTwoLanguages(t *testing.T) {
	t.Parallel()
	b := startBox(t)
	host := b.createGroup("room-7", "science", "teacher")
	ada := b.join(host.Group.ID, "ada")
	b.openSSE(ada)
	b.setData(ada, map[string]string{"score": "3"})
	b.publish(host, "start")

	for _, lang := range []string{"ja", "en"} {
		t.Run(lang, func(t *testing.T) {
			tb := newTab(t)
			tb.language(lang)
			tb.viewport(1366, 900, false, false)
			tb.do("open dashboard", chromedp.Navigate(b.teacherURL()))
			tb.waitFor("live stream", `document.getElementById("live-text").dataset.state === "live"`)
			tb.waitFor("the class", `document.querySelectorAll('[data-testid=node]').length === 2`)
			tb.waitFor("the chart's time labels", `/^\d\d:\d\d$/.test(document.getElementById("x-start").textContent)`)
			b.publish(host, "again")
			tb.waitFor("the feed", `document.querySelector('[data-testid=feed] li[data-kind=event]') !== null`)
			tb.checkLanguage(lang, "dashboard")
			if lang == "ja" {
				if got := tb.eval(`document.querySelector('[data-testid=node] [data-transport=sse]').textContent`); got != "受信専用の接続" {
					t.Errorf("transport shown as %q", got)
				}
				if got := tb.eval(`document.querySelector('[data-testid=node] [data-transport=sse]').title`); !strings.Contains(got, "Server-Sent Events") {
					t.Errorf("transport tooltip %q lacks the technical name", got)
				}
			}
			tb.screenshot("dashboard-" + lang + "-desktop")

			tb.viewport(390, 844, true, false)
			tb.waitFor("no horizontal scrolling on a phone", `document.documentElement.scrollWidth <= window.innerWidth`)
			if got := tb.eval(`String(document.getElementById("groups-section").getBoundingClientRect().top < document.querySelector(".cards").getBoundingClientRect().top)`); got != "true" {
				t.Error("on a phone the figures come before the groups")
			}
			tb.screenshot("dashboard-" + lang + "-phone")
			tb.checkLanguage(lang, "dashboard (phone)")
			if p := tb.consoleProblems(); len(p) > 0 {
				t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
			}
		})
	}

	// The switch: an English browser switched to Japanese stays Japanese after a reload.
	tb := newTab(t)
	tb.language("en")
	tb.viewport(1366, 900, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.teacherURL()))
	tb.waitFor("live stream", `document.getElementById("live-text").dataset.state === "live"`)
	tb.waitFor("English", `document.documentElement.lang === "en"`)
	tb.switchLanguage("ja")
	tb.waitFor("Japanese live state", `document.getElementById("live-text").textContent === "接続中"`)
	tb.waitFor("Japanese member count", `document.querySelector('[data-testid=group] .badge').textContent.includes("人")`)
	tb.checkLanguage("ja", "dashboard after the switch")
	tb.do("reload", chromedp.Reload())
	tb.waitFor("live stream after reload", `document.getElementById("live-text").dataset.state === "live"`)
	tb.checkLanguage("ja", "dashboard after a reload")
	if got := tb.eval(`document.getElementById("lang-switch").value`); got != "ja" {
		t.Errorf("switch shows %q after reload", got)
	}
}

// TestTryPageInTwoLanguages creates a group on /try with a browser set to each language,
// checks the page speaks it (forms, status, members, activity), switches language in the
// middle of the session without leaving it, and writes phone and desktop screenshots.
func TestTryPageInTwoLanguages(t *testing.T) {
	t.Parallel()
	b := startBox(t)
	for _, lang := range []string{"ja", "en"} {
		t.Run(lang, func(t *testing.T) {
			tb := newTab(t)
			tb.language(lang)
			tb.viewport(1280, 900, false, false)
			tb.do("open /try", chromedp.Navigate(b.base+"/try"))
			tb.waitFor("translated", fmt.Sprintf(`document.documentElement.lang === %s && document.querySelector('#create-form button').textContent !== ""`, jsString(lang)))
			tb.checkLanguage(lang, "/try start")
			// The create and join cards line up: no border or margin from the stacked-forms rule.
			if got := tb.eval(`getComputedStyle(document.getElementById("join-form")).borderTopWidth + " " + String(document.getElementById("join-form").getBoundingClientRect().top === document.getElementById("create-form").getBoundingClientRect().top)`); got != "1px true" {
				t.Errorf("join card: border and alignment %q, want 1px true", got)
			}
			tb.screenshot("try-" + lang + "-start-desktop")
			tb.do("create a group",
				chrome.TypeInto("#node-name", "Ms "+lang),
				chrome.TypeInto("#group-name", "class 4b "+lang),
				chromedp.Click(chromedp.CSS("#create-form button")),
			)
			tb.waitFor("connected", `document.getElementById("status").dataset.state === "connected"`)
			tb.evalAwait(`(async () => { await window.mesh.setData({score: "7"}); await window.mesh.publish("hello", "world"); return ""; })()`)
			tb.waitFor("the event in the log", `document.querySelector('#log li[data-kind=event]') !== null`)
			tb.waitFor("the data in the table", `document.getElementById("members").innerText.includes("score=7")`)
			tb.checkLanguage(lang, "/try session")
			tb.screenshot("try-" + lang + "-desktop")
			tb.viewport(390, 844, true, false)
			tb.waitFor("no horizontal scrolling on a phone", `document.documentElement.scrollWidth <= window.innerWidth`)
			tb.screenshot("try-" + lang + "-phone")
			tb.viewport(1280, 900, false, false)

			// Switch language mid-session: the session goes on, the words change.
			other := map[string]string{"ja": "en", "en": "ja"}[lang]
			tb.switchLanguage(other)
			wantStatus := map[string]string{"ja": "接続中 · 常時接続", "en": "connected · live connection"}[other]
			tb.waitFor("status in the other language", fmt.Sprintf(`document.getElementById("status").textContent === %s`, jsString(wantStatus)))
			tb.checkLanguage(other, "/try after the switch")
			if got := tb.eval(`document.getElementById("status").dataset.state`); got != "connected" {
				t.Errorf("switching language disturbed the session: %s", got)
			}
			// Remembered: a new page of the same browser opens in the chosen language.
			tb.do("open /try again", chromedp.Navigate(b.base+"/try"))
			tb.waitFor("remembered language", fmt.Sprintf(`document.documentElement.lang === %s`, jsString(other)))
			tb.checkLanguage(other, "/try after a reload")
			if p := tb.consoleProblems(); len(p) > 0 {
				t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
			}
		})
	}
}

// TestJoinAddressFromPublicURL starts a box with --public-url, as behind a port mapping: the
// dashboard's address, its QR code, the Mesh v2 endpoint shown and /try's share link all use it.
func TestJoinAddressFromPublicURL(t *testing.T) {
	t.Parallel()
	const public = "http://192.0.2.50:8080"
	b := startBox(t, "--public-url", public)
	tb := newTab(t)
	tb.language("en")
	tb.viewport(1280, 900, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.teacherURL()))
	tb.waitFor("join address", `document.getElementById("join-text").textContent === "`+public+`/"`)
	if got := tb.eval(`document.getElementById("join-note").hidden + ""`); got != "true" {
		t.Errorf("a warning is shown although the address was set: %s", tb.eval(`document.getElementById("join-note").textContent`))
	}
	tb.eval(`(() => { const s = document.getElementById("join-kind"); s.value = "/graphql"; s.dispatchEvent(new Event("change")); return ""; })()`)
	tb.waitFor("Mesh v2 endpoint", `document.getElementById("join-text").textContent === "`+public+`/graphql"`)
	tb.waitFor("QR code", `document.getElementById("join-qr").complete && document.getElementById("join-qr").naturalWidth > 0 && document.getElementById("join-qr").src.includes("graphql")`)
	if got := decodeQR(t, tb, "#join-qr"); got != public+"/graphql" {
		t.Errorf("QR code says %q", got)
	}
	tb.screenshot("dashboard-public-url")

	tb.do("open /try", chromedp.Navigate(b.base+"/try"))
	tb.waitFor("/try", `document.querySelector('#create-form button').textContent !== ""`)
	tb.do("create a group", chrome.TypeInto("#group-name", "g"), chromedp.Click(chromedp.CSS("#create-form button")))
	tb.waitFor("share link", `document.getElementById("share-link").href.startsWith("`+public+`/try?group=")`)
}

// TestJoinAddressLoopbackWarning: a box bound to loopback shows its own address with a warning
// that students cannot use it, in the page's language.
func TestJoinAddressLoopbackWarning(t *testing.T) {
	t.Parallel()
	b := startBox(t) // 127.0.0.1
	tb := newTab(t)
	tb.language("ja")
	tb.viewport(1280, 900, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.teacherURL()))
	tb.waitFor("warning", `!document.getElementById("join-note").hidden && document.getElementById("join-note").dataset.warning === "loopback"`)
	if got, want := tb.eval(`document.getElementById("join-note").textContent`), catalog(t, "ja")["dash.join.note.loopback"][0]; got != want {
		t.Errorf("warning %q, want %q", got, want)
	}
	if got := tb.eval(`document.getElementById("join-text").textContent`); got != b.base+"/" {
		t.Errorf("join address %q, want %q", got, b.base+"/")
	}
}

// decodeQR reads the QR code of the element with an independent decoder (zbarimg).
func decodeQR(t *testing.T, tb *tab, sel string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.CSS(sel)))
	if err != nil {
		t.Fatal(err)
	}
	zbar := requireTool(t, "apt-get install -y zbar-tools", "zbarimg")
	file := filepath.Join(t.TempDir(), "qr.png")
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(zbar, "--quiet", "--raw", "-Sbinary", file).Output()
	if err != nil {
		t.Fatalf("zbarimg could not read the QR code: %v", err)
	}
	return strings.TrimSpace(string(out))
}
