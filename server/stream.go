package server

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/go-chi/chi/v5"

	"meshbox/db"
	"meshbox/hub"
)

const (
	// streamBatch bounds the items one frame or event burst carries; a reader that is behind
	// gets them all in few frames.
	streamBatch = 1000
	// writeTimeout drops a reader whose socket accepts nothing for this long; it can resume by
	// cursor.
	writeTimeout  = 15 * time.Second
	sseHeartbeat  = 15 * time.Second
	wsPingEvery   = 20 * time.Second
	wsPingTimeout = 20 * time.Second
)

// reader is an authenticated reader of a group at a cursor.
type reader struct {
	node  db.Node
	since int64
}

// openReader authenticates a reader and parses its cursor: lastEventID (SSE) wins over since;
// no cursor means "from now".
func (s *Server) openReader(r *http.Request, lastEventID string) (reader, error) {
	gid := chi.URLParam(r, "gid")
	tok := token(r)
	if tok == "" {
		return reader{}, errorf(http.StatusUnauthorized, "unauthorized", "missing token: send Authorization: Bearer TOKEN (or ?token=)")
	}
	n, _, err := s.store.AuthenticateReader(gid, tok)
	if err != nil {
		return reader{}, err
	}
	raw := lastEventID
	if raw == "" {
		raw = r.URL.Query().Get("since")
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
func appendItems(b []byte, items []db.Item) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.JSON...)
	}
	return append(b, ']')
}

func (s *Server) delivered(transport string, items []db.Item) {
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
	rd, err := s.openReader(r, "")
	if err != nil {
		return err
	}
	q := r.URL.Query()
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
		if r.Context().Err() != nil {
			return r.Context().Err()
		}
		if err == nil {
			if b, err = sub.Read(r.Context(), b.Next, limit); err != nil {
				return err
			}
		}
	}
	if len(b.Items) == 0 && !b.Truncated {
		if _, ended, err := s.store.GroupState(rd.node.Group); err == nil && ended {
			return errorf(http.StatusGone, "group_ended", "group "+rd.node.Group+" has ended")
		}
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

func itemsLen(items []db.Item) int {
	n := 0
	for _, it := range items {
		n += len(it.JSON) + 1
	}
	return n
}

// follow delivers the group's items after since to emit, waiting for new ones, until the group
// ends (nil), ctx ends, or emit fails. idle is called when nothing arrived for idleEvery.
func (s *Server) follow(ctx context.Context, sub *hub.Sub, since int64, idleEvery time.Duration, emit func(hub.Batch) error, idle func() error) error {
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
		wctx, cancel := context.WithTimeout(ctx, idleEvery)
		err = sub.Wait(wctx, since)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil && idle != nil {
			if err := idle(); err != nil {
				return err
			}
		}
	}
}

func (s *Server) sse(w http.ResponseWriter, r *http.Request) error {
	lastID := r.Header.Get("Last-Event-ID")
	if lastID == "" {
		lastID = r.URL.Query().Get("lastEventId")
	}
	rd, err := s.openReader(r, strings.TrimSpace(lastID))
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
			buf = append(buf, "event: reset\ndata: {\"type\":\"reset\"}\n\n"...)
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

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.NoWebSocket {
		return errorf(http.StatusForbidden, "websocket_disabled", "WebSocket is disabled on this server: use SSE or long-poll")
	}
	rd, err := s.openReader(r, "")
	if err != nil {
		return err
	}
	release, err := s.openStream(r)
	if err != nil {
		return err
	}
	defer release()
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		// Pages of any origin may connect: access is by token, never by cookie.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		return nil // Accept has answered the client
	}
	defer c.CloseNow()
	c.SetReadLimit(s.cfg.MaxBodyBytes)
	s.obs.ConnOpened("ws")
	defer s.obs.ConnClosed("ws")
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "ws")
	defer sub.Close()
	ctx, cancel := s.streamContext(r)
	defer cancel()

	send := func(b []byte) error {
		wctx, cancel := context.WithTimeout(r.Context(), writeTimeout)
		defer cancel()
		return c.Write(wctx, websocket.MessageText, b)
	}
	// The read loop and pinger get their own context: cancelling a Read closes the connection,
	// and on shutdown the close must carry status 1012, sent below.
	rctx, rcancel := context.WithCancel(r.Context())
	done := make(chan struct{})
	defer func() { rcancel(); <-done }()
	go func() {
		defer close(done)
		defer cancel() // the peer is gone: stop following
		s.wsReadLoop(rctx, c, rd.node, send)
	}()
	go func() {
		t := time.NewTicker(wsPingEvery)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(rctx, wsPingTimeout)
				err := c.Ping(pctx)
				pcancel()
				if err != nil {
					cancel() // a dead peer: drop it
					return
				}
			}
		}
	}()

	var buf []byte
	err = s.follow(ctx, sub, rd.since, time.Hour, func(b hub.Batch) error {
		if b.Truncated {
			buf = append(buf[:0], `{"type":"reset","next":`...)
			buf = strconv.AppendInt(buf, b.Next, 10)
			buf = append(buf, '}')
			if err := send(buf); err != nil {
				return err
			}
		}
		if len(b.Items) == 0 {
			return nil
		}
		buf = append(buf[:0], `{"type":"items","items":`...)
		buf = appendItems(buf, b.Items)
		buf = append(buf, `,"next":`...)
		buf = strconv.AppendInt(buf, b.Next, 10)
		buf = append(buf, '}')
		if err := send(buf); err != nil {
			return err
		}
		s.delivered("ws", b.Items)
		return nil
	}, nil)
	switch {
	case err == nil:
		c.Close(websocket.StatusNormalClosure, "group dissolved")
	case s.ctx.Err() != nil:
		c.Close(websocket.StatusServiceRestart, "server restarting, reconnect")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		c.Close(websocket.StatusGoingAway, "connection dropped")
	default:
		c.Close(websocket.StatusInternalError, "stream failed")
	}
	return nil
}

// wsReadLoop answers the client's messages, each after its write committed.
func (s *Server) wsReadLoop(ctx context.Context, c *websocket.Conn, n db.Node, send func([]byte) error) {
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
			return
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
