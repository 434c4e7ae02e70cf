package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"meshbox/hub"
)

const (
	sseHeartbeat = 15 * time.Second
	sseRetry     = 2 * time.Second
)

// sseHeartbeat is how often an idle stream gets its ping event: every 15 s, or every ping
// interval when that is shorter (so SSE round trips are measured as often as WebSocket ones).
func (s *Server) sseHeartbeat() time.Duration {
	if p := s.cfg.PingInterval; p > 0 && p < sseHeartbeat {
		return p
	}
	return sseHeartbeat
}

// sseEchoMax bounds the round trip an SSE echo may report: an older ping is a stale echo.
const sseEchoMax = time.Minute

// sse serves GET …/stream: the group's items as Server-Sent Events, resumable by
// Last-Event-ID. The frames are package live's; this adapter only maps items to events.
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
	c, err := s.live.Open(r.Context(), s.clientIP(r), "sse")
	if err != nil {
		return err
	}
	defer c.Close()
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "sse")
	defer sub.Close()
	out := s.live.StartSSE(w, sseRetry)
	// A first comment goes out at once, so proxies and the browser see the stream open.
	out.Comment("connected")
	if err := out.Flush(); err != nil {
		return nil
	}
	err = s.follow(c.Context(), sub, rd.since, s.sseHeartbeat(), func(b hub.Batch) error {
		if b.Truncated {
			// The reset carries the cursor to resume from, so a plain EventSource that
			// reconnects now sends it as Last-Event-ID instead of the purged one (and is not
			// reset again): just before the first retained item, or the batch's end.
			id := b.Next
			if len(b.Items) > 0 {
				id = b.Items[0].Cursor - 1
			}
			out.Event(id, "reset", []byte(`{"type":"reset"}`))
		}
		for _, it := range b.Items {
			out.Event(it.Cursor, it.Kind, it.JSON)
		}
		if err := out.Flush(); err != nil {
			return err
		}
		s.delivered("sse", b.Items)
		return nil
	}, func() error {
		// The heartbeat is a ping event carrying its send time; a client that echoes it
		// (POST …/heartbeat?echo=T, as meshbox.js does) gives the stream's round trip: the
		// event's way down, the client's turn-around and the echo request's way up. Clients
		// that ignore it lose nothing: it keeps proxies from closing an idle stream as the
		// comment it replaces did.
		ping := strconv.AppendInt([]byte(`{"t":"`), time.Now().UnixNano(), 10)
		out.Event(-1, "ping", append(ping, `"}`...))
		return out.Flush()
	})
	if err != nil && c.ShuttingDown() {
		out.Shutdown()
	}
	return nil // the response has started: errors end the stream, they are not answered
}
