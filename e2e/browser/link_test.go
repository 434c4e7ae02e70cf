package browser_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"meshbox/netdelay"
)

// clientLink is what the client exposes as mesh.link.
type clientLink struct {
	Transport  string  `json:"transport"`
	RTTMS      float64 `json:"rttMs"`
	WorstMS    float64 `json:"worstMs"`
	MeasuredBy string  `json:"measuredBy"`
	Quality    string  `json:"quality"`
	Samples    int     `json:"samples"`
}

// TestClientMeasuresItsLinkBehindDelay: a page whose every connection to meshbox crosses a
// proxy adding 200 ms each way. On each transport the client's own round trip (mesh.link) is
// at least the injected 400 ms, labelled with what it timed, and a 'link' event reported it.
func TestClientMeasuresItsLinkBehindDelay(t *testing.T) {
	const delay = 200 * time.Millisecond
	b := newBrowser(t)
	// A ping interval of a second gives SSE streams a ping event (to echo) every second.
	srv := startMeshbox(t, settings{pingInterval: time.Second})
	slow := "http://" + netdelay.Start(t, strings.TrimPrefix(srv.URL, "http://"), delay)
	for _, tc := range []struct{ transport, measuredBy, serverMeasure string }{{"ws", "ack", "ping"}, {"sse", "echo", "echo"}, {"poll", "heartbeat", ""}} {
		t.Run(tc.transport, func(t *testing.T) {
			tb := b.page(t, "slow "+tc.transport, slow)
			tb.eval(`T.links = []; true`, nil)
			tb.eval(fmt.Sprintf(`MeshClient.create('', {name: 'link', transport: %s, heartbeatSeconds: 1}).then((m) => {
				m.on('link', (l) => T.links.push(l));
				return T.watch('c', m);
			})`, jsString(tc.transport)), nil)
			waitConnected(tb, "c", 30*time.Second)
			tb.waitTrue(`T.c.c.link.samples >= 3`, `{link: T.c.c.link, state: T.state('c')}`, 60*time.Second)

			var l clientLink
			tb.eval(`T.c.c.link`, &l)
			if l.Transport != tc.transport || l.MeasuredBy != tc.measuredBy {
				t.Errorf("mesh.link is %+v, want transport %s measured by %s", l, tc.transport, tc.measuredBy)
			}
			if min := float64(2 * delay / time.Millisecond); l.RTTMS < min || l.WorstMS < l.RTTMS {
				t.Errorf("mesh.link is %+v, want a median of at least the injected %v ms and a worst no better", l, min)
			}
			if l.Quality != "poor" {
				t.Errorf("mesh.link quality %q, want poor for %v ms", l.Quality, l.RTTMS)
			}
			// The events: the transport first (no round trip yet), then the quality.
			var events []clientLink
			tb.eval(`T.links`, &events)
			if len(events) < 2 || events[0].Transport != tc.transport || events[0].Quality != "" || events[len(events)-1].Quality != "poor" {
				t.Errorf("link events %+v, want the transport then its poor quality", events)
			}
			// The server's measure of the same node (its snapshot, read with the node's token):
			// a browser on SSE echoes the stream's ping events, so it has round trips too. (A
			// long-poll's gap is measured after answers, which an idle group gives every 25 s.)
			if tc.serverMeasure != "" {
				link := `fetch('/api/v1/groups/' + T.c.c.groupId, {headers: {Authorization: 'Bearer ' + T.c.c._token}}).then((r) => r.json()).then((s) => (s.links || {})[T.c.c.nodeId] || null)`
				want := fmt.Sprintf(`%s.then((l) => !!l && l.samples >= 1 && l.measure === %s && l.medianMs >= %d)`, link, jsString(tc.serverMeasure), 2*delay/time.Millisecond)
				for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
					var ok bool
					tb.eval(want, &ok)
					if ok {
						break
					}
					if time.Now().After(deadline) {
						var got any
						tb.eval(link, &got)
						t.Fatalf("the server's link of the node is %v, want %s round trips of at least %v", got, tc.serverMeasure, 2*delay)
					}
				}
			}
			tb.eval(`T.c.c.leave()`, nil)
			if errs := tb.consoleErrors(); len(errs) > 0 {
				t.Errorf("page logged errors: %v", errs)
			}
		})
	}
}
