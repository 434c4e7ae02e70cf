package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
)

// The tests in this file drive real meshbox instances over loopback with real clients: the
// coder/websocket client, a Server-Sent Events reader written over net/http, and long-poll
// requests. Every transport is consumed through one type, stream, so a test can say "read the
// next item" without caring how it travels.

// unlimited lifts the per-node and per-IP rates, which a test's own load from one address
// would otherwise trip.
func unlimited(c *config.Config) {
	c.PublishRate = 0
	c.NodeByteRate = 0
	c.IPRate = 0
	c.NodeRate = 0
	c.GroupRate = 0
}

// Transports, as the hub names them in presence.
const (
	trWS  = "ws"
	trSSE = "sse"
	trLP  = "longpoll"
)

var allTransports = []string{trWS, trSSE, trLP}

// kindReset is the pseudo item a stream yields for a truncation notice: the SSE reset event,
// the WebSocket reset message, or a long-poll page with truncated:true.
const kindReset = "reset"

// kindShutdown is the pseudo item of the SSE shutdown event.
const kindShutdown = "shutdown"

// kindGone is the pseudo item of the SSE gone event and of a long-poll page that says gone
// (its Reason is the leave's).
const kindGone = "gone"

var (
	errTimeout = errors.New("no item in time")
	errEnded   = errors.New("stream ended")
	// errGone is a long-poll answered 410: the group has ended.
	errGone = errors.New("group gone (410)")
	// errUnauthorized is a long-poll answered 401: the token matches no member.
	errUnauthorized = errors.New("unauthorized (401)")
)

// got is one thing a stream yields: an item, or the error that ended the stream.
type got struct {
	it  item
	err error
}

// streamBuffer is how many items a stream reads ahead of its consumer: enough that a test
// reading one stream after another never stalls the others (a long-poll reader that stops
// polling would lapse), few enough that a consumer that stops taking items soon stops the
// transport too.
const streamBuffer = 1024

// stream is one open reader of a group, consumed an item at a time. A goroutine reads the
// transport and hands items over a buffered channel.
type stream struct {
	transport string
	ch        chan got
	acks      chan wsFrame // WebSocket only: ack and error replies
	ws        *websocket.Conn
	cancel    context.CancelFunc
	done      chan struct{}
}

// next returns the next item, errEnded after the stream's final error was taken, or
// errTimeout when nothing arrives within d.
func (s *stream) next(d time.Duration) (item, error) {
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case g, ok := <-s.ch:
		if !ok {
			return item{}, errEnded
		}
		return g.it, g.err
	case <-tm.C:
		return item{}, errTimeout
	}
}

// mustNext is next for the test goroutine: any error fails the test.
func (s *stream) mustNext(t testing.TB, d time.Duration) item {
	t.Helper()
	it, err := s.next(d)
	if err != nil {
		t.Fatalf("%s: next item: %v", s.transport, err)
	}
	return it
}

// close disconnects abruptly (no close handshake) and waits for the reading goroutine.
func (s *stream) close() {
	s.cancel()
	if s.ws != nil {
		s.ws.CloseNow()
	}
	<-s.done
}

// run starts the reading goroutine; read returns the error that ended the transport.
func (s *stream) run(ctx context.Context, read func(emit func(got) bool) error) {
	go func() {
		defer close(s.done)
		defer close(s.ch)
		emit := func(g got) bool {
			select {
			case s.ch <- g:
				return true
			case <-ctx.Done():
				return false
			}
		}
		if err := read(emit); err != nil && ctx.Err() == nil {
			emit(got{err: err})
		}
	}()
}

// readerOpts say how a stream authenticates and where it starts.
type readerOpts struct {
	since       string // cursor to read after; "" means from now
	queryToken  bool   // ?token= instead of the Authorization header
	lastEventID string // SSE: Last-Event-ID header
	wait        string // long-poll wait in seconds; default 5
	// acksOnly makes a WebSocket stream drop pushed items, for a writer that only wants its
	// acknowledgements.
	acksOnly bool
	// from is the loopback address the stream connects from ("" for the default), so a
	// hostile pupil's laptop is told apart from its classmates'.
	from string
}

// httpFrom is an HTTP client whose connections come from the loopback address ip (Linux
// routes all of 127/8 to lo); "" is http.DefaultClient.
func httpFrom(ip string) *http.Client {
	if ip == "" {
		return http.DefaultClient
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
}

func streamQuery(tok string, o readerOpts) (url.Values, http.Header) {
	q, h := url.Values{}, http.Header{}
	if o.since != "" {
		q.Set("since", o.since)
	}
	if o.queryToken {
		q.Set("token", tok)
	} else {
		h.Set("Authorization", "Bearer "+tok)
	}
	return q, h
}

func cur(c int64) string { return strconv.FormatInt(c, 10) }

func groupURL(base, gid, tail string) string { return base + "/api/v1/groups/" + gid + tail }

func wsBase(base string) string { return "ws" + strings.TrimPrefix(base, "http") }

// openStream opens a reader of j's group over transport tr.
func openStream(t testing.TB, base, tr string, j joined, o readerOpts) *stream {
	t.Helper()
	switch tr {
	case trWS:
		return openWS(t, base, j, o)
	case trSSE:
		return openSSE(t, base, j, o)
	case trLP:
		return openLP(t, base, j, o)
	}
	t.Fatalf("unknown transport %q", tr)
	return nil
}

// wsFrame is any message of the server on a WebSocket.
type wsFrame struct {
	Type    string          `json:"type"`
	ID      json.RawMessage `json:"id"`
	Items   []item          `json:"items"`
	Next    int64           `json:"next"`
	Cursors []int64         `json:"cursors"`
	Error   *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func dialWS(ctx context.Context, base string, j joined, o readerOpts) (*websocket.Conn, *http.Response, error) {
	q, h := streamQuery(j.Token, o)
	c, resp, err := websocket.Dial(ctx, groupURL(wsBase(base), j.Group.ID, "/ws?"+q.Encode()), &websocket.DialOptions{HTTPHeader: h, HTTPClient: httpFrom(o.from)})
	if err != nil {
		return nil, resp, err
	}
	// A reader that is behind gets up to a thousand items in one frame.
	c.SetReadLimit(-1)
	return c, resp, nil
}

func openWS(t testing.TB, base string, j joined, o readerOpts) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c, _, err := dialWS(ctx, base, j, o)
	if err != nil {
		cancel()
		t.Fatalf("dial WebSocket: %v", err)
	}
	s := &stream{transport: trWS, ch: make(chan got, streamBuffer), acks: make(chan wsFrame, 256), ws: c, cancel: cancel, done: make(chan struct{})}
	s.run(ctx, func(emit func(got) bool) error {
		for {
			typ, data, err := c.Read(ctx)
			if err != nil {
				return err
			}
			if typ != websocket.MessageText {
				return fmt.Errorf("server sent a %v frame", typ)
			}
			var f wsFrame
			if err := json.Unmarshal(data, &f); err != nil {
				return fmt.Errorf("decode frame %.200s: %w", data, err)
			}
			switch f.Type {
			case "items":
				if len(f.Items) == 0 || f.Next != f.Items[len(f.Items)-1].Cursor {
					return fmt.Errorf("items frame with next %d that is not its last cursor: %.200s", f.Next, data)
				}
				if o.acksOnly {
					continue
				}
				for _, it := range f.Items {
					if !emit(got{it: it}) {
						return nil
					}
				}
			case "reset":
				if !emit(got{it: item{Kind: kindReset, Cursor: f.Next}}) {
					return nil
				}
			case "ack", "error":
				select {
				case s.acks <- f:
				case <-ctx.Done():
					return nil
				}
			default:
				return fmt.Errorf("unknown frame %.200s", data)
			}
		}
	})
	return s
}

// send writes one client message on a WebSocket stream.
func (s *stream) send(t testing.TB, msg string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatalf("WebSocket write: %v", err)
	}
}

// reply waits for the next ack or error on a WebSocket stream.
func (s *stream) reply(t testing.TB) wsFrame {
	t.Helper()
	select {
	case f := <-s.acks:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no WebSocket reply within 5s")
	}
	return wsFrame{}
}

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	id, event, data, retry string
	hasID                  bool
}

// readSSE parses an event stream, calling on for every event and counting comment lines;
// it returns when on returns false or the stream ends (io.EOF on a clean end).
func readSSE(r io.Reader, on func(sseEvent) bool, comments *int) error {
	br := bufio.NewReader(r)
	var ev sseEvent
	var data []string
	fields := false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			if fields {
				ev.data = strings.Join(data, "\n")
				if !on(ev) {
					return nil
				}
			}
			ev, data, fields = sseEvent{}, nil, false
			continue
		}
		if strings.HasPrefix(line, ":") {
			if comments != nil {
				*comments++
			}
			continue
		}
		name, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		fields = true
		switch name {
		case "id":
			ev.id, ev.hasID = value, true
		case "event":
			ev.event = value
		case "data":
			data = append(data, value)
		case "retry":
			ev.retry = value
		}
	}
}

