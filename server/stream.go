package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"meshbox/auth"
	"meshbox/hub"
	"meshbox/rules"
	"meshbox/stream"
)

const (
	// streamBatch bounds the items one frame or event burst carries; a reader that is behind
	// gets them all in few frames.
	streamBatch = 1000
	// writeTimeout drops a reader whose socket accepts nothing for this long; it can resume by
	// cursor.
	writeTimeout = 15 * time.Second
	sseHeartbeat = 15 * time.Second
)

// reader is an authenticated reader of a group at a cursor.
type reader struct {
	node  rules.Node
	since int64
}

// openReader authenticates a reader and parses its cursor: lastEventID (SSE) wins over since;
// no cursor means "from now".
func (s *Server) openReader(r *http.Request, q url.Values, lastEventID string) (reader, error) {
	gid := chi.URLParam(r, "gid")
	tok := auth.Token(r, q)
	if tok == "" {
		return reader{}, errorf(http.StatusUnauthorized, "unauthorized", "missing token: send Authorization: Bearer TOKEN (or ?token=)")
	}
	n, _, err := s.store.AuthenticateReader(gid, tok)
	if err != nil {
		return reader{}, err
	}
	raw := lastEventID
	if raw == "" {
		raw = q.Get("since")
	}
	since := s.store.LastCursor()
	if raw != "" {
		c, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || c < 0 {
			return reader{}, errorf(http.StatusBadRequest, "bad_cursor", "cursor must be a non-negative integer, not "+strconv.Quote(raw))
		}
		if c > since {
			return reader{}, errorf(http.StatusBadRequest, "bad_cursor", "cursor "+raw+" is ahead of the stream (a cursor from another meshbox?)")
		}
		since = c
	}
	return reader{node: n, since: since}, nil
}

// appendItems writes items as a JSON array of their stored encodings.
func appendItems(b []byte, items []stream.Item) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.JSON...)
	}
	return append(b, ']')
}

func (s *Server) delivered(transport string, items []stream.Item) {
	if len(items) > 0 {
		s.obs.ObserveDelivered(transport, len(items), items[0].At)
	}
}

// streamContext ends with the request or with the server.
func (s *Server) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(s.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}

func (s *Server) poll(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query() // parsed once: a long-poll is the most frequent request there is
	rd, err := s.openReader(r, q, "")
	if err != nil {
		return err
	}
	limit := 500
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 5000 {
			return errorf(http.StatusBadRequest, "invalid", "limit must be an integer from 1 to 5000")
		}
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		secs, err := strconv.ParseFloat(v, 64)
		if err != nil || secs < 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
			return errorf(http.StatusBadRequest, "invalid", "wait must be a number of seconds, 0 or more")
		}
		wait = min(time.Duration(secs*float64(time.Second)), s.cfg.MaxWait)
	}
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "longpoll")
	defer sub.Close()
	b, err := sub.Read(r.Context(), rd.since, limit)
	if err != nil {
		return err
	}
	if len(b.Items) == 0 && !b.Truncated && s.store.Over(rd.node.Group, b.Next) {
		return errorf(http.StatusGone, "group_ended", "group "+rd.node.Group+" has ended")
	}
	if len(b.Items) == 0 && !b.Truncated && wait > 0 {
		release, err := s.openStream(r)
		if err != nil {
			return err
		}
		defer release()
		s.obs.ConnOpened("longpoll")
		defer s.obs.ConnClosed("longpoll")
		ctx, cancel := s.streamContext(r)
		ctx, cancelWait := context.WithTimeout(ctx, wait)
		// b.Next, not rd.since: nothing of the group is up to b.Next, and an older cursor
		// behind the tail would end the wait at once.
		err = sub.Wait(ctx, b.Next)
		cancelWait()
		cancel()
		if r.Context().Err() != nil && s.ctx.Err() == nil {
			return r.Context().Err() // the client went away; at shutdown it gets its page
		}
		if err == nil {
			if b, err = sub.Read(r.Context(), b.Next, limit); err != nil {
				return err
			}
		}
	}
	if len(b.Items) == 0 && !b.Truncated && s.store.Over(rd.node.Group, b.Next) {
		return errorf(http.StatusGone, "group_ended", "group "+rd.node.Group+" has ended")
	}
	buf := make([]byte, 0, 64+itemsLen(b.Items))
	buf = append(buf, `{"items":`...)
	buf = appendItems(buf, b.Items)
	buf = append(buf, `,"next":`...)
	buf = strconv.AppendInt(buf, b.Next, 10)
	buf = append(buf, `,"truncated":`...)
	buf = strconv.AppendBool(buf, b.Truncated)
	buf = append(buf, "}\n"...)
	writeRaw(w, http.StatusOK, buf)
	s.delivered("longpoll", b.Items)
	return nil
}

