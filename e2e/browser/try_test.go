package browser_test

import (
	"context"
	"fmt"
	"meshbox/e2e/chrome"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// do runs UI actions in the tab with a timeout.
func (tb *tab) do(steps ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		tb.t.Fatalf("%s: %v", tb.name, err)
	}
}

func (tb *tab) text(sel string) string {
	tb.t.Helper()
	var s string
	tb.eval(fmt.Sprintf(`document.querySelector(%s)?.textContent ?? ''`, jsString(sel)), &s)
	return s
}

// TestTryPageShowsMembersAndEvents plays the teacher with two laptops: one creates a group on
// /try, the other opens the share link and joins, both set data and send events, and each page
// shows both members, their data and the stream, with nothing logged as an error.
func TestTryPageShowsMembersAndEvents(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})

	teacher := b.newTab(t, "teacher")
	teacher.navigate(srv.URL + "/try")
	teacher.do(
		chromedp.WaitVisible(chromedp.CSS("#create-form")),
		chrome.TypeInto("#node-name", "Ms Lovelace"),
		chrome.TypeInto("#group-name", "class 4b"),
		chromedp.Click(chromedp.CSS("#create-form button")),
		chromedp.WaitVisible(chromedp.CSS("#session")),
	)
	teacher.waitTrue(`document.querySelector('#status').dataset.state === 'connected'`, `document.querySelector('#status').textContent`, 15*time.Second)
	var share string
	teacher.eval(`document.querySelector('#share-link').href`, &share)
	if !strings.Contains(share, "/try?group=") {
		t.Fatalf("share link %q", share)
	}

	pupil := b.newTab(t, "pupil")
	pupil.navigate(share)
	pupil.do(
		chromedp.WaitVisible(chromedp.CSS("#join-form")),
		chrome.TypeInto("#node-name", "Grace"),
		chromedp.Click(chromedp.CSS("#join-form button")),
		chromedp.WaitVisible(chromedp.CSS("#session")),
	)
	pupil.waitTrue(`document.querySelector('#status').dataset.state === 'connected'`, `document.querySelector('#status').textContent`, 15*time.Second)

	// Both pages list both members.
	for _, tb := range []*tab{teacher, pupil} {
		tb.waitTrue(`document.querySelectorAll('#members tbody tr').length === 2`, `document.querySelector('#members').innerText`, 10*time.Second)
	}

	// The pupil sets data and sends an event through the forms; the teacher sends one too.
	pupil.do(
		chromedp.SetValue(chromedp.CSS("#data-key"), "score"),
		chromedp.SetValue(chromedp.CSS("#data-value"), "42"),
		chromedp.Click(chromedp.CSS("#data-form button")),
		chromedp.SetValue(chromedp.CSS("#event-name"), "hand-up"),
		chromedp.SetValue(chromedp.CSS("#event-payload"), "question about loops"),
		chromedp.Click(chromedp.CSS("#event-form button")),
	)
	teacher.do(
		chromedp.SetValue(chromedp.CSS("#event-name"), "answer"),
		chromedp.SetValue(chromedp.CSS("#event-payload"), "use a for loop"),
		chromedp.Click(chromedp.CSS("#event-form button")),
	)

	for _, tb := range []*tab{teacher, pupil} {
		tb.waitTrue(`[...document.querySelectorAll('#log li[data-kind=event]')].map((li) => li.textContent).join('|').includes('question about loops') &&
			[...document.querySelectorAll('#log li[data-kind=event]')].map((li) => li.textContent).join('|').includes('use a for loop')`,
			`document.querySelector('#log').innerText`, 15*time.Second)
		tb.waitTrue(`document.querySelector('#members').innerText.includes('score=42')`, `document.querySelector('#members').innerText`, 15*time.Second)
		members := tb.text("#members tbody")
		for _, want := range []string{"Ms Lovelace", "Grace", "score=42"} {
			if !strings.Contains(members, want) {
				t.Errorf("%s: members table %q lacks %q", tb.name, members, want)
			}
		}
		if log := tb.text("#log"); !strings.Contains(log, "Grace: hand-up question about loops") || !strings.Contains(log, "Ms Lovelace: answer use a for loop") {
			t.Errorf("%s: stream shows %q", tb.name, log)
		}
	}

	for _, tb := range []*tab{teacher, pupil} {
		path := tb.screenshot("try-" + tb.name)
		if fi, err := os.Stat(path); err != nil || fi.Size() < 10_000 {
			t.Errorf("screenshot %s: %v (size %v)", path, err, fi)
		}
		t.Logf("screenshot of %s: %s", tb.name, path)
	}

	// The teacher's page lists the group for a third laptop to pick.
	third := b.newTab(t, "third")
	third.navigate(srv.URL + "/try")
	third.waitTrue(`document.querySelector('#groups').innerText.includes('class 4b')`, `document.querySelector('#groups').innerText`, 10*time.Second)

	// The pupil leaves; the teacher's page drops the member.
	pupil.do(chromedp.Click(chromedp.CSS("#leave")))
	teacher.waitTrue(`document.querySelectorAll('#members tbody tr').length === 1`, `document.querySelector('#members').innerText`, 10*time.Second)
	teacher.waitTrue(`document.querySelector('#log li[data-kind=leave]') !== null`, `document.querySelector('#log').innerText`, 10*time.Second)

	for _, tb := range []*tab{teacher, pupil, third} {
		if errs := tb.consoleErrors(); len(errs) > 0 {
			t.Errorf("%s logged errors: %v", tb.name, errs)
		}
	}
}

// TestTryPageTransportChoice checks the page honours the transport picked in its form.
func TestTryPageTransportChoice(t *testing.T) {
	b := newBrowser(t)
	srv := startMeshbox(t, settings{})
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			tb := b.newTab(t, "try-"+tr)
			tb.navigate(srv.URL + "/try")
			tb.do(
				chromedp.WaitVisible(chromedp.CSS("#create-form")),
				chromedp.SetValue(chromedp.CSS("#transport"), tr),
				chrome.TypeInto("#group-name", "transport "+tr),
				chromedp.Click(chromedp.CSS("#create-form button")),
			)
			tb.waitTrue(fmt.Sprintf(`document.querySelector('#status').dataset.state === 'connected' && document.querySelector('#status').dataset.transport === '%s'`, tr), `document.querySelector('#status').textContent`, 15*time.Second)
			if errs := tb.consoleErrors(); len(errs) > 0 {
				t.Errorf("logged errors: %v", errs)
			}
		})
	}
}