// sseRequest opens an event stream and returns the response (status unchecked).
func sseRequest(ctx context.Context, base string, j joined, o readerOpts) (*http.Response, error) {
	q, h := streamQuery(j.Token, o)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, groupURL(base, j.Group.ID, "/stream?"+q.Encode()), nil)
	if err != nil {
		return nil, err
	}
	req.Header = h
	req.Header.Set("Accept", "text/event-stream")
	if o.lastEventID != "" {
		req.Header.Set("Last-Event-ID", o.lastEventID)
	}
	return httpFrom(o.from).Do(req)
}

func openSSE(t testing.TB, base string, j joined, o readerOpts) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	resp, err := sseRequest(ctx, base, j, o)
	if err != nil {
		cancel()
		t.Fatalf("open SSE: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		t.Fatalf("open SSE: %d %s", resp.StatusCode, body)
	}
	s := &stream{transport: trSSE, ch: make(chan got, streamBuffer), cancel: cancel, done: make(chan struct{})}
	s.run(ctx, func(emit func(got) bool) error {
		defer resp.Body.Close()
		var bad error
		err := readSSE(resp.Body, func(ev sseEvent) bool {
			switch ev.event {
			case kindReset, kindShutdown:
				return emit(got{it: item{Kind: ev.event}})
			case kindGone:
				var g struct{ Type, Reason string }
				if err := json.Unmarshal([]byte(ev.data), &g); err != nil || g.Type != kindGone {
					bad = fmt.Errorf("SSE gone event %q", ev.data)
					return false
				}
				return emit(got{it: item{Kind: kindGone, Reason: g.Reason}})
			case "":
				return true // only a retry hint
			}
			var it item
			if err := json.Unmarshal([]byte(ev.data), &it); err != nil {
				bad = fmt.Errorf("decode SSE data %.200q: %w", ev.data, err)
				return false
			}
			if !ev.hasID || ev.id != cur(it.Cursor) || ev.event != it.Kind {
				bad = fmt.Errorf("SSE event id %q event %q for item %d of kind %s", ev.id, ev.event, it.Cursor, it.Kind)
				return false
			}
			return emit(got{it: it})
		}, nil)
		if bad != nil {
			return bad
		}
		if errors.Is(err, io.EOF) {
			return errEnded
		}
		return err
	})
	return s
}

// pollOnce sends one long-poll request.
func pollOnce(ctx context.Context, base string, j joined, since, wait string) (int, page, []byte, error) {
	return pollOnceWith(ctx, http.DefaultClient, base, j, since, wait)
}

// pollOnceWith is pollOnce with a client of the caller's (its own connection pool).
func pollOnceWith(ctx context.Context, hc *http.Client, base string, j joined, since, wait string) (int, page, []byte, error) {
	q := url.Values{}
	if since != "" {
		q.Set("since", since)
	}
	if wait != "" {
		q.Set("wait", wait)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, groupURL(base, j.Group.ID, "/events?"+q.Encode()), nil)
	if err != nil {
		return 0, page{}, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+j.Token)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, page{}, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, page{}, nil, err
	}
	var p page
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(raw, &p); err != nil {
			return 0, page{}, raw, fmt.Errorf("decode page %.200s: %w", raw, err)
		}
	}
	return resp.StatusCode, p, raw, nil
}

// openLP follows a group by long-polling, each request after the previous page's next.
func openLP(t testing.TB, base string, j joined, o readerOpts) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &stream{transport: trLP, ch: make(chan got, streamBuffer), cancel: cancel, done: make(chan struct{})}
	hc := httpFrom(o.from)
	wait := o.wait
	if wait == "" {
		wait = "5"
	}
	since := o.since
	if since == "" {
		// "From now" is the cursor of the first answer; ask for it without waiting, as a
		// client would, so items committed after openLP returns are not missed.
		st, p, raw, err := pollOnceWith(ctx, hc, base, j, "", "0")
		if err != nil || st != http.StatusOK {
			cancel()
			t.Fatalf("first long-poll: %d %s %v", st, raw, err)
		}
		since = cur(p.Next)
	}
	s.run(ctx, func(emit func(got) bool) error {
		for {
			st, p, raw, err := pollOnceWith(ctx, hc, base, j, since, wait)
			if err != nil {
				return err
			}
			switch st {
			case http.StatusOK:
			case http.StatusGone:
				return errGone
			case http.StatusUnauthorized:
				return errUnauthorized
			default:
				return fmt.Errorf("long-poll: %d %s", st, raw)
			}
			if p.Truncated && !emit(got{it: item{Kind: kindReset, Cursor: p.Next}}) {
				return nil
			}
			for _, it := range p.Items {
				if !emit(got{it: it}) {
					return nil
				}
			}
			if p.Gone != "" && !emit(got{it: item{Kind: kindGone, Reason: p.Gone}}) {
				return nil
			}
			if n := len(p.Items); n > 0 && p.Next != p.Items[n-1].Cursor {
				return fmt.Errorf("page next %d is not its last cursor %d", p.Next, p.Items[n-1].Cursor)
			}
			since = cur(p.Next)
		}
	})
	return s
}

// evIn is an event as a client publishes it.
type evIn struct {
	Name    string `json:"name"`
	Payload string `json:"payload"`
}

func events(names ...string) []evIn {
	out := make([]evIn, len(names))
	for i, n := range names {
		out[i] = evIn{Name: n, Payload: "p-" + n}
	}
	return out
}