func itemsLen(items []stream.Item) int {
	n := 0
	for _, it := range items {
		n += len(it.JSON) + 1
	}
	return n
}

// follow delivers the group's items after since to emit, waiting for new ones, until the group
// ends (nil), ctx ends, or emit fails. idle is called every idleEvery (comment heartbeats).
func (s *Server) follow(ctx context.Context, sub *hub.Sub, since int64, idleEvery time.Duration, emit func(hub.Batch) error, idle func() error) error {
	sig := sub.Signal() // before the first read, so no append between read and wait is missed
	// One timer for the whole stream: a timer per wait would cost more than the items.
	timer := time.NewTimer(idleEvery)
	defer timer.Stop()
	for {
		b, err := sub.Read(ctx, since, streamBatch)
		if err != nil {
			return err
		}
		if len(b.Items) > 0 || b.Truncated {
			if err := emit(b); err != nil {
				return err
			}
			since = b.Next
			if b.Ended {
				return nil
			}
			continue
		}
		// Nothing of the group up to b.Next: wait after it. Waiting after an older cursor that
		// is behind the tail would return at once, and the loop would spin on the store.
		since = b.Next
		select {
		case <-sig:
		case <-timer.C:
			if err := idle(); err != nil {
				return err
			}
			timer.Reset(idleEvery)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) sse(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = q.Get("lastEventId")
	}
	rd, err := s.openReader(r, q, strings.TrimSpace(lastID))
	if err != nil {
		return err
	}
	release, err := s.openStream(r)
	if err != nil {
		return err
	}
	defer release()
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s.obs.ConnOpened("sse")
	defer s.obs.ConnClosed("sse")
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "sse")
	defer sub.Close()
	ctx, cancel := s.streamContext(r)
	defer cancel()

	write := func(b []byte) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return err
		}
		return rc.Flush()
	}
	// The retry hint and a first comment go out at once, so proxies and the browser see the
	// stream open.
	if err := write([]byte("retry: 2000\n: connected\n\n")); err != nil {
		return nil
	}
	var buf []byte
	err = s.follow(ctx, sub, rd.since, sseHeartbeat, func(b hub.Batch) error {
		buf = buf[:0]
		if b.Truncated {
			// The reset carries the cursor to resume from, so a plain EventSource that
			// reconnects now sends it as Last-Event-ID instead of the purged one (and is not
			// reset again): just before the first retained item, or the batch's end.
			id := b.Next
			if len(b.Items) > 0 {
				id = b.Items[0].Cursor - 1
			}
			buf = append(buf, "id: "...)
			buf = strconv.AppendInt(buf, id, 10)
			buf = append(buf, "\nevent: reset\ndata: {\"type\":\"reset\"}\n\n"...)
		}
		for _, it := range b.Items {
			buf = append(buf, "id: "...)
			buf = strconv.AppendInt(buf, it.Cursor, 10)
			buf = append(buf, "\nevent: "...)
			buf = append(buf, it.Kind...)
			buf = append(buf, "\ndata: "...)
			buf = append(buf, it.JSON...)
			buf = append(buf, "\n\n"...)
		}
		if err := write(buf); err != nil {
			return err
		}
		s.delivered("sse", b.Items)
		return nil
	}, func() error { return write([]byte(": ping\n\n")) })
	if err != nil && s.ctx.Err() != nil {
		// Shutdown: tell the client to come back soon; EventSource reconnects by itself.
		write([]byte("retry: 1000\nevent: shutdown\ndata: {\"type\":\"shutdown\"}\n\n"))
	}
	return nil // the response has started: errors end the stream, they are not answered
}

