package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"meshbox/hub"
	"meshbox/live"
)

// sseRetry is the reconnection delay an EventSource is told to wait.
const sseRetry = 2 * time.Second

// sseEchoMax bounds the round trip an SSE echo may report: an older ping is a stale echo.
const sseEchoMax = time.Minute

// sse serves GET …/stream: the group's items as Server-Sent Events, resumable by
// Last-Event-ID. The stream is package live's (hijacked: an idle stream holds no handler);
// this adapter only maps items to events, sent by a pump like a WebSocket's.
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
	// A first comment goes out with the headers, so proxies and the browser see the stream open.
	first := live.AppendComment(live.AppendRetry(nil, sseRetry), "connected")
	st, err := s.live.StartStream(w, r, s.clientIP(r), "sse", first, s.log)
	if err != nil {
		if live.Answered(err) {
			return nil // the connection failed as it was taken over: nobody to answer
		}
		return err
	}
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "sse")
	st.SetLink(sub) // stalls go to the node's presence (round trips come with the echoes)
	p := &pump{s: s, sub: sub, out: st, transport: "sse"}
	p.write = func(buf []byte, b hub.Batch) ([]byte, error) {
		if b.Truncated {
			// The reset carries the cursor to resume from, so a plain EventSource that
			// reconnects now sends it as Last-Event-ID instead of the purged one (and is not
			// reset again): just before the first retained item, or the batch's end.
			id := b.Next
			if len(b.Items) > 0 {
				id = b.Items[0].Cursor - 1
			}
			buf = live.AppendEvent(buf, id, "reset", []byte(`{"type":"reset"}`))
		}
		for _, it := range b.Items {
			buf = live.AppendEvent(buf, it.Cursor, it.Kind, it.JSON)
		}
		return buf, p.send(buf)
	}
	// The heartbeat is a ping event carrying its send time; a client that echoes it
	// (POST …/heartbeat?echo=T, as meshbox.js does) gives the stream's round trip: the
	// event's way down, the client's turn-around and the echo request's way up. Clients that
	// ignore it lose nothing: it keeps proxies from closing an idle stream.
	st.OnHeartbeat(func() {
		ping := strconv.AppendInt([]byte(`{"t":"`), time.Now().UnixNano(), 10)
		if st.Write(live.AppendEvent(nil, -1, "ping", append(ping, `"}`...))) != nil {
			st.Drop(live.PeerGone)
		}
	})
	go func() {
		p.start(rd.since)
		why := st.Serve()
		p.stop()
		st.Release(why)
	}()
	return nil
}
