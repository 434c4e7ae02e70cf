package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/coder/websocket"

	"meshbox/apierror"
	"meshbox/hub"
	"meshbox/live"
	"meshbox/rules"
)

// wsIn is a message from a WebSocket client.
type wsIn struct {
	Type   string            `json:"type"`
	ID     json.RawMessage   `json:"id"`
	Events []eventIn         `json:"events"`
	Data   map[string]string `json:"data"`
}

// wsConn is one native WebSocket reader over a live.Socket (which owns its life: pings, stall
// checks, close codes, shutdown). While idle it costs no goroutine of its own besides the one
// that reads the client's messages: the hub calls wake on new items, which starts a
// short-lived flush goroutine that sends everything pending in as few frames as it can.
type wsConn struct {
	s    *Server
	sock *live.Socket
	sub  *hub.Sub

	since   int64       // owned by the flusher that holds running
	running atomic.Bool // a flusher is running
	pending atomic.Bool // items arrived since the flusher last looked
	flushes sync.WaitGroup
	// mu orders starting a flusher against the end of the connection: once ended is set,
	// no flusher starts, so waiting for flushes is safe.
	mu    sync.Mutex
	ended bool
}

// websocket serves GET …/ws.
func (s *Server) websocket(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.NoWebSocket {
		return errorf(http.StatusForbidden, "websocket_disabled", "WebSocket is disabled on this server: use SSE or long-poll")
	}
	rd, err := s.openReader(r, r.URL.Query(), "")
	if err != nil {
		return err
	}
	sock, err := s.live.Accept(w, r, s.clientIP(r), "ws", &live.AcceptOptions{
		// Pages of any origin may connect: access is by token, never by cookie.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	}, s.log)
	if err != nil {
		if live.Answered(err) || errors.Is(err, live.ErrShuttingDown) {
			return nil
		}
		return err
	}
	sock.WS().SetReadLimit(s.cfg.MaxBodyBytes)
	wc := &wsConn{s: s, sock: sock, since: rd.since}
	wc.sub = s.hub.Subscribe(rd.node.Group, rd.node.ID, "ws")
	sock.SetLink(wc.sub) // the pinger's round trips and stall flags go to the node's presence
	// The connection is hijacked: the handler returns and a fresh goroutine, with a small
	// stack rather than the deep one of the HTTP stack, serves it.
	go wc.serve(rd.node)
	return nil
}

// serve runs the connection until the peer or the server ends it.
func (wc *wsConn) serve(n rules.Node) {
	wc.sub.Notify(wc.wake)
	wc.wake() // the backlog after the client's cursor
	why := wc.s.wsReadLoop(wc.sock.Context(), wc.sock.WS(), n, wc.sock.Write)
	wc.sock.Close(why)
	wc.sub.Close()
	wc.mu.Lock()
	wc.ended = true // no flusher starts after this, so the wait below is final
	wc.mu.Unlock()
	wc.flushes.Wait()
	wc.sock.Release(why)
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
				wc.sock.Close(live.Ended)
			case wc.sock.Context().Err() == nil:
				wc.s.log.Debug("websocket flush", "err", err)
				wc.sock.Close(live.Internal)
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
		b, err := wc.sub.Read(wc.sock.Context(), wc.since, streamBatch)
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
			if err := wc.sock.Write(buf); err != nil {
				return false, err
			}
		}
		if len(b.Items) > 0 {
			buf = append(buf[:0], `{"type":"items","items":`...)
			buf = appendItems(buf, b.Items)
			buf = append(buf, `,"next":`...)
			buf = strconv.AppendInt(buf, b.Next, 10)
			buf = append(buf, '}')
			if err := wc.sock.Write(buf); err != nil {
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

// wsReadLoop answers the client's messages, each after its write committed. It returns the
// reason the connection should end with.
func (s *Server) wsReadLoop(ctx context.Context, c *websocket.Conn, n rules.Node, send func([]byte) error) live.Reason {
	reply := func(v any) {
		b, err := json.Marshal(v)
		if err == nil {
			send(b)
		}
	}
	fail := func(id json.RawMessage, err error) {
		a := apierror.Of(err)
		if a.Reject != "" {
			s.obs.ObserveRejected(a.Reject)
		}
		reply(map[string]any{"type": "error", "id": rawID(id), "error": map[string]string{"code": a.Code, "message": a.Message}})
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return live.PeerGone
		}
		if typ == websocket.MessageText && !utf8.Valid(data) {
			// RFC 6455 §8.1: a text frame that is not UTF-8 fails the connection with 1007;
			// storing it with U+FFFD in place would change what the client sent.
			s.obs.ObserveRejected("bad_request")
			return live.BadFrame
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