// wsIn is a message from a WebSocket client.
type wsIn struct {
	Type   string            `json:"type"`
	ID     json.RawMessage   `json:"id"`
	Events []eventIn         `json:"events"`
	Data   map[string]string `json:"data"`
}

// wsConn is one WebSocket reader. While idle it costs no goroutine of its own besides the
// handler's, which reads the client's messages: the hub calls wake on new items, which starts a
// short-lived flush goroutine that sends everything pending in as few frames as it can.
type wsConn struct {
	s    *Server
	c    *websocket.Conn
	sub  *hub.Sub
	ctx  context.Context // ends when the connection is done
	stop context.CancelFunc

	since   int64       // owned by the flusher that holds running
	running atomic.Bool // a flusher is running
	pending atomic.Bool // items arrived since the flusher last looked
	flushes sync.WaitGroup
	// mu orders starting a flusher against the end of the connection: once ended is set,
	// no flusher starts, so waiting for flushes is safe.
	mu    sync.Mutex
	ended bool
	// writeStart is when the current write began (unix nanos, 0 when none): the pinger drops a
	// peer whose writes stall, without a timer per write.
	writeStart atomic.Int64
	closeOnce  sync.Once
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.NoWebSocket {
		return errorf(http.StatusForbidden, "websocket_disabled", "WebSocket is disabled on this server: use SSE or long-poll")
	}
	rd, err := s.openReader(r, r.URL.Query(), "")
	if err != nil {
		return err
	}
	release, err := s.openStream(r)
	if err != nil {
		return err
	}
	c, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{
		// Pages of any origin may connect: access is by token, never by cookie.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		release()
		return nil // Accept has answered the client
	}
	c.SetReadLimit(s.cfg.MaxBodyBytes)
	ctx, stop := context.WithCancel(context.Background())
	wc := &wsConn{s: s, c: c, ctx: ctx, stop: stop, since: rd.since}
	wc.sub = s.hub.Subscribe(rd.node.Group, rd.node.ID, "ws")
	if !s.wsConns.add(wc, s.ctx) {
		wc.sub.Close()
		wc.close(websocket.StatusServiceRestart, "server restarting, reconnect")
		release()
		return nil
	}
	// The connection is hijacked: the handler returns and a fresh goroutine, with a small
	// stack rather than the deep one of the HTTP stack, serves it. The registry owns it.
	go func() {
		defer s.wsConns.remove(wc)
		defer release()
		wc.serve(rd.node)
	}()
	return nil
}

// WebSocket connection buffers. A connection keeps the buffers it is given at the upgrade for
// its whole life; net/http hands over 4 KiB for each direction, most of an idle connection's
// memory. Reading needs little (a reader connection gets only pongs; bigger client messages
// are read through it), and a frame of a few items fits the write buffer, so it still goes
// out in one write.
const (
	wsReadBuffer  = 512
	wsWriteBuffer = 1024
)

// smallBuffers gives websocket.Accept a hijacked connection with small buffers
// (wsReadBuffer, wsWriteBuffer) instead of net/http's; bytes the HTTP server had already read
// past the request are kept in front of the connection.
type smallBuffers struct{ http.ResponseWriter }

// Hijack takes the connection over from the HTTP server.
func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, wsReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		// Move them into the new buffer (Accept takes what is buffered, then reads the
		// connection): peeking reads them all from the bytes reader, none from the connection.
		b, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(b)), conn), max(wsReadBuffer, n))
		if _, err := br.Peek(n); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("websocket upgrade: keep buffered bytes: %w", err)
		}
	}
	return conn, bufio.NewReadWriter(br, bufio.NewWriterSize(conn, wsWriteBuffer)), nil
}

// serve runs the connection until the peer or the server ends it.
func (wc *wsConn) serve(n rules.Node) {
	s := wc.s
	s.obs.ConnOpened("ws")
	defer s.obs.ConnClosed("ws")
	defer wc.sub.Close()

	wc.sub.Notify(wc.wake)
	wc.wake() // the backlog after the client's cursor
	code, reason := s.wsReadLoop(wc.ctx, wc.c, n, wc.send)
	wc.close(code, reason)
	wc.sub.Close()
	wc.mu.Lock()
	wc.ended = true // no flusher starts after this, so the wait below is final
	wc.mu.Unlock()
	wc.flushes.Wait()
}

