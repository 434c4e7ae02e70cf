package server

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"meshbox/apierror"
	"meshbox/hub"
	"meshbox/live"
	"meshbox/rules"
)

// wsIn is a message from a WebSocket client.
type wsIn struct {
	Type   string          `json:"type"`
	ID     json.RawMessage `json:"id"`
	Events eventList       `json:"events"`
	Data   dataMap         `json:"data"`
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
	// Pages of any origin may connect: access is by token, never by cookie.
	sock, err := s.live.Accept(w, r, s.clientIP(r), "ws", nil, s.log)
	if err != nil {
		if live.Answered(err) {
			return nil
		}
		return err
	}
	sock.SetReadLimit(s.cfg.MaxBodyBytes)
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "ws")
	sock.SetLink(sub) // the pinger's round trips and stall flags go to the node's presence
	p := &pump{s: s, sub: sub, out: sock, transport: "ws"}
	p.write = func(buf []byte, b hub.Batch) ([]byte, error) {
		if b.Truncated {
			buf = append(buf[:0], `{"type":"reset","next":`...)
			buf = strconv.AppendInt(buf, b.Next, 10)
			buf = append(buf, '}')
			if err := p.send(buf); err != nil {
				return buf, err
			}
		}
		if len(b.Items) > 0 {
			buf = append(buf[:0], `{"type":"items","items":`...)
			buf = appendItems(buf, b.Items)
			buf = append(buf, `,"next":`...)
			buf = strconv.AppendInt(buf, b.Next, 10)
			buf = append(buf, '}')
			if err := p.send(buf); err != nil {
				return buf, err
			}
		}
		return buf, nil
	}
	// The connection is hijacked: the handler returns and a fresh goroutine, with a small
	// stack rather than the deep one of the HTTP stack, reads the client's messages. While
	// idle that is the only goroutine the connection holds: items go out through the pump.
	go func() {
		p.start(rd.since)
		// An answer waits until the items committed before it were written: a client
		// acknowledged cursor 7 has item 7, and one told its group ended has the dissolve.
		answer := func(b []byte) error {
			if !p.reached(sock.Context(), sub.Head()) {
				return sock.Context().Err()
			}
			return sock.Write(b)
		}
		why := sock.Serve(s.wsHandler(sock.Context(), rd.node, answer))
		sock.Close(why)
		p.stop()
		sock.Release(why)
	}()
	return nil
}

// wsHandler answers the client's messages through send, each after its write committed; a
// message that must end the connection returns the reason to end it with.
func (s *Server) wsHandler(ctx context.Context, n rules.Node, send func([]byte) error) func(live.MessageType, []byte) (live.Reason, bool) {
	limits := s.store.Limits()
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
		e := map[string]any{"code": a.Code, "message": a.Message}
		if a.RetryAfter > 0 {
			// What the Retry-After header says over HTTP, in whole seconds rounded up.
			e["retryAfter"] = int64(math.Ceil(a.RetryAfter.Seconds()))
		}
		reply(map[string]any{"type": "error", "id": rawID(id), "error": e})
	}
	return func(typ live.MessageType, data []byte) (why live.Reason, end bool) {
		// A panic answering a message ends this connection, not the process: the recoverer
		// guards handlers, not the goroutine that outlives this one. (Deferred here, per
		// message, and not in that goroutine, whose idle stack must stay small.)
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("panic answering a websocket message", "panic", v)
				why, end = live.Internal, true
			}
		}()
		// Every message costs the node one request, as the HTTP request it stands for would,
		// and before any work (the decode included): an open socket is no way around
		// --node-rate and --group-rate. A refused message costs nothing and is answered like
		// the HTTP 429, with its id; the connection stays open.
		if err := s.budgets.ChargeNode(n.Group, n.ID); err != nil {
			var m struct {
				ID json.RawMessage `json:"id"`
			}
			if typ == live.Text {
				_ = json.Unmarshal(data, &m) // an id when there is one; the rest is not read
			}
			fail(m.ID, err)
			return live.Reason{}, false
		}
		if typ != live.Text {
			fail(nil, errorf(http.StatusBadRequest, "bad_message", "messages must be JSON text frames"))
			return live.Reason{}, false
		}
		m := wsIn{Events: eventList{limits: limits}, Data: dataMap{limits: limits}}
		if err := json.Unmarshal(data, &m); err != nil {
			// Answer with the id even when decoding stopped before it: a bounded part
			// (bounded.go) ends the decode at its first refusal. Decoding only the id skips
			// the rest without building it.
			if len(m.ID) == 0 {
				var only struct {
					ID json.RawMessage `json:"id"`
				}
				_ = json.Unmarshal(data, &only)
				m.ID = only.ID
			}
			fail(m.ID, decodeError(err))
			return live.Reason{}, false
		}
		switch m.Type {
		case "publish":
			cursors, err := s.publishEvents(ctx, n, m.Events.events)
			if err != nil {
				fail(m.ID, err)
				break
			}
			reply(map[string]any{"type": "ack", "id": rawID(m.ID), "cursors": cursors})
		case "data":
			cursor, err := s.setNodeData(ctx, n, m.Data.data)
			if err != nil {
				fail(m.ID, err)
				break
			}
			reply(map[string]any{"type": "ack", "id": rawID(m.ID), "cursors": []int64{cursor}})
		case "heartbeat":
			if _, _, err := s.store.Heartbeat(ctx, n.Group, n.ID); err != nil {
				fail(m.ID, err)
				break
			}
			reply(map[string]any{"type": "ack", "id": rawID(m.ID), "cursors": []int64{}})
		default:
			fail(m.ID, errorf(http.StatusBadRequest, "bad_message", "unknown message type "+strconv.Quote(m.Type)+": use publish, data or heartbeat"))
		}
		return live.Reason{}, false
	}
}

func rawID(id json.RawMessage) json.RawMessage {
	if len(id) == 0 {
		return json.RawMessage("null")
	}
	return id
}
