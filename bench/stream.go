package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// Transports a reader can use.
const (
	transportWS   = "ws"
	transportSSE  = "sse"
	transportPoll = "poll"
)

// item is the part of a stream item the tool looks at.
type item struct {
	Cursor  int64             `json:"cursor"`
	Kind    string            `json:"kind"`
	Payload string            `json:"payload"`
	Data    map[string]string `json:"data"`
}

// stamp builds a payload carrying the run id and the send time, padded to
// size bytes, so a reader can tell this run's items from others and compute
// latency without a shared clock service (the tool runs on the server's
// machine or one synced with it).
func stamp(run string, sent time.Time, size int) string {
	s := run + ":" + strconv.FormatInt(sent.UnixNano(), 10) + ":"
	if len(s) < size {
		s += strings.Repeat("x", size-len(s))
	}
	return s
}

// parseStamp returns the send time in a payload made by stamp for run.
func parseStamp(run, payload string) (time.Time, bool) {
	if len(payload) <= len(run) || payload[len(run)] != ':' || payload[:len(run)] != run {
		return time.Time{}, false
	}
	rest := payload[len(run)+1:]
	end := strings.IndexByte(rest, ':')
	if end < 0 {
		end = len(rest)
	}
	ns, err := strconv.ParseInt(rest[:end], 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	return time.Unix(0, ns), true
}

// streamStats are counters shared by all readers of a scenario.
type streamStats struct {
	latency    histogram
	frames     atomic.Int64 // messages (WS frames, SSE events, poll answers) read
	reconnects atomic.Int64
	resets     atomic.Int64 // truncation notices: items were purged before delivery
	errors     errorTally
}

// reader follows one group stream and checks what arrives.
type reader struct {
	run string
	m   member
	// base is the server this reader reads from (empty: the client's base).
	base     string
	track    tracker
	stats    *streamStats
	expected *atomic.Int64 // acked items of this run in the reader's group

	// ready is the group's cursor after setup (the last join); a reader
	// that has reached it has caught up with the backlog and is live, so
	// load starts only once the server has finished every catch-up read.
	ready   int64
	onReady func()
	isReady bool
}

// checkReady calls onReady once the reader has caught up with r.ready.
func (r *reader) checkReady(last int64) {
	if !r.isReady && last >= r.ready {
		r.isReady = true
		if r.onReady != nil {
			r.onReady()
		}
	}
}

// handle checks a batch of items received together at recv.
func (r *reader) handle(items []item, recv time.Time) {
	for i := range items {
		it := &items[i]
		sent, ours := r.sentAt(it)
		if r.track.observe(it.Cursor, ours) && ours {
			r.stats.latency.Record(recv.Sub(sent))
		}
	}
	r.checkReady(r.track.last)
}

// sentAt finds the send time stamped into an event payload or data value.
func (r *reader) sentAt(it *item) (time.Time, bool) {
	switch it.Kind {
	case "event":
		return parseStamp(r.run, it.Payload)
	case "data":
		for _, v := range it.Data {
			if t, ok := parseStamp(r.run, v); ok {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

// done reports whether the reader has every acked item of its group.
func (r *reader) done() bool { return r.track.matched.Load() >= r.expected.Load() }

// follow reads the stream over transport until ctx ends, reconnecting from
// the last cursor after a failure. connected is called once, when the first
// connection is established.
func (r *reader) follow(ctx context.Context, c *client, transport string, connected func()) {
	since := r.m.Cursor
	first := true
	onConnect := func() {
		if first {
			first = false
			connected()
			r.checkReady(r.m.Cursor)
		}
	}
	for ctx.Err() == nil {
		var err error
		switch transport {
		case transportWS:
			since, err = r.followWS(ctx, c, since, onConnect)
		case transportSSE:
			since, err = r.followSSE(ctx, c, since, onConnect)
		default:
			since, err = r.followPoll(ctx, c, since, onConnect)
		}
		if ctx.Err() != nil {
			return
		}
		r.stats.errors.add(err)
		r.stats.reconnects.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(retryAfter(err)):
		}
	}
}

// streamURL builds the URL of a group's stream endpoint.
func (c *client) streamURL(r *reader, endpoint string, since int64, extra string) string {
	base := r.base
	if base == "" {
		base = c.base
	}
	return base + "/api/v1/groups/" + url.PathEscape(r.m.Group) + "/" + endpoint +
		"?since=" + strconv.FormatInt(since, 10) + extra
}

// wsMessage is a server→client WebSocket message.
type wsMessage struct {
	Type  string `json:"type"`
	Items []item `json:"items"`
	Next  int64  `json:"next"`
}

// followWS reads items over a WebSocket until it fails; it returns the
// cursor to resume from.
func (r *reader) followWS(ctx context.Context, c *client, since int64, connected func()) (int64, error) {
	var dec decoder // one parser for the connection: no allocation per message
	u := "ws" + trimHTTP(c.streamURL(r, "ws", since, ""))
	if c.api == apiNtfy {
		u = "ws" + trimHTTP(c.ntfyStreamURL(r.m, "ws"))
	}
	conn, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: c.http,
		HTTPHeader: http.Header{"Authorization": {"Bearer " + r.m.Token}},
	})
	if err != nil {
		return since, fmt.Errorf("websocket dial: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20) // a reader that is behind gets large batches
	connected()
	// Reads get a context without a deadline (the library would arm a timer per read, which
	// would make the load generator, not the server, the bottleneck); ctx ends the
	// connection instead.
	stop := context.AfterFunc(ctx, func() { conn.CloseNow() })
	defer stop()
	var buf bytes.Buffer
	var msg wsMessage
	one := make([]item, 1)
	for {
		_, rd, err := conn.Reader(context.Background())
		if ctx.Err() != nil {
			return since, ctx.Err()
		}
		if err != nil {
			return since, fmt.Errorf("websocket read: %w", err)
		}
		buf.Reset()
		if _, err := buf.ReadFrom(rd); err != nil {
			return since, fmt.Errorf("websocket read: %w", err)
		}
		recv := time.Now()
		if c.api == apiNtfy {
			r.stats.frames.Add(1)
			if ok, err := ntfyItem(buf.Bytes(), &one[0]); err != nil {
				return since, err
			} else if ok {
				r.handle(one, recv)
			}
			continue
		}
		if err := dec.wsMessage(buf.Bytes(), &msg); err != nil {
			return since, fmt.Errorf("websocket message: %w", err)
		}
		r.stats.frames.Add(1)
		switch msg.Type {
		case "items":
			r.handle(msg.Items, recv)
			since = max(since, msg.Next, lastCursor(msg.Items))
		case "reset":
			r.stats.resets.Add(1)
		case "error":
			r.stats.errors.addCode("ws error message")
		}
	}
}

// followSSE reads items from a Server-Sent Events stream.
func (r *reader) followSSE(ctx context.Context, c *client, since int64, connected func()) (int64, error) {
	var dec decoder // one parser for the connection: no allocation per message
	u := c.streamURL(r, "stream", since, "")
	if c.api == apiNtfy {
		u = c.ntfyStreamURL(r.m, "sse")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return since, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+r.m.Token)
	resp, err := c.http.Do(req)
	if err != nil {
		return since, fmt.Errorf("sse connect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return since, fmt.Errorf("sse connect: %w", apiError(resp, b))
	}
	connected()
	sc := newSSEScanner(resp.Body)
	one := make([]item, 1)
	for {
		ev, err := sc.Next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF // the server ended a stream that should stay open
			}
			return since, fmt.Errorf("sse read: %w", err)
		}
		recv := time.Now()
		if ev.Event == "ping" {
			continue // meshbox's heartbeat (its time, for clients that echo it): no item
		}
		r.stats.frames.Add(1)
		if ev.Event == "reset" {
			r.stats.resets.Add(1)
			continue
		}
		if c.api == apiNtfy {
			if ok, err := ntfyItem(ev.Data, &one[0]); err != nil {
				return since, err
			} else if !ok {
				continue
			}
			r.handle(one, recv)
			continue
		}
		if err := dec.item(ev.Data, &one[0]); err != nil {
			return since, fmt.Errorf("sse item: %w", err)
		}
		r.handle(one, recv)
		since = max(since, one[0].Cursor)
	}
}

// pollAnswer is a long-poll answer.
type pollAnswer struct {
	Items     []item `json:"items"`
	Next      int64  `json:"next"`
	Truncated bool   `json:"truncated"`
}

// followPoll long-polls for items.
func (r *reader) followPoll(ctx context.Context, c *client, since int64, connected func()) (int64, error) {
	var dec decoder // one parser for the connection: no allocation per message
	connected()
	var buf bytes.Buffer
	var a pollAnswer
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.streamURL(r, "events", since, "&wait=25"), nil)
		if err != nil {
			return since, fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+r.m.Token)
		resp, err := c.http.Do(req)
		if err != nil {
			return since, fmt.Errorf("long-poll: %w", err)
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		if err != nil {
			return since, fmt.Errorf("long-poll read: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			return since, fmt.Errorf("long-poll: %w", apiError(resp, buf.Bytes()))
		}
		recv := time.Now()
		if err := dec.pollAnswer(buf.Bytes(), &a); err != nil {
			return since, fmt.Errorf("long-poll answer: %w", err)
		}
		r.stats.frames.Add(1)
		if a.Truncated {
			r.stats.resets.Add(1)
		}
		r.handle(a.Items, recv)
		since = max(since, a.Next, lastCursor(a.Items))
	}
}

// lastCursor returns the cursor of the last item, or 0.
func lastCursor(items []item) int64 {
	if len(items) == 0 {
		return 0
	}
	return items[len(items)-1].Cursor
}
