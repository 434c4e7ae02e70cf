package dashboard_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"meshbox/e2e/chrome"
	"meshbox/netdelay"
)

// openWS opens member m's native WebSocket through base and reads it until the test ends, so
// the server's pings are answered.
func openWS(t *testing.T, base string, m member) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u := "ws" + strings.TrimPrefix(base, "http") + "/api/v1/groups/" + m.Group.ID + "/ws?token=" + url.QueryEscape(m.Token)
	ws, _, err := websocket.Dial(ctx, u, nil)
	if err != nil {
		cancel()
		t.Fatalf("websocket %s: %v", m.Node.Name, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		ws.CloseNow()
		<-done
	})
}

// TestDashboardHighlightsTheDelayedNode: two pupils on WebSockets, one of them behind a proxy
// adding 200 ms each way. The teacher's dashboard, unlocked with the admin token, marks the
// delayed one's link poor (its row highlighted) and not the direct one's.
func TestDashboardHighlightsTheDelayedNode(t *testing.T) {
	t.Parallel()
	const adminToken = "teacher-secret-17"
	// Pings every second: a few round trips per node soon.
	b := startBox(t, "--admin-token", adminToken, "--ping-interval", "1s")
	slow := "http://" + netdelay.Start(t, strings.TrimPrefix(b.base, "http://"), 200*time.Millisecond)
	host := b.createGroup("room-17", "links", "teacher")
	direct := b.join(host.Group.ID, "direct-pupil")
	delayed := b.join(host.Group.ID, "delayed-pupil")
	openWS(t, b.base, direct)
	openWS(t, slow, delayed)

	tb := newTab(t)
	tb.viewport(1366, 900, false, false)
	tb.do("open dashboard", chromedp.Navigate(b.base+"/"))
	tb.waitFor("live stream", `document.getElementById("live-text").dataset.state === "live"`)
	tb.do("unlock", chrome.TypeInto("#admin-token", adminToken), chromedp.Click(chromedp.CSS("#admin-unlock")))
	tb.waitFor("admin unlocked", `document.getElementById("admin-state").dataset.state === "admin"`)

	row := func(m member) string {
		return `document.querySelector('[data-testid=group][data-gid=` + jsString(host.Group.ID) + `] tr[data-nid=` + jsString(m.Node.ID) + `]')`
	}
	tb.waitFor("the delayed node's link graded", row(delayed)+` !== null && ["poor", "slow"].includes(`+row(delayed)+`.dataset.link)`)
	tb.waitFor("the direct node's link graded", row(direct)+` !== null && `+row(direct)+`.dataset.link !== ""`)
	// A grade is the median of the last samples: wait for the direct one to settle on not
	// highlighted rather than judge a single early sample.
	tb.waitFor("the direct node not highlighted", `!["poor", "stalled"].includes(`+row(direct)+`.dataset.link)`)

	if q := tb.eval(row(delayed) + `.dataset.link`); q != "poor" {
		t.Errorf("the delayed node's link is %q, want poor (at least 400 ms round trips)", q)
	}
	if bg := tb.eval(`getComputedStyle(` + row(delayed) + `).backgroundColor`); bg == tb.eval(`getComputedStyle(`+row(direct)+`).backgroundColor`) {
		t.Errorf("the delayed node's row is not highlighted: both rows have background %s", bg)
	}
	badge := row(delayed) + `.querySelector('[data-testid=link]')`
	if tip := tb.eval(badge + `.title`); !strings.Contains(tip, "ms") {
		t.Errorf("the delayed node's badge tooltip %q has no numbers", tip)
	}
	tb.screenshot("dashboard-link-quality")
	if p := tb.consoleProblems(); len(p) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(p, "\n"))
	}
}