// wake makes sure a flusher runs; it never blocks (the hub calls it while publishing).
func (wc *wsConn) wake() {
	wc.pending.Store(true)
	if !wc.running.CompareAndSwap(false, true) {
		return
	}
	wc.mu.Lock()
	defer wc.mu.Unlock()
	if wc.ended {
		return
	}
	wc.flushes.Add(1)
	go wc.flush()
}

func (wc *wsConn) flush() {
	defer wc.flushes.Done()
	for {
		wc.pending.Store(false)
		done, err := wc.sendPending()
		if err != nil || done {
			switch {
			case done:
				wc.close(websocket.StatusNormalClosure, "group dissolved")
			case wc.ctx.Err() == nil:
				wc.s.log.Debug("websocket flush", "err", err)
				wc.close(websocket.StatusInternalError, "stream failed")
			}
			return // running stays set: no flusher starts again
		}
		wc.running.Store(false)
		// Items that arrived after the last read but before running was cleared would
		// otherwise wait for the next wake.
		if !wc.pending.Load() || !wc.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// sendPending sends everything after the cursor; done reports the group's end was sent.
func (wc *wsConn) sendPending() (done bool, err error) {
	bp := wc.s.frames.Get().(*[]byte)
	defer wc.s.frames.Put(bp)
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0] }()
	for {
		b, err := wc.sub.Read(wc.ctx, wc.since, streamBatch)
		if err != nil {
			return false, err
		}
		if len(b.Items) == 0 && !b.Truncated {
			wc.since = b.Next
			return false, nil
		}
		if b.Truncated {
			buf = append(buf[:0], `{"type":"reset","next":`...)
			buf = strconv.AppendInt(buf, b.Next, 10)
			buf = append(buf, '}')
			if err := wc.send(buf); err != nil {
				return false, err
			}
		}
		if len(b.Items) > 0 {
			buf = append(buf[:0], `{"type":"items","items":`...)
			buf = appendItems(buf, b.Items)
			buf = append(buf, `,"next":`...)
			buf = strconv.AppendInt(buf, b.Next, 10)
			buf = append(buf, '}')
			if err := wc.send(buf); err != nil {
				return false, err
			}
			wc.s.delivered("ws", b.Items)
		}
		wc.since = b.Next
		if b.Ended {
			return true, nil
		}
	}
}

func (wc *wsConn) send(b []byte) error {
	wc.writeStart.Store(time.Now().UnixNano())
	defer wc.writeStart.Store(0)
	// No deadline context: with one the library arms a timer per write, the costliest part of
	// a small write. A write that stalls is cut off by the pinger (stalled), and close ends
	// any write in progress by closing the socket.
	return wc.c.Write(context.Background(), websocket.MessageText, b)
}

// close ends the connection once, with a close frame carrying code and reason.
func (wc *wsConn) close(code websocket.StatusCode, reason string) {
	wc.closeOnce.Do(func() {
		wc.c.Close(code, reason)
		wc.stop()
		wc.c.CloseNow()
	})
}

// drop ends the connection of a peer that no longer answers or reads, without the close
// handshake, which would wait for that peer.
func (wc *wsConn) drop() {
	wc.closeOnce.Do(func() {
		wc.stop()
		wc.c.CloseNow()
	})
}

// stalled reports a write that has been blocked for longer than d.
func (wc *wsConn) stalled(now time.Time, d time.Duration) bool {
	start := wc.writeStart.Load()
	return start != 0 && now.Sub(time.Unix(0, start)) > d
}

// wsRegistry holds the open WebSocket connections: the pinger visits them and shutdown waits
// for them.
type wsRegistry struct {
	mu    sync.Mutex
	conns map[*wsConn]struct{}
	wg    sync.WaitGroup
}

// add registers a connection, unless the server is shutting down (ctx ended).
func (r *wsRegistry) add(c *wsConn, ctx context.Context) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil {
		return false
	}
	if r.conns == nil {
		r.conns = map[*wsConn]struct{}{}
	}
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	return true
}

func (r *wsRegistry) remove(c *wsConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.conns, c)
	r.wg.Done()
}

