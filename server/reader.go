package server

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/auth"
	"meshbox/hub"
	"meshbox/rules"
	"meshbox/stream"
)

// What every native stream transport (long-poll.go, sse.go, websocket.go) shares: who reads
// from where, the encoding of items, and the loop over the hub. Their connections' life
// (registration, caps, shutdown, pings, close codes) is package live's.

// streamBatch bounds the items one frame or event burst carries; a reader that is behind gets
// them all in few frames.
const streamBatch = 1000

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
	n, ok := chargedNode(r.Context(), gid, tok) // authenticated by limit a moment ago
	if !ok {
		var err error
		if n, _, err = s.store.AuthenticateReader(gid, tok); err != nil {
			return reader{}, err
		}
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

func itemsLen(items []stream.Item) int {
	n := 0
	for _, it := range items {
		n += len(it.JSON) + 1
	}
	return n
}

func (s *Server) delivered(transport string, items []stream.Item) {
	if len(items) > 0 {
		s.obs.ObserveDelivered(transport, len(items), items[0].At)
	}
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