// postEvents publishes over HTTP; unlike client.publish it may run on any goroutine.
func postEvents(ctx context.Context, base string, j joined, evs []evIn) ([]int64, error) {
	body, err := json.Marshal(map[string]any{"events": evs})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, groupURL(base, j.Group.ID, "/events"), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+j.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("publish: %d %s", resp.StatusCode, raw)
	}
	var out struct {
		Cursors []int64 `json:"cursors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decode ack %s: %w", raw, err)
	}
	if len(out.Cursors) != len(evs) {
		return nil, fmt.Errorf("ack of %d events has %d cursors", len(evs), len(out.Cursors))
	}
	return out.Cursors, nil
}

// eventually retries cond until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// hasTransport reports whether the hub counts node nid of gid as present over tr.
func hasTransport(transports map[string][]string, nid, tr string) bool {
	for _, x := range transports[nid] {
		if x == tr {
			return true
		}
	}
	return false
}

// cursorsOf returns the cursors of items.
func cursorsOf(items []item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.Cursor
	}
	return out
}

// TestStreamsAgreeUnderConcurrentWriters has three readers of one group, one per transport,
// read while HTTP and WebSocket writers publish concurrently: each must see every
// acknowledged event exactly once, in cursor order, with its name and payload.
func TestStreamsAgreeUnderConcurrentWriters(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("agree")
	gid := host.Group.ID
	const httpWriters, wsWriters, publishes = 4, 2, 25
	var writers []joined
	for i := range httpWriters + wsWriters {
		writers = append(writers, c.join(gid, fmt.Sprintf("w%d", i)))
	}
	readers := map[string]joined{}
	for _, tr := range allTransports {
		readers[tr] = c.join(gid, "reader-"+tr)
	}
	since := cur(a.Store.LastCursor())
	streams := map[string]*stream{}
	for _, tr := range allTransports {
		streams[tr] = openStream(t, a.URL(), tr, readers[tr], readerOpts{since: since})
		defer streams[tr].close()
	}

	type ack struct {
		writer  int
		names   []string
		cursors []int64
		err     error
	}
	acks := make(chan ack, (httpWriters+wsWriters)*publishes)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := make(chan struct{})
	for w := range httpWriters {
		go func() {
			<-start
			for p := range publishes {
				var names []string
				for e := range 1 + (w+p)%3 {
					names = append(names, fmt.Sprintf("h%d-%d-%d", w, p, e))
				}
				cursors, err := postEvents(ctx, a.URL(), writers[w], events(names...))
				acks <- ack{writer: w, names: names, cursors: cursors, err: err}
			}
		}()
	}
	for w := httpWriters; w < httpWriters+wsWriters; w++ {
		s := openWS(t, a.URL(), writers[w], readerOpts{acksOnly: true})
		defer s.close()
		go func() {
			<-start
			for p := range publishes {
				var names []string
				for e := range 1 + (w+p)%4 {
					names = append(names, fmt.Sprintf("ws%d-%d-%d", w, p, e))
				}
				msg, _ := json.Marshal(map[string]any{"type": "publish", "id": p, "events": events(names...)})
				if err := s.ws.Write(ctx, websocket.MessageText, msg); err != nil {
					acks <- ack{writer: w, err: err}
					continue
				}
				select {
				case f := <-s.acks:
					if f.Type != "ack" || string(f.ID) != strconv.Itoa(p) || len(f.Cursors) != len(names) {
						acks <- ack{writer: w, err: fmt.Errorf("reply to publish %d: %+v", p, f)}
						continue
					}
					acks <- ack{writer: w, names: names, cursors: f.Cursors}
				case <-ctx.Done():
					acks <- ack{writer: w, err: ctx.Err()}
				}
			}
		}()
	}
	close(start)

	want := map[int64]string{} // cursor → event name
	lastOf := map[int]int64{}
	for range (httpWriters + wsWriters) * publishes {
		k := <-acks
		if k.err != nil {
			t.Fatalf("writer %d: %v", k.writer, k.err)
		}
		for i, cu := range k.cursors {
			if _, dup := want[cu]; dup {
				t.Fatalf("cursor %d acknowledged twice", cu)
			}
			if cu <= lastOf[k.writer] {
				t.Fatalf("writer %d: cursor %d after %d", k.writer, cu, lastOf[k.writer])
			}
			lastOf[k.writer] = cu
			want[cu] = k.names[i]
		}
	}

	for _, tr := range allTransports {
		s := streams[tr]
		var prev int64
		for range len(want) {
			it := s.mustNext(t, 10*time.Second)
			name, ok := want[it.Cursor]
			switch {
			case it.Cursor <= prev:
				t.Fatalf("%s: cursor %d after %d (repeat or out of order)", tr, it.Cursor, prev)
			case !ok:
				t.Fatalf("%s: item %d (%s %q) was never acknowledged", tr, it.Cursor, it.Kind, it.Name)
			case it.Kind != "event" || it.Name != name || it.Payload == nil || *it.Payload != "p-"+name:
				t.Fatalf("%s: item %d is %+v, want event %q", tr, it.Cursor, it, name)
			}
			prev = it.Cursor
		}
		if it, err := s.next(100 * time.Millisecond); !errors.Is(err, errTimeout) {
			t.Fatalf("%s: an item beyond the %d published: %+v %v", tr, len(want), it, err)
		}
	}
}

// TestLongPoll covers the life of one long-poll request.
func TestLongPoll(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("lp")
	gid := host.Group.ID
	reader := c.join(gid, "reader")
	ctx := context.Background()

	t.Run("backlog returns at once", func(t *testing.T) {
		since := a.Store.LastCursor()
		cursors := c.publish(host, "a", "b", "c")
		began := time.Now()
		st, p, raw, err := pollOnce(ctx, a.URL(), reader, cur(since), "20")
		if err != nil || st != http.StatusOK {
			t.Fatalf("poll: %d %s %v", st, raw, err)
		}
		if took := time.Since(began); took > 5*time.Second {
			t.Fatalf("a poll with backlog took %v", took)
		}
		if got := cursorsOf(p.Items); fmt.Sprint(got) != fmt.Sprint(cursors) || p.Next != cursors[2] || p.Truncated {
			t.Fatalf("page %s, want cursors %v", raw, cursors)
		}
	})

	t.Run("waits and wakes on a new item", func(t *testing.T) {
		since := a.Store.LastCursor()
		type res struct {
			st  int
			p   page
			err error
			at  time.Time
		}
		done := make(chan res, 1)
		go func() {
			st, p, _, err := pollOnce(ctx, a.URL(), reader, cur(since), "20")
			done <- res{st, p, err, time.Now()}
		}()
		eventually(t, 5*time.Second, "the long-poll never started waiting", func() bool {
			return hasTransport(a.Hub.Transports(gid), reader.Node.ID, trLP)
		})
		select {
		case r := <-done:
			t.Fatalf("the long-poll returned before any item: %+v", r)
		case <-time.After(150 * time.Millisecond):
		}
		published := time.Now()
		cursors := c.publish(host, "wake")
		r := <-done
		if r.err != nil || r.st != http.StatusOK {
			t.Fatalf("poll: %d %v", r.st, r.err)
		}
		if fmt.Sprint(cursorsOf(r.p.Items)) != fmt.Sprint(cursors) || r.p.Items[0].Name != "wake" {
			t.Fatalf("woke with %+v, want %v", r.p, cursors)
		}
		if woke := r.at.Sub(published); woke > 5*time.Second {
			t.Fatalf("woke %v after the publish", woke)
		}
	})

	t.Run("times out empty", func(t *testing.T) {
		since := a.Store.LastCursor()
		began := time.Now()
		st, p, raw, err := pollOnce(ctx, a.URL(), reader, cur(since), "0.3")
		took := time.Since(began)
		if err != nil || st != http.StatusOK {
			t.Fatalf("poll: %d %s %v", st, raw, err)
		}
		if len(p.Items) != 0 || p.Next != since || p.Truncated {
			t.Fatalf("timed-out page %s, want no items and next %d", raw, since)
		}
		if took < 300*time.Millisecond || took > 5*time.Second {
			t.Fatalf("wait=0.3 took %v", took)
		}
	})

	t.Run("wait is capped", func(t *testing.T) {
		a, c := newServer(t, func(c *config.Config) { c.MaxWait = 200 * time.Millisecond })
		host := c.create("cap")
		began := time.Now()
		st, p, raw, err := pollOnce(ctx, a.URL(), host, cur(a.Store.LastCursor()), "30")
		if took := time.Since(began); err != nil || st != http.StatusOK || len(p.Items) != 0 || took > 5*time.Second {
			t.Fatalf("wait=30 capped at 200ms: %d %s %v after %v", st, raw, err, took)
		}
	})

	t.Run("ends when the client cancels", func(t *testing.T) {
		since := a.Store.LastCursor()
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() {
			_, _, _, err := pollOnce(cctx, a.URL(), reader, cur(since), "20")
			done <- err
		}()
		eventually(t, 5*time.Second, "the long-poll never started waiting", func() bool {
			return hasTransport(a.Hub.Transports(gid), reader.Node.ID, trLP)
		})
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled poll: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the cancelled poll did not return")
		}
		// The server side ends too: the reader no longer counts as present.
		eventually(t, 5*time.Second, "the server kept the cancelled long-poll open", func() bool {
			return !hasTransport(a.Hub.Transports(gid), reader.Node.ID, trLP)
		})
	})

	t.Run("bad input", func(t *testing.T) {
		for _, q := range []string{"since=x", "since=-1", "wait=-1", "wait=abc", "limit=0", "since=" + cur(a.Store.LastCursor()+1000)} {
			st, raw := c.call("GET", "/api/v1/groups/"+gid+"/events?"+q, reader.Token, nil, nil)
			if st != http.StatusBadRequest {
				t.Errorf("%s: %d %s, want 400", q, st, raw)
			}
		}
	})
}

// testSeed is the seed of a randomized test: $MESHBOX_TEST_SEED when set, else the clock. It
// is logged when the test fails, so the failing run can be repeated.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("MESHBOX_TEST_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("MESHBOX_TEST_SEED: %v", err)
		}
		seed = s
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d: rerun with MESHBOX_TEST_SEED=%d", seed, seed)
		}
	})
	return seed
}

// TestResumeAcrossTransportsProperty is a property test: over random interleavings of
// publishes (before the reader connects and while it reads) and disconnects (after a random
// number of items, with or without a close handshake, sometimes before anything arrived), a
// reader that resumes from the cursor of the last item it processed, each time over a
// different transport chosen at random, gets every item exactly once and in order.
func TestResumeAcrossTransportsProperty(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	rounds := 300
	if testing.Short() {
		rounds = 60
	}
	a, c := newServer(t, unlimited)
	host := c.create("resume")
	reader := c.join(host.Group.ID, "reader")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		acked    []int64 // every acknowledged cursor, in ack order per round
		names    = map[int64]string{}
		received []int64 // what the reader processed, in order
		gotNames = map[int64]string{}
		cursor   = reader.Cursor // the reader's resume point
		tr       = allTransports[rng.IntN(3)]
		seq      int
		used     = map[string]int{}
	)
	publish := func(n int) ([]int64, []string, error) {
		var ns []string
		for range n {
			seq++
			ns = append(ns, "e"+strconv.Itoa(seq))
		}
		cs, err := postEvents(ctx, a.URL(), host, events(ns...))
		return cs, ns, err
	}
	// plan splits n events into publishes of 1-3 events.
	plan := func(n int) []int {
		var out []int
		for n > 0 {
			k := min(n, 1+rng.IntN(3))
			out = append(out, k)
			n -= k
		}
		return out
	}
	record := func(cs []int64, ns []string) {
		for i, cu := range cs {
			acked = append(acked, cu)
			names[cu] = ns[i]
		}
	}
	consume := func(s *stream, round, n int) {
		for range n {
			it, err := s.next(5 * time.Second)
			if err != nil {
				t.Fatalf("round %d (%s, resumed after %d): %v", round, s.transport, cursor, err)
			}
			if it.Kind != "event" || it.Cursor <= cursor {
				t.Fatalf("round %d (%s, resumed after %d): got %+v", round, s.transport, cursor, it)
			}
			received = append(received, it.Cursor)
			gotNames[it.Cursor] = it.Name
			cursor = it.Cursor
		}
	}

	for round := range rounds {
		// A different transport from the last one, chosen at random.
		others := make([]string, 0, 2)
		for _, x := range allTransports {
			if x != tr {
				others = append(others, x)
			}
		}
		tr = others[rng.IntN(2)]
		used[tr]++

		for _, n := range plan(rng.IntN(4)) { // published while the reader is away
			cs, ns, err := publish(n)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			record(cs, ns)
		}
		during := plan(rng.IntN(5)) // published while it reads
		total := len(acked)
		for _, n := range during {
			total += n
		}
		// Items to process before disconnecting: none, some, or all there will be.
		take := min(total-len(received), rng.IntN(6))
		o := readerOpts{since: cur(cursor), queryToken: rng.IntN(2) == 0, wait: "2"}
		if tr == trSSE && rng.IntN(2) == 0 {
			o.lastEventID, o.since = o.since, "" // as EventSource reconnects
		}
		s := openStream(t, a.URL(), tr, reader, o)
		type pub struct {
			cs  []int64
			ns  []string
			err error
		}
		pubs := make(chan pub, len(during))
		go func() {
			for _, n := range during {
				cs, ns, err := publish(n)
				pubs <- pub{cs, ns, err}
			}
			close(pubs)
		}()
		consume(s, round, take)
		if rng.IntN(2) == 0 && s.ws != nil {
			s.ws.Close(websocket.StatusNormalClosure, "")
		}
		if rng.IntN(3) == 0 {
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
		}
		s.close()
		for p := range pubs {
			if p.err != nil {
				t.Fatalf("round %d: %v", round, p.err)
			}
			record(p.cs, p.ns)
		}
	}
	// Finally catch up on whatever is left.
	s := openStream(t, a.URL(), allTransports[rng.IntN(3)], reader, readerOpts{since: cur(cursor)})
	consume(s, rounds, len(acked)-len(received))
	s.close()

	slices.Sort(acked)
	if !slices.Equal(received, acked) {
		t.Fatalf("received %d items %v\nwant %d %v", len(received), received, len(acked), acked)
	}
	for _, cu := range received {
		if gotNames[cu] != names[cu] {
			t.Fatalf("item %d is named %q, published as %q", cu, gotNames[cu], names[cu])
		}
	}
	t.Logf("%d rounds, %d items, transports %v", rounds, len(acked), used)
}

// readWSItems reads items frames from c, processing items one at a time, until want items
// were processed; it returns the cursors processed (an item past want in the last frame is
// left unprocessed, as a client that stops mid-frame would).
func readWSItems(ctx context.Context, c *websocket.Conn, after int64, want int) ([]int64, error) {
	var out []int64
	for len(out) < want {
		_, data, err := c.Read(ctx)
		if err != nil {
			return out, fmt.Errorf("after %d items: %w", len(out), err)
		}
		var f wsFrame
		if err := json.Unmarshal(data, &f); err != nil {
			return out, fmt.Errorf("decode frame: %w", err)
		}
		if f.Type != "items" {
			return out, fmt.Errorf("unexpected %s frame", f.Type)
		}
		for _, it := range f.Items {
			if len(out) == want {
				break
			}
			if it.Cursor <= after {
				return out, fmt.Errorf("cursor %d after %d", it.Cursor, after)
			}
			after = it.Cursor
			out = append(out, it.Cursor)
		}
	}
	return out, nil
}

// maxFrameRead is the most a reader's one read from behind the tail carries (the rules'
// MaxReadBytes, 256 KiB), plus one item (a read returns at least one).
const maxFrameRead = 256<<10 + 64<<10

// assertReadsBounded checks, the way every transport reads, that a reader at since is handed
// a bounded batch, whatever its backlog: what a stalled reader holds is one such batch. It is
// the memory property the stuck-reader tests are about, checked without measuring the heap,
// which a busy machine makes noisy.
func assertReadsBounded(t *testing.T, a *app.App, gid string, since int64) {
	t.Helper()
	sub := a.Hub.Subscribe(gid, "", "test")
	defer sub.Close()
	b, err := sub.Read(context.Background(), since, 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, it := range b.Items {
		n += len(it.JSON)
	}
	if len(b.Items) == 0 || n > maxFrameRead {
		t.Fatalf("a read from behind the tail carries %d items, %d KiB; want some, at most %d KiB", len(b.Items), n>>10, maxFrameRead>>10)
	}
}

// dialSmallWindow dials a WebSocket whose TCP connection buffers little: the client
// advertises a small receive window and MSS, so the kernel on both sides holds only tens of
// KiB for a reader that stops reading, and the server's writer blocks soon after.
func dialSmallWindow(ctx context.Context, base string, j joined, o readerOpts) (*websocket.Conn, error) {
	dialer := &net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = errors.Join(
				syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_MAXSEG, 1024),
				syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096))
		})
		return errors.Join(err, serr)
	}}
	q, h := streamQuery(j.Token, o)
	c, _, err := websocket.Dial(ctx, groupURL(wsBase(base), j.Group.ID, "/ws?"+q.Encode()), &websocket.DialOptions{
		HTTPHeader: h, HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
	})
	if err != nil {
		return nil, err
	}
	c.SetReadLimit(-1)
	return c, nil
}

// TestStuckReadersHoldNoWorker: readers that read nothing never hold up the others.
// Deliveries run on a few workers (one per CPU) that never wait for a client: with more
// stuck readers than workers (WebSocket and SSE), each behind a backlog bigger than its
// socket buffers, a healthy reader on each transport still gets every new item at once, and
// /metrics counts the stuck readers' slow writes.
func TestStuckReadersHoldNoWorker(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) {
		unlimited(cfg)
		cfg.PingInterval = time.Hour // the stuck readers stay connected for the whole test
	})
	host := c.create("stuck-many")
	gid := host.Group.ID
	writer := c.join(gid, "writer")
	start := a.Store.LastCursor()
	// A backlog bigger than the server's socket send buffer grows to (tcp_wmem's maximum) and
	// the stuck clients' 4 KiB windows, in publishes of 768 KiB.
	payload := strings.Repeat("x", 12<<10)
	evs := make([]evIn, 64)
	for i := range evs {
		evs[i] = evIn{Name: "backlog", Payload: payload}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range maxSendBuffer()/(768<<10) + 3 {
		if _, err := postEvents(ctx, a.URL(), writer, evs); err != nil {
			t.Fatal(err)
		}
	}

	nWS := runtime.GOMAXPROCS(0) + 2
	for i := range nWS {
		ws, err := dialSmallWindow(ctx, a.URL(), c.join(gid, "stuck-ws-"+strconv.Itoa(i)), readerOpts{since: cur(start)})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.CloseNow()
	}
	sse := dialSmallWindowSSE(t, a.URL(), c.join(gid, "stuck-sse"), start)
	defer sse.Close()
	eventually(t, 30*time.Second, "the stuck readers' writes were never left unfinished", func() bool {
		return metricValue(t, a.URL(), `meshbox_slow_writes_total{transport="ws"}`) >= float64(nWS) &&
			metricValue(t, a.URL(), `meshbox_slow_writes_total{transport="sse"}`) >= 1
	})

	hWS, hSSE := c.join(gid, "healthy-ws"), c.join(gid, "healthy-sse")
	now := cur(a.Store.LastCursor())
	healthy := []*stream{
		openWS(t, a.URL(), hWS, readerOpts{since: now}),
		openSSE(t, a.URL(), hSSE, readerOpts{since: now}),
	}
	for _, h := range healthy {
		defer h.close()
	}
	for i := range 5 {
		cs, err := postEvents(ctx, a.URL(), writer, []evIn{{Name: "new-" + strconv.Itoa(i)}})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range healthy {
			it, err := h.next(10 * time.Second)
			if err != nil || it.Cursor != cs[0] {
				t.Fatalf("%s: item %+v (%v), want cursor %d while %d readers are stuck", h.transport, it, err, cs[0], nWS+1)
			}
		}
	}
}

// maxSendBuffer is the most a TCP socket's send buffer grows to here (tcp_wmem's maximum;
// Linux's default, 4 MiB, where it cannot be read).
func maxSendBuffer() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_wmem")
	if f := strings.Fields(string(b)); err == nil && len(f) == 3 {
		if n, err := strconv.Atoi(f[2]); err == nil {
			return n
		}
	}
	return 4 << 20
}

// dialSmallWindowSSE opens an SSE stream after since with a 4 KiB receive window and never
// reads it.
func dialSmallWindowSSE(t *testing.T, base string, j joined, since int64) net.Conn {
	t.Helper()
	dialer := &net.Dialer{Control: func(network, address string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := dialer.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	req := "GET /api/v1/groups/" + j.Group.ID + "/stream?since=" + cur(since) + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAuthorization: Bearer " + j.Token + "\r\nAccept: text/event-stream\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	return nc
}

// metricValue is the value of one series on /metrics (0 when absent).
func metricValue(t *testing.T, base, series string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

// TestStuckWebSocketReader has one WebSocket reader stop reading while thousands of events
// are published. The other readers (WebSocket and SSE) must keep getting every item promptly,
// the server's heap must stay flat while the stuck reader's backlog grows by megabytes, and the
// stuck reader must afterwards get every item exactly once, in order, including after dropping
// its connection and resuming by cursor.
func TestStuckWebSocketReader(t *testing.T) {
	const (
		tailItems   = 64
		perBatch    = 50
		warmBatches = 12 // fill the tail, the dashboard feed (500 items) and the socket buffers
		growBatches = 40 // then grow the stuck reader's backlog by this much more
		batches     = warmBatches + growBatches
		total       = batches * perBatch
		payloadSize = 1024
	)
	a, c := newServer(t, func(cfg *config.Config) { unlimited(cfg); cfg.TailItems = tailItems })
	host := c.create("stuck")
	gid := host.Group.ID
	stuckNode, fastWS, fastSSE := c.join(gid, "stuck"), c.join(gid, "fast-ws"), c.join(gid, "fast-sse")
	since := a.Store.LastCursor()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	stuck, err := dialSmallWindow(ctx, a.URL(), stuckNode, readerOpts{since: cur(since)})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.CloseNow()
	fast := []*stream{
		openWS(t, a.URL(), fastWS, readerOpts{since: cur(since)}),
		openSSE(t, a.URL(), fastSSE, readerOpts{since: cur(since)}),
	}
	for _, s := range fast {
		defer s.close()
	}
	eventually(t, 5*time.Second, "readers never subscribed", func() bool {
		tr := a.Hub.Transports(gid)
		return hasTransport(tr, stuckNode.Node.ID, trWS) && hasTransport(tr, fastWS.Node.ID, trWS) && hasTransport(tr, fastSSE.Node.ID, trSSE)
	})

	// sentAt holds when the publish of each batch began; latency is measured from there, so it
	// includes the whole publish.
	sentAt := make([]atomic.Int64, batches)
	progress := make([]atomic.Int64, len(fast))
	type result struct {
		transport string
		lat       []time.Duration
		err       error
	}
	results := make(chan result, len(fast))
	for k, s := range fast {
		go func() {
			r := result{transport: s.transport}
			prev := since
			for range total {
				it, err := s.next(10 * time.Second)
				if err != nil {
					r.err = err
					break
				}
				var b, i int
				if _, err := fmt.Sscanf(it.Name, "b%d-%d", &b, &i); err != nil || it.Cursor <= prev || b >= batches {
					r.err = fmt.Errorf("item %+v after %d", it, prev)
					break
				}
				prev = it.Cursor
				r.lat = append(r.lat, time.Since(time.Unix(0, sentAt[b].Load())))
				progress[k].Add(1)
			}
			results <- r
		}()
	}

	payload := strings.Repeat("x", payloadSize)
	var last int64
	// publish sends batch b and waits until the fast readers have it: they keep up, the stuck
	// one falls behind.
	publish := func(b int) {
		evs := make([]evIn, perBatch)
		for i := range evs {
			evs[i] = evIn{Name: fmt.Sprintf("b%d-%d", b, i), Payload: payload}
		}
		sentAt[b].Store(time.Now().UnixNano())
		cs, err := postEvents(ctx, a.URL(), host, evs)
		if err != nil {
			t.Fatalf("batch %d: %v", b, err)
		}
		last = cs[len(cs)-1]
		eventually(t, 10*time.Second, "a fast reader fell behind", func() bool {
			for k := range progress {
				if progress[k].Load() < int64((b+1)*perBatch) {
					return false
				}
			}
			return true
		})
	}
	for b := range warmBatches {
		publish(b)
	}
	for b := warmBatches; b < batches; b++ {
		publish(b)
	}
	for range fast {
		r := <-results
		if r.err != nil {
			t.Fatalf("%s reader: %v", r.transport, r.err)
		}
		slices.Sort(r.lat)
		p50, worst := r.lat[len(r.lat)/2], r.lat[len(r.lat)-1]
		// Latency is logged, not asserted (a busy machine stretches it): that the fast readers
		// kept up while the stuck one was stuck is what publish waited for, batch by batch.
		t.Logf("%s reader: %d items, latency p50 %v max %v", r.transport, len(r.lat), p50, worst)
	}
	// A per-reader queue would hold the stuck reader's whole backlog; the cursor design holds
	// one frame per reader, and a frame is one bounded read.
	assertReadsBounded(t, a, gid, since)
	if !hasTransport(a.Hub.Transports(gid), stuckNode.Node.ID, trWS) {
		t.Error("the server dropped the stuck reader within seconds")
	}

	// The stuck reader wakes up, processes part of its backlog, drops the connection, and
	// resumes from the last item it processed.
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
	defer rcancel()
	first, err := readWSItems(rctx, stuck, since, total/2)
	if err != nil {
		t.Fatalf("stuck reader: %v", err)
	}
	stuck.CloseNow()
	again, _, err := dialWS(ctx, a.URL(), stuckNode, readerOpts{since: cur(first[len(first)-1])})
	if err != nil {
		t.Fatal(err)
	}
	defer again.CloseNow()
	rest, err := readWSItems(rctx, again, first[len(first)-1], total-len(first))
	if err != nil {
		t.Fatalf("resumed reader: %v", err)
	}
	all := append(first, rest...)
	if len(all) != total || all[len(all)-1] != last {
		t.Fatalf("the stuck reader got %d items ending at %d, want %d ending at %d", len(all), all[len(all)-1], total, last)
	}
}

// TestSSE checks the event stream's framing and headers, and resuming from the Last-Event-ID
// header (what a browser EventSource sends when it reconnects), its query twin, and since.
func TestSSE(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("sse")
	reader := c.join(host.Group.ID, "reader")
	cursors := c.publish(host, "a", "b", "c", "d", "e")

	t.Run("framing and headers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := sseRequest(ctx, a.URL(), reader, readerOpts{since: cur(cursors[2])})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		for k, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("%s: %q, want %q", k, got, want)
			}
		}
		var evs []sseEvent
		comments := 0
		err = readSSE(resp.Body, func(ev sseEvent) bool {
			evs = append(evs, ev)
			return len(evs) < 3
		}, &comments)
		if err != nil {
			t.Fatal(err)
		}
		if evs[0].retry == "" || evs[0].event != "" {
			t.Errorf("the stream does not open with a retry hint: %+v", evs[0])
		}
		if comments == 0 {
			t.Error("no comment was sent when the stream opened")
		}
		for i, ev := range evs[1:] {
			c := cursors[3+i]
			var it item
			if err := json.Unmarshal([]byte(ev.data), &it); err != nil {
				t.Fatal(err)
			}
			if ev.id != cur(c) || ev.event != "event" || it.Cursor != c || it.Name != string(rune('d'+i)) {
				t.Errorf("event %d: %+v", i, ev)
			}
		}
	})

	for _, tc := range []struct {
		name string
		o    readerOpts
	}{
		{"Last-Event-ID header", readerOpts{lastEventID: cur(cursors[1])}},
		{"Last-Event-ID header wins over since", readerOpts{lastEventID: cur(cursors[1]), since: cur(cursors[3])}},
		{"since", readerOpts{since: cur(cursors[1])}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSSE(t, a.URL(), reader, tc.o)
			defer s.close()
			for _, want := range cursors[2:] {
				if it := s.mustNext(t, 5*time.Second); it.Cursor != want {
					t.Fatalf("got item %d, want %d", it.Cursor, want)
				}
			}
		})
	}

	t.Run("lastEventId query", func(t *testing.T) {
		st, raw := func() (int, string) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, groupURL(a.URL(), host.Group.ID, "/stream?lastEventId="+cur(cursors[3])+"&token="+url.QueryEscape(reader.Token)), nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var first sseEvent
			readSSE(resp.Body, func(ev sseEvent) bool {
				first = ev
				return ev.event == ""
			}, nil)
			return resp.StatusCode, first.id
		}()
		if st != http.StatusOK || raw != cur(cursors[4]) {
			t.Fatalf("status %d, first id %s; want 200 and %d", st, raw, cursors[4])
		}
	})

	t.Run("bad Last-Event-ID", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := sseRequest(ctx, a.URL(), reader, readerOpts{lastEventID: "nope"})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("status %d, want 400", resp.StatusCode)
		}
	})
}

// TestTruncationReset starts meshbox with a short retention: a reader whose cursor is older
// than every retained item is told so on every transport (SSE reset event, WebSocket reset
// message, long-poll truncated:true), then gets the new items.
func TestTruncationReset(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) {
		unlimited(cfg)
		cfg.EventTTL = 200 * time.Millisecond
		cfg.PurgeInterval = 50 * time.Millisecond
	})
	host := c.create("reset")
	old := host.Cursor
	cursors := c.publish(host, "a", "b", "c")
	eventually(t, 5*time.Second, "the items were never purged", func() bool {
		return a.Store.Stats(context.Background()).PurgedThrough >= cursors[2]
	})

	// No reader was open while the items were purged, so none of them is in memory either.
	st, p, raw, err := pollOnce(context.Background(), a.URL(), host, cur(old), "0")
	if err != nil || st != http.StatusOK {
		t.Fatalf("poll: %d %s %v", st, raw, err)
	}
	if !p.Truncated || len(p.Items) != 0 || p.Next < cursors[2] {
		t.Fatalf("poll after purge: %s, want truncated with next ≥ %d", raw, cursors[2])
	}
	streams := map[string]*stream{}
	for _, tr := range allTransports {
		streams[tr] = openStream(t, a.URL(), tr, host, readerOpts{since: cur(old), wait: "2"})
		defer streams[tr].close()
	}
	for _, tr := range allTransports {
		if it := streams[tr].mustNext(t, 5*time.Second); it.Kind != kindReset {
			t.Fatalf("%s: first got %+v, want a reset", tr, it)
		}
	}
	fresh := c.publish(host, "fresh")
	for _, tr := range allTransports {
		if it := streams[tr].mustNext(t, 5*time.Second); it.Cursor != fresh[0] || it.Name != "fresh" {
			t.Fatalf("%s: after the reset got %+v, want item %d", tr, it, fresh[0])
		}
	}
	// A reader whose cursor is still retained is not told of truncation.
	s := openStream(t, a.URL(), trWS, host, readerOpts{since: cur(fresh[0] - 1)})
	defer s.close()
	if it := s.mustNext(t, 5*time.Second); it.Cursor != fresh[0] {
		t.Fatalf("reader inside the retention got %+v, want item %d", it, fresh[0])
	}
}

// expectEnd checks that a stream ends cleanly after a group ended: WebSocket with a normal
// closure, SSE with the end of the response, long-poll with 410 Gone.
func expectEnd(t *testing.T, s *stream) {
	t.Helper()
	_, err := s.next(5 * time.Second)
	switch s.transport {
	case trWS:
		if st := websocket.CloseStatus(err); st != websocket.StatusNormalClosure {
			t.Errorf("WebSocket ended with %v (status %v), want 1000", err, st)
		}
	case trSSE:
		if !errors.Is(err, errEnded) {
			t.Errorf("SSE ended with %v, want the end of the response", err)
		}
	case trLP:
		if !errors.Is(err, errGone) {
			t.Errorf("long-poll ended with %v, want 410", err)
		}
	}
}

// TestDissolveEndsStreams dissolves a group under readers on every transport, and lets another
// group expire: each stream gets the final dissolve item and ends cleanly.
func TestDissolveEndsStreams(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) {
		unlimited(cfg)
		cfg.PurgeInterval = 200 * time.Millisecond
	})

	t.Run("by the host", func(t *testing.T) {
		host := c.create("dissolve")
		gid := host.Group.ID
		streams := map[string]*stream{}
		for _, tr := range allTransports {
			j := c.join(gid, "reader-"+tr)
			// wait=1: how fast a poll after the end answers 410 is TestLongPollAfterEndIsGoneAtOnce.
			streams[tr] = openStream(t, a.URL(), tr, j, readerOpts{since: cur(a.Store.LastCursor()), wait: "1"})
			defer streams[tr].close()
		}
		ev := c.publish(host, "last words")
		if st, raw := c.call("DELETE", "/api/v1/groups/"+gid, host.Token, nil, nil); st != http.StatusNoContent {
			t.Fatalf("dissolve: %d %s", st, raw)
		}
		for _, tr := range allTransports {
			s := streams[tr]
			// The readers' own join items come first for some of them.
			it, err := skipJoins(s)
			if err != nil || it.Cursor != ev[0] {
				t.Fatalf("%s: got %+v %v, want the event %d", tr, it, err, ev[0])
			}
			if it = s.mustNext(t, 5*time.Second); it.Kind != "dissolve" || it.Reason != "host" {
				t.Fatalf("%s: got %+v, want dissolve by host", tr, it)
			}
			expectEnd(t, s)
		}
		// A reader that comes back after the end reads the final item, then ends too.
		late := openStream(t, a.URL(), trWS, host, readerOpts{since: cur(ev[0])})
		defer late.close()
		if it := late.mustNext(t, 5*time.Second); it.Kind != "dissolve" {
			t.Fatalf("late reader got %+v, want dissolve", it)
		}
		expectEnd(t, late)
	})

	t.Run("by expiry", func(t *testing.T) {
		var host joined
		if st, raw := c.call("POST", "/api/v1/groups", "", map[string]any{"name": "short", "maxConnectionTimeSeconds": 1}, &host); st != http.StatusCreated {
			t.Fatalf("create: %d %s", st, raw)
		}
		streams := map[string]*stream{}
		for _, tr := range allTransports {
			// A short wait, as a client polling often would: its polls span the moment between
			// the expiry and the purge that records it.
			streams[tr] = openStream(t, a.URL(), tr, host, readerOpts{since: cur(host.Cursor), wait: "0.05"})
			defer streams[tr].close()
		}
		for _, tr := range allTransports {
			s := streams[tr]
			if it := s.mustNext(t, 5*time.Second); it.Kind != "dissolve" || it.Reason != "expired" {
				t.Fatalf("%s: got %+v, want dissolve by expiry", tr, it)
			}
			expectEnd(t, s)
		}
	})
}

// TestLongPollAfterEndIsGoneAtOnce: once a reader has the dissolve item, its next long-poll
// must answer 410 at once. Nothing can follow the end, so waiting out the poll's wait only
// delays the client's cleanup (by up to the 30 s cap).
func TestLongPollAfterEndIsGoneAtOnce(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("gone")
	if st, raw := c.call("DELETE", "/api/v1/groups/"+host.Group.ID, host.Token, nil, nil); st != http.StatusNoContent {
		t.Fatalf("dissolve: %d %s", st, raw)
	}
	st, p, raw, err := pollOnce(context.Background(), a.URL(), host, cur(host.Cursor), "0")
	if err != nil || st != http.StatusOK || len(p.Items) != 1 || p.Items[0].Kind != "dissolve" {
		t.Fatalf("poll: %d %s %v, want the dissolve item", st, raw, err)
	}
	began := time.Now()
	st, _, raw, err = pollOnce(context.Background(), a.URL(), host, cur(p.Next), "3")
	if err != nil || st != http.StatusGone {
		t.Fatalf("poll after the end: %d %s %v, want 410", st, raw, err)
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("the poll after the end waited %v before answering 410", took)
	}
}

// TestWebSocketMessages covers the client → server messages: publish, data and heartbeat are
// acknowledged with the client's id only once committed (another client can then read the
// items), and a bad message gets an error reply while the connection stays usable.
func TestWebSocketMessages(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("wsmsg")
	gid := host.Group.ID
	node := c.join(gid, "writer")
	other := c.join(gid, "other")
	s := openWS(t, a.URL(), node, readerOpts{acksOnly: true})
	defer s.close()
	ctx := context.Background()

	// readBack reads the group after since as another client would.
	readBack := func(since int64) []item {
		t.Helper()
		st, p, raw, err := pollOnce(ctx, a.URL(), other, cur(since), "0")
		if err != nil || st != http.StatusOK {
			t.Fatalf("poll: %d %s %v", st, raw, err)
		}
		return p.Items
	}
	ack := func(id string) wsFrame {
		t.Helper()
		f := s.reply(t)
		if f.Type != "ack" || string(f.ID) != id {
			t.Fatalf("got %+v, want an ack with id %s", f, id)
		}
		return f
	}
	fail := func(id, code string) {
		t.Helper()
		f := s.reply(t)
		if f.Type != "error" || string(f.ID) != id || f.Error == nil || f.Error.Code != code || f.Error.Message == "" {
			t.Fatalf("got %+v (error %+v), want an error %s with id %s", f, f.Error, code, id)
		}
	}

	t.Run("publish", func(t *testing.T) {
		before := a.Store.LastCursor()
		s.send(t, `{"type":"publish","id":1,"events":[{"name":"go","payload":"x"},{"name":"stop"}]}`)
		f := ack("1")
		if len(f.Cursors) != 2 || a.Store.LastCursor() < f.Cursors[1] {
			t.Fatalf("ack %+v is not committed (last cursor %d)", f, a.Store.LastCursor())
		}
		items := readBack(before)
		if len(items) != 2 || items[0].Cursor != f.Cursors[0] || items[0].Name != "go" || *items[0].Payload != "x" ||
			items[1].Cursor != f.Cursors[1] || items[1].Name != "stop" || items[1].Payload != nil || items[0].Node != node.Node.ID {
			t.Fatalf("after the ack another client reads %+v", items)
		}
	})
	t.Run("data", func(t *testing.T) {
		before := a.Store.LastCursor()
		s.send(t, `{"type":"data","id":"d-1","data":{"x":"1","y":"2"}}`)
		f := ack(`"d-1"`)
		items := readBack(before)
		if len(f.Cursors) != 1 || len(items) != 1 || items[0].Cursor != f.Cursors[0] || items[0].Kind != "data" ||
			items[0].Data["x"] != "1" || items[0].Data["y"] != "2" || items[0].Node != node.Node.ID {
			t.Fatalf("ack %+v, another client reads %+v", f, items)
		}
	})
	t.Run("heartbeat", func(t *testing.T) {
		before := time.Now().Add(-time.Millisecond)
		s.send(t, `{"type":"heartbeat","id":{"n":3}}`)
		if f := ack(`{"n":3}`); len(f.Cursors) != 0 {
			t.Fatalf("heartbeat ack %+v carries cursors", f)
		}
		var snap struct {
			Nodes []struct {
				ID       string    `json:"id"`
				LastSeen time.Time `json:"lastSeen"`
			} `json:"nodes"`
		}
		c.call("GET", "/api/v1/groups/"+gid, "", nil, &snap)
		for _, n := range snap.Nodes {
			if n.ID == node.Node.ID && n.LastSeen.Before(before) {
				t.Fatalf("after the heartbeat ack the node was last seen %v, before %v", n.LastSeen, before)
			}
		}
	})
	t.Run("bad messages", func(t *testing.T) {
		s.send(t, `{"type":"publish","id":5,`)
		fail("null", "bad_json")
		s.send(t, `{"type":"shout","id":"x"}`)
		fail(`"x"`, "bad_message")
		s.send(t, `{"type":"publish","id":6,"events":[]}`)
		fail("6", "invalid")
		s.send(t, `{"type":"publish","id":7,"events":[{"name":""}]}`)
		fail("7", "invalid")
		s.send(t, `{"type":"data","id":8,"data":{}}`)
		fail("8", "invalid")
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := s.ws.Write(ctx, websocket.MessageBinary, []byte(`{"type":"heartbeat","id":9}`)); err != nil {
			t.Fatal(err)
		}
		fail("null", "bad_message")
		// Still usable.
		s.send(t, `{"type":"heartbeat","id":10}`)
		ack("10")
	})
	t.Run("bad field type keeps the id", func(t *testing.T) {
		// The message is JSON with a readable id: the reply should carry it, so the client
		// can tell which request failed.
		s.send(t, `{"type":"publish","id":11,"events":"nope"}`)
		fail("11", "bad_json")
	})
}

// TestWebSocketAnswersFollowEarlierItems: an answer on a WebSocket never overtakes an item
// committed before it. A reader joins behind a backlog larger than the socket's buffers and
// sends a publish and a heartbeat before it reads anything: each ack must come after every
// item up to then, its own events included, as a client keeping a cursor expects ("ack 7"
// means item 7 was delivered).
func TestWebSocketAnswersFollowEarlierItems(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("answers")
	gid := host.Group.ID
	reader := c.join(gid, "reader")
	writer := c.join(gid, "writer")
	// ~12 MiB of events: more than loopback's socket buffers hold, so the pump is still
	// writing the backlog when the reader's messages are answered.
	payload := strings.Repeat("x", 12<<10)
	evs := make([]map[string]any, 64)
	for i := range evs {
		evs[i] = map[string]any{"name": "e", "payload": payload}
	}
	for range 16 {
		if st, raw := c.call("POST", "/api/v1/groups/"+gid+"/events", writer.Token, map[string]any{"events": evs}, nil); st != http.StatusOK {
			t.Fatalf("publish: %d %.200s", st, raw)
		}
	}
	backlog := a.Store.LastCursor()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, a.URL(), reader, readerOpts{since: cur(reader.Cursor)})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for _, m := range []string{`{"type":"publish","id":1,"events":[{"name":"mine"}]}`, `{"type":"heartbeat","id":2}`} {
		if err := ws.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	var last, mine int64 // the last item cursor read; the reader's own event
	for acks := 0; acks < 2; {
		typ, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("after item %d of %d: %v", last, backlog, err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("a %v frame", typ)
		}
		var f wsFrame
		if err := json.Unmarshal(data, &f); err != nil {
			t.Fatalf("decode %.200s: %v", data, err)
		}
		switch f.Type {
		case "items":
			for _, it := range f.Items {
				if it.Cursor <= last {
					t.Fatalf("item %d after %d", it.Cursor, last)
				}
				last = it.Cursor
				if it.Name == "mine" {
					mine = it.Cursor
				}
			}
		case "ack":
			acks++
			if last < backlog || mine == 0 {
				t.Fatalf("ack %s arrived after item %d, before the backlog's end (%d) or the reader's own event (read: %d)", f.ID, last, backlog, mine)
			}
			if string(f.ID) == "1" && (len(f.Cursors) != 1 || f.Cursors[0] != mine) {
				t.Fatalf("ack %+v for the event delivered at %d", f, mine)
			}
		default:
			t.Fatalf("unexpected frame %.200s", data)
		}
	}
}

// TestWebSocketOversizedFrame: a frame bigger than the request body limit closes the
// connection with 1009; one within it is served.
func TestWebSocketOversizedFrame(t *testing.T) {
	const limit = 8192
	a, c := newServer(t, func(cfg *config.Config) { unlimited(cfg); cfg.MaxBodyBytes = limit })
	host := c.create("big")
	s := openWS(t, a.URL(), host, readerOpts{acksOnly: true})
	defer s.close()
	fits := fmt.Sprintf(`{"type":"publish","id":1,"events":[{"name":"ok","payload":%q}]}`, strings.Repeat("a", limit-200))
	s.send(t, fits)
	if f := s.reply(t); f.Type != "ack" {
		t.Fatalf("a %d-byte frame got %+v", len(fits), f)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.ws.Write(ctx, websocket.MessageText, []byte(fmt.Sprintf(`{"type":"publish","id":2,"events":[{"name":"big","payload":%q}]}`, strings.Repeat("a", 3*limit))))
	_, err := s.next(5 * time.Second)
	if st := websocket.CloseStatus(err); st != websocket.StatusMessageTooBig {
		t.Fatalf("an oversized frame ended the stream with %v (status %v), want 1009", err, st)
	}
}

// skipJoins returns the next thing a stream yields that is not a join item.
func skipJoins(s *stream) (item, error) {
	for {
		it, err := s.next(5 * time.Second)
		if err != nil || it.Kind != "join" {
			return it, err
		}
	}
}

// TestShutdownEndsStreams shuts meshbox down under open WebSocket, SSE and long-poll readers:
// the WebSocket closes with 1012 (reconnect), SSE gets a shutdown event and ends, the long-poll
// returns, and Shutdown itself does not wait for the streams.
func TestShutdownEndsStreams(t *testing.T) {
	a, c := newServer(t, unlimited)
	host := c.create("bye")
	gid := host.Group.ID
	readers := map[string]joined{}
	streams := map[string]*stream{}
	for _, tr := range []string{trWS, trSSE} {
		readers[tr] = c.join(gid, tr)
		streams[tr] = openStream(t, a.URL(), tr, readers[tr], readerOpts{})
		defer streams[tr].close()
	}
	lp := c.join(gid, "lp")
	type res struct {
		st  int
		p   page
		err error
	}
	polled := make(chan res, 1)
	go func() {
		st, p, _, err := pollOnce(context.Background(), a.URL(), lp, cur(a.Store.LastCursor()), "30")
		polled <- res{st, p, err}
	}()
	eventually(t, 5*time.Second, "the streams never opened", func() bool {
		tr := a.Hub.Transports(gid)
		return hasTransport(tr, readers[trWS].Node.ID, trWS) && hasTransport(tr, readers[trSSE].Node.ID, trSSE) && hasTransport(tr, lp.Node.ID, trLP)
	})

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	began := time.Now()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	took := time.Since(began)
	t.Logf("shutdown took %v with three streams open", took)
	if took > 4*time.Second {
		t.Errorf("shutdown took %v with streams open", took)
	}
	_, err := skipJoins(streams[trWS])
	if st := websocket.CloseStatus(err); st != websocket.StatusServiceRestart {
		t.Errorf("WebSocket ended with %v (status %v), want 1012", err, st)
	}
	if it, err := skipJoins(streams[trSSE]); it.Kind != kindShutdown {
		t.Errorf("SSE got %+v %v, want a shutdown event", it, err)
	}
	if _, err := streams[trSSE].next(5 * time.Second); !errors.Is(err, errEnded) {
		t.Errorf("SSE after the shutdown event: %v, want the end of the response", err)
	}
	select {
	case r := <-polled:
		if r.err != nil || r.st != http.StatusOK || len(r.p.Items) != 0 {
			t.Errorf("long-poll at shutdown: %d %+v %v, want an empty page", r.st, r.p, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the long-poll did not return at shutdown")
	}
}

// TestPresence runs the purge with a tiny member TTL: nodes that only listen, over any
// transport, stay members, while a silent node without a stream expires and its leave item
// reaches the listeners.
func TestPresence(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) {
		unlimited(cfg)
		cfg.MemberTTL = 300 * time.Millisecond
		cfg.PurgeInterval = 50 * time.Millisecond
	})
	host := c.create("presence")
	gid := host.Group.ID
	listeners := map[string]joined{}
	streams := map[string]*stream{}
	for _, tr := range allTransports {
		listeners[tr] = c.join(gid, "listen-"+tr)
		streams[tr] = openStream(t, a.URL(), tr, listeners[tr], readerOpts{since: cur(listeners[tr].Cursor), wait: "1"})
		defer streams[tr].close()
	}
	silent := c.join(gid, "silent")

	for _, tr := range allTransports {
		for {
			it := streams[tr].mustNext(t, 5*time.Second)
			if it.Kind == "leave" {
				if it.Node != silent.Node.ID || it.Reason != "expired" {
					t.Fatalf("%s: %+v, want the silent node to expire", tr, it)
				}
				break
			}
		}
	}
	// Several TTLs later the listeners are still members, and nothing else left. The TTLs are
	// counted by observable expiries, not slept: three more silent nodes join one after the
	// other, and each must be the only one to expire, a TTL after it joined.
	for round := range 3 {
		late := c.join(gid, fmt.Sprintf("silent-%d", round))
		for _, tr := range allTransports {
			for {
				it := streams[tr].mustNext(t, 5*time.Second)
				if it.Kind != "leave" {
					continue
				}
				if it.Node != late.Node.ID || it.Reason != "expired" {
					t.Fatalf("%s: %+v left, want only the silent node %s to expire", tr, it, late.Node.ID)
				}
				break
			}
		}
	}
	var snap struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
	}
	if st, raw := c.call("GET", "/api/v1/groups/"+gid, host.Token, nil, &snap); st != http.StatusOK {
		t.Fatalf("snapshot: %d %s", st, raw)
	}
	members := map[string]bool{}
	for _, n := range snap.Nodes {
		members[n.ID] = true
	}
	for tr, j := range listeners {
		if !members[j.Node.ID] {
			t.Errorf("the node listening over %s expired", tr)
		}
	}
	if members[silent.Node.ID] {
		t.Error("the silent node is still a member")
	}
	if st, _ := c.call("POST", "/api/v1/groups/"+gid+"/heartbeat", silent.Token, nil, nil); st < 400 {
		t.Errorf("the expired node's heartbeat got %d", st)
	}
}

// TestStreamTokens: ?token= authenticates the streams (browsers cannot set headers on
// EventSource or WebSocket), and a token of another group is refused with 401 on every
// transport.
func TestStreamTokens(t *testing.T) {
	a, c := newServer(t, unlimited)
	mine := c.create("mine")
	theirs := c.create("theirs")

	t.Run("query token", func(t *testing.T) {
		since := cur(a.Store.LastCursor())
		streams := map[string]*stream{}
		for _, tr := range []string{trWS, trSSE} {
			streams[tr] = openStream(t, a.URL(), tr, mine, readerOpts{since: since, queryToken: true})
			defer streams[tr].close()
		}
		ev := c.publish(mine, "hello")
		for tr, s := range streams {
			if it := s.mustNext(t, 5*time.Second); it.Cursor != ev[0] {
				t.Fatalf("%s: got %+v, want %d", tr, it, ev[0])
			}
		}
		st, raw := c.call("GET", "/api/v1/groups/"+mine.Group.ID+"/events?since="+since+"&token="+url.QueryEscape(mine.Token), "", nil, nil)
		if st != http.StatusOK {
			t.Fatalf("long-poll with ?token=: %d %s", st, raw)
		}
	})

	// Their token, on my group.
	wrong := mine
	wrong.Token = theirs.Token
	none := mine
	none.Token = ""
	for _, tc := range []struct {
		name  string
		j     joined
		query bool
	}{
		{"other group's token in the query", wrong, true},
		{"other group's token in the header", wrong, false},
		{"garbage token", joined{Group: mine.Group, Token: "garbage"}, true},
		{"no token", none, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			o := readerOpts{queryToken: tc.query}
			if _, resp, err := dialWS(ctx, a.URL(), tc.j, o); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("WebSocket: %v %v, want 401", resp, err)
			}
			resp, err := sseRequest(ctx, a.URL(), tc.j, o)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error struct {
					Code string `json:"code"`
				} `json:"error"`
			}
			json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || body.Error.Code != "unauthorized" {
				t.Errorf("SSE: %d %+v, want 401 unauthorized", resp.StatusCode, body)
			}
			path := "/api/v1/groups/" + mine.Group.ID + "/events?wait=0"
			tok := tc.j.Token
			if tc.query {
				path += "&token=" + url.QueryEscape(tok)
				tok = ""
			}
			if st, raw := c.call("GET", path, tok, nil, nil); st != http.StatusUnauthorized {
				t.Errorf("long-poll: %d %s, want 401", st, raw)
			}
		})
	}
}

// TestIdleReaderBehindTheTailWaits: a reader resuming from a cursor older than its group's
// in-memory tail, in a group with nothing newer (other groups were busy meanwhile, which is
// the common case), must wait quietly on every transport, not spin on the store, and a
// long-poll must wait for its whole wait.
func TestIdleReaderBehindTheTailWaits(t *testing.T) {
	a, c := newServer(t, unlimited)
	quiet := c.create("quiet")
	busy := c.create("busy")
	c.publish(busy, "x", "y", "z")
	since := cur(quiet.Cursor) // older than anything the quiet group's tail will start at

	began := time.Now()
	st, p, raw, err := pollOnce(context.Background(), a.URL(), quiet, since, "0.3")
	if err != nil || st != http.StatusOK || len(p.Items) != 0 || p.Next < quiet.Cursor {
		t.Fatalf("poll: %d %s %v", st, raw, err)
	}
	if took := time.Since(began); took < 250*time.Millisecond {
		t.Errorf("a long-poll with wait=0.3 returned after %v with nothing", took)
	}

	streams := map[string]*stream{}
	for _, tr := range allTransports {
		streams[tr] = openStream(t, a.URL(), tr, quiet, readerOpts{since: since})
		defer streams[tr].close()
	}
	eventually(t, 5*time.Second, "the readers never subscribed", func() bool {
		return len(a.Hub.Transports(quiet.Group.ID)[quiet.Node.ID]) == len(allTransports)
	})
	// No CPU measurement (a shared machine makes it noise): a reader that waited after its
	// old cursor would return from its wait at once, and its long-poll twin above would not
	// have waited its 0.3 s; the streams must still deliver what comes next.
	ev := c.publish(quiet, "finally")
	for tr, s := range streams {
		if it := s.mustNext(t, 5*time.Second); it.Cursor != ev[0] {
			t.Fatalf("%s: got %+v, want %d", tr, it, ev[0])
		}
	}
}

// TestStuckReadersBehindTheTailHoldLittleMemory: readers that resume from far behind the
// in-memory tail and then stop reading must each cost the server little memory, whatever the
// size of the items they are behind. A batch read from the store must be bounded in bytes, not
// only in items: 1000 items of 16 KiB held while the frame waits on a stalled socket cost
// ~50 MiB per reader, so a few dozen stalled clients could exhaust a Raspberry Pi.
func TestStuckReadersBehindTheTailHoldLittleMemory(t *testing.T) {
	const (
		readers     = 3
		items       = 200
		payloadSize = 16 * 1024
	)
	a, c := newServer(t, func(cfg *config.Config) { unlimited(cfg); cfg.TailItems = 16 })
	host := c.create("behind")
	payload := strings.Repeat("x", payloadSize)
	for b := range items / 50 {
		evs := make([]evIn, 50)
		for i := range evs {
			evs[i] = evIn{Name: fmt.Sprintf("b%d-%d", b, i), Payload: payload}
		}
		if _, err := postEvents(context.Background(), a.URL(), host, evs); err != nil {
			t.Fatal(err)
		}
	}
	var conns []*websocket.Conn
	for range readers {
		conn, err := dialSmallWindow(context.Background(), a.URL(), host, readerOpts{since: cur(host.Cursor)})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.CloseNow()
		conns = append(conns, conn)
	}
	eventually(t, 5*time.Second, "the readers never subscribed", func() bool {
		return len(a.Hub.Transports(host.Group.ID)[host.Node.ID]) > 0
	})
	// Each stalled reader holds the one batch its blocked frame was built from: bounded in
	// bytes, not only in items (1000 items of 16 KiB would be ~16 MiB).
	assertReadsBounded(t, a, host.Group.ID, host.Cursor)
	// Stalled, not lost: a reader that wakes up reads everything.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := readWSItems(ctx, conns[0], host.Cursor, items)
	if err != nil || len(got) != items {
		t.Fatalf("%d items, %v", len(got), err)
	}
}

// TestReadersBehindTheTailNeverGetARefusedCursor reconnects readers on every transport a few
// items behind a one-item tail while four publishers write: every read is served from SQLite
// while commits run. Before the watermark bounded those reads, SQLite showed a commit before
// meshbox knew of it, and the next read was refused as "ahead" (WebSocket 1011, SSE ended,
// long-poll 400). Every session must deliver strictly increasing cursors and end only when
// the test closes it.
func TestReadersBehindTheTailNeverGetARefusedCursor(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { unlimited(cfg); cfg.TailItems = 1 })
	host := c.create("behind")
	reader := c.join(host.Group.ID, "reader")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const publishers, perPublisher = 4, 150
	var running atomic.Int32
	running.Store(publishers)
	errs := make(chan error, publishers)
	for p := range publishers {
		j := c.join(host.Group.ID, fmt.Sprintf("p%d", p))
		go func() {
			defer running.Add(-1)
			for i := range perPublisher {
				if _, err := postEvents(ctx, c.base, j, events(fmt.Sprintf("e%d", i))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	last, sessions := host.Cursor, 0
	for running.Load() > 0 {
		tr := allTransports[sessions%len(allTransports)]
		since := max(host.Cursor, last-3) // behind the one-item tail: read from SQLite
		s := openStream(t, c.base, tr, reader, readerOpts{since: cur(since)})
		prev := since
		for range 5 {
			it, err := s.next(20 * time.Second)
			if errors.Is(err, errTimeout) && running.Load() == 0 {
				break
			}
			if err != nil {
				s.close()
				t.Fatalf("session %d over %s after %d: %v", sessions, tr, since, err)
			}
			if it.Cursor <= prev {
				s.close()
				t.Fatalf("session %d over %s: cursor %d after %d", sessions, tr, it.Cursor, prev)
			}
			prev = it.Cursor
		}
		s.close()
		last = max(last, prev)
		sessions++
	}
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	t.Logf("%d reader sessions behind the tail while %d publishes ran", sessions, publishers*perPublisher)
}