// Wait blocks until every WebSocket connection has ended (they end when the server context
// is cancelled), or ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { s.wsConns.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// Both may be ready at once: select picks at random, so look at done again.
		select {
		case <-done:
			return nil
		default:
			return fmt.Errorf("websocket connections still open: %w", ctx.Err())
		}
	}
}

func (r *wsRegistry) snapshot() []*wsConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*wsConn, 0, len(r.conns))
	for c := range r.conns {
		out = append(out, c)
	}
	return out
}

// Run pings every WebSocket peer from one goroutine and drops those that do not answer or
// whose writes stall, until ctx ends. A dead peer is gone within about a minute.
func (s *Server) Run(ctx context.Context) {
	// A peer is pinged every interval and must answer within the next one; writes that stall
	// as long as a ping may take are cut off too. Dead peers go within two intervals.
	every := s.cfg.PingInterval
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Shutdown: tell every client to reconnect (1012). New connections are refused
			// from now on (add checks the same context under the same lock).
			for _, wc := range s.wsConns.snapshot() {
				go wc.close(websocket.StatusServiceRestart, "server restarting, reconnect")
			}
			return
		case now := <-t.C:
			for _, wc := range s.wsConns.snapshot() {
				if wc.stalled(now, max(every, writeTimeout)) {
					wc.drop()
					continue
				}
				go func() {
					pctx, cancel := context.WithTimeout(wc.ctx, every)
					defer cancel()
					if err := wc.c.Ping(pctx); err != nil && wc.ctx.Err() == nil {
						wc.drop()
					}
				}()
			}
		}
	}
}

// wsReadLoop answers the client's messages, each after its write committed. It returns the
// close status the connection should end with.
func (s *Server) wsReadLoop(ctx context.Context, c *websocket.Conn, n rules.Node, send func([]byte) error) (websocket.StatusCode, string) {
	reply := func(v any) {
		b, err := json.Marshal(v)
		if err == nil {
			send(b)
		}
	}
	fail := func(id json.RawMessage, err error) {
		_, code, msg := errorStatus(err)
		if rejectReason(errorStatusCode(err)) != "" {
			s.obs.ObserveRejected(rejectReason(errorStatusCode(err)))
		}
		reply(map[string]any{"type": "error", "id": rawID(id), "error": map[string]string{"code": code, "message": msg}})
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return websocket.StatusGoingAway, "connection closed"
		}
		if typ == websocket.MessageText && !utf8.Valid(data) {
			// RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection with 1007;
			// storing it with U+FFFD in place would change what the client sent.
			s.obs.ObserveRejected("bad_request")
			return websocket.StatusInvalidFramePayloadData, "text frame is not valid UTF-8"
		}
		if typ != websocket.MessageText {
			fail(nil, errorf(http.StatusBadRequest, "bad_message", "messages must be JSON text frames"))
			continue
		}
		var m wsIn
		if err := json.Unmarshal(data, &m); err != nil {
			// A field of the wrong type still leaves the id decoded: answer with it.
			fail(m.ID, decodeError(err))
			continue
		}
		switch m.Type {
		case "publish":
			cursors, err := s.publishEvents(ctx, n, m.Events)
			if err != nil {
				fail(m.ID, err)
				continue
			}
			reply(map[string]any{"type": "ack", "id": rawID(m.ID), "cursors": cursors})
		case "data":
			cursor, err := s.setNodeData(ctx, n, m.Data)
			if err != nil {
				fail(m.ID, err)
				continue
			}
			reply(map[string]any{"type": "ack", "id": rawID(m.ID), "cursors": []int64{cursor}})
		case "heartbeat":
			if _, _, err := s.store.Heartbeat(ctx, n.Group, n.ID); err != nil {
				fail(m.ID, err)
				continue
			}
			reply(map[string]any{"type": "ack", "id": rawID(m.ID), "cursors": []int64{}})
		default:
			fail(m.ID, errorf(http.StatusBadRequest, "bad_message", "unknown message type "+strconv.Quote(m.Type)+": use publish, data or heartbeat"))
		}
	}
}

func rawID(id json.RawMessage) json.RawMessage {
	if len(id) == 0 {
		return json.RawMessage("null")
	}
	return id
}
