package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/config"
	"meshbox/hub"
	"meshbox/netdelay"
)

// delay is what the test proxy adds each way: every slow round trip is at least twice that.
const delay = 200 * time.Millisecond

// snapshotLinks reads the group snapshot's link summaries with a member's token.
func snapshotLinks(c *client, j joined) map[string]hub.Link {
	var snap struct {
		Links map[string]hub.Link `json:"links"`
	}
	if st, raw := c.call("GET", "/api/v1/groups/"+j.Group.ID, j.Token, nil, &snap); st != http.StatusOK {
		c.t.Fatalf("snapshot: %d %s", st, raw)
	}
	return snap.Links
}

// TestLinkRTTFollowsInjectedDelay: real clients of every native transport, three of them
// behind a proxy adding 200 ms each way, one WebSocket direct. The snapshot's round trips of
// the delayed ones are at least the injected round trip and worse than the direct one's.
func TestLinkRTTFollowsInjectedDelay(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) { cfg.PingInterval = time.Second })
	slowBase := "http://" + netdelay.Start(t, strings.TrimPrefix(a.URL(), "http://"), delay)
	host := c.create("links")
	fast := c.join(host.Group.ID, "fast")
	wsSlow := c.join(host.Group.ID, "ws-slow")
	sseSlow := c.join(host.Group.ID, "sse-slow")
	pollSlow := c.join(host.Group.ID, "poll-slow")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for _, d := range []struct {
		base string
		j    joined
	}{{a.URL(), fast}, {slowBase, wsSlow}} {
		ws, _, err := dialWS(ctx, d.base, d.j, readerOpts{})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
		go func() { // read, so pings are answered
			for {
				if _, _, err := ws.Read(ctx); err != nil {
					return
				}
			}
		}()
	}

	// SSE: echo each ping event, as meshbox.js does.
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", slowBase+"/api/v1/groups/"+sseSlow.Group.ID+"/stream?token="+url.QueryEscape(sseSlow.Token), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		event := ""
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "ping":
				ts := strings.TrimSuffix(strings.TrimPrefix(line, `data: {"t":"`), `"}`)
				r, _ := http.NewRequestWithContext(ctx, "POST", slowBase+"/api/v1/groups/"+sseSlow.Group.ID+"/heartbeat?echo="+ts, nil)
				r.Header.Set("Authorization", "Bearer "+sseSlow.Token)
				go func() { // the echo does not hold up the stream
					if resp, err := http.DefaultClient.Do(r); err == nil {
						resp.Body.Close()
					}
				}()
			}
		}
	}()

	// Long-poll: poll again as soon as an answer arrives.
	go func() {
		since := pollSlow.Cursor
		for ctx.Err() == nil {
			r, _ := http.NewRequestWithContext(ctx, "GET", slowBase+"/api/v1/groups/"+pollSlow.Group.ID+"/events?wait=0.1&since="+itoa(since), nil)
			r.Header.Set("Authorization", "Bearer "+pollSlow.Token)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				return
			}
			var p page
			decodeJSON(resp, &p)
			since = p.Next
		}
	}()

	var links map[string]hub.Link
	eventually(t, 20*time.Second, "three samples of every link", func() bool {
		links = snapshotLinks(c, host)
		for _, j := range []joined{fast, wsSlow, sseSlow, pollSlow} {
			if links[j.Node.ID].Samples < 3 {
				return false
			}
		}
		return true
	})
	want := map[string]string{fast.Node.ID: "ws/ping", wsSlow.Node.ID: "ws/ping", sseSlow.Node.ID: "sse/echo", pollSlow.Node.ID: "longpoll/poll gap"}
	for id, w := range want {
		if got := links[id].Transport + "/" + links[id].Measure; got != w {
			t.Errorf("node %s measured as %s, want %s", id, got, w)
		}
	}
	minMS := float64(2 * delay / time.Millisecond)
	for _, j := range []joined{wsSlow, sseSlow, pollSlow} {
		l := links[j.Node.ID]
		if l.MedianMS < minMS {
			t.Errorf("%s: median %v ms, want at least the injected %v ms", l.Transport, l.MedianMS, minMS)
		}
		if l.MedianMS <= links[fast.Node.ID].MedianMS {
			t.Errorf("%s: median %v ms, not worse than the direct link's %v ms", l.Transport, l.MedianMS, links[fast.Node.ID].MedianMS)
		}
	}
	// The histogram has the round trips, without node labels.
	resp, err := http.Get(a.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	seen := map[string]bool{}
	for sc.Scan() {
		if l := sc.Text(); strings.HasPrefix(l, "meshbox_link_rtt_seconds_count{") && !strings.HasSuffix(l, " 0") {
			seen[l[strings.Index(l, `"`)+1:strings.LastIndex(l, `"`)]] = true
		}
	}
	for _, tr := range []string{"ws", "sse", "longpoll"} {
		if !seen[tr] {
			t.Errorf("/metrics: no round trips for %s", tr)
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func decodeJSON(resp *http.Response, v any) {
	defer resp.Body.Close()
	_ = json.NewDecoder(resp.Body).Decode(v)
}

// TestStalledSocketFlaggedBeforeDrop: a WebSocket reader that stops reading while items are
// pushed to it is flagged stalled in the snapshot while it is still connected; the pinger then
// drops it (its blocked write ends, which clears the flag, and the connection closes).
//
// The order is fixed by the ping schedule, not by timing the server: the reader stops right
// after a ping was answered (a sample appears), so the next tick finds its write blocked (and
// flags it) while no unanswered ping is out yet; only the ping sent at that tick can go
// unanswered, and it drops the socket one interval later. The reader's socket has a small
// receive buffer, so a few publishes block the server's write well within half an interval.
func TestStalledSocketFlaggedBeforeDrop(t *testing.T) {
	const every = 4 * time.Second
	a, c := newServer(t, func(cfg *config.Config) {
		cfg.PingInterval = every
		cfg.NodeByteRate = 0 // 16 MB of backlog from one node
	})
	host := c.create("stall")
	reader := c.join(host.Group.ID, "reader")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	smallBuffer := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			err = conn.(*net.TCPConn).SetReadBuffer(4 << 10)
		}
		return conn, err
	}}}
	ws, _, err := websocket.Dial(ctx, groupURL(wsBase(a.URL()), reader.Group.ID, "/ws?token="+url.QueryEscape(reader.Token)), &websocket.DialOptions{HTTPClient: smallBuffer})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ws.SetReadLimit(-1) // a frame of many large items
	var stop atomic.Bool
	stopped := make(chan struct{})
	go func() { // reads (answering pings) until told to stop; then the socket is left unread
		defer close(stopped)
		for !stop.Load() {
			if _, _, err := ws.Read(ctx); err != nil {
				return
			}
		}
	}()
	link := func() hub.Link { return snapshotLinks(c, host)[reader.Node.ID] }
	eventually(t, 4*every, "a first ping answered", func() bool { return link().Samples >= 1 })
	stop.Store(true)

	// Push large items: more than the kernel buffers between the two ends hold (a few MiB),
	// so the server's write to the reader blocks; the next tick flags it.
	payload := strings.Repeat("x", 16*1024)
	events := make([]map[string]string, 100)
	for i := range events {
		events[i] = map[string]string{"name": "big", "payload": payload}
	}
	for range 10 {
		if st, raw := c.call("POST", "/api/v1/groups/"+host.Group.ID+"/events", host.Token, map[string]any{"events": events}, nil); st != http.StatusOK {
			t.Fatalf("publish: %d %s", st, raw)
		}
	}
	var l hub.Link
	eventually(t, 4*every, "the reader flagged stalled", func() bool {
		if l = link(); l.Samples == 0 && !l.Stalled {
			t.Fatalf("the reader was dropped before it was flagged stalled")
		}
		return l.Stalled
	})
	<-stopped // the reader's goroutine has returned: nothing reads the socket
	if l.Transport != "ws" {
		t.Errorf("the stalled node's link is %+v, want transport ws", l)
	}

	// Then the pinger drops it: the socket is closed under the blocked write, whose end clears
	// the flag (nothing else could end it: the reader reads nothing).
	eventually(t, 4*every, "the stalled socket dropped", func() bool { return !link().Stalled })
}
