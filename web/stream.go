package web

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
)

const (
	overviewEvery  = time.Second
	itemBatchEvery = 100 * time.Millisecond // at most ten item messages a second per dashboard
	itemBatchMax   = 500                    // items read from the feed per batch
	streamQueue    = 64                     // messages a dashboard may lag before it is told to reset
	heartbeatEvery = 15 * time.Second
	writeTimeout   = 10 * time.Second
)

// message is one SSE event, encoded once and shared by every dashboard.
type message []byte

func sseMessage(event string, data []byte) message {
	var b bytes.Buffer
	b.Grow(len(data) + len(event) + 16)
	b.WriteString("event: ")
	b.WriteString(event)
	b.WriteString("\ndata: ")
	b.Write(data) // JSON never contains a raw newline, so one data line suffices
	b.WriteString("\n\n")
	return b.Bytes()
}

// subscriber is one open dashboard stream.
type subscriber struct {
	ch     chan message
	mu     sync.Mutex
	lagged bool // a message was dropped; a reset is due
}

// broadcaster is the one goroutine behind every dashboard stream: it samples rates, builds
// the overview once a second and reads the global item feed once, whatever the number of
// dashboards, so a second teacher tab costs a channel, not another poller.
type broadcaster struct {
	h     *Handler
	rates rates
	mu    sync.Mutex
	subs  map[*subscriber]struct{}
	// kick asks for an immediate overview, for example right after an admin action.
	kick chan struct{}
}

func newBroadcaster(h *Handler) *broadcaster {
	return &broadcaster{h: h, subs: make(map[*subscriber]struct{}), kick: make(chan struct{}, 1)}
}

func (b *broadcaster) subscribe() (*subscriber, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) >= b.h.cfg.MaxStreams {
		return nil, false
	}
	s := &subscriber{ch: make(chan message, streamQueue)}
	b.subs[s] = struct{}{}
	return s, true
}

func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	b.mu.Unlock()
}

func (b *broadcaster) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// send offers m to every subscriber without ever blocking: a dashboard too slow to keep up
// loses messages and is told so with a reset, it never slows the others.
func (b *broadcaster) send(m message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs {
		select {
		case s.ch <- m:
		default:
			s.mu.Lock()
			s.lagged = true
			s.mu.Unlock()
		}
	}
}

func (b *broadcaster) poke() {
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

func (b *broadcaster) run(ctx context.Context) {
	go b.runItems(ctx)
	tick := time.NewTicker(overviewEvery)
	defer tick.Stop()
	b.rates.sample(time.Now(), b.h.meter.Totals())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			b.rates.sample(now, b.h.meter.Totals())
		case <-b.kick:
		}
		if b.count() == 0 {
			continue
		}
		data, err := json.Marshal(b.h.overview(ctx))
		if err != nil {
			b.h.log.Error("encode overview", "err", err)
			continue
		}
		b.send(sseMessage("overview", data))
	}
}

// feedEntry is how an item travels to the dashboard: the group id plus the item's own JSON,
// reused as encoded by the writer.
type feedEntry struct {
	Group string          `json:"group"`
	Item  json.RawMessage `json:"item"`
}

func (b *broadcaster) runItems(ctx context.Context) {
	since := b.h.store.LastCursor()
	for {
		items, next, truncated := b.h.feed.ReadAll(since, itemBatchMax)
		if truncated {
			b.send(sseMessage("reset", []byte("{}")))
		}
		since = next
		if len(items) > 0 && b.count() > 0 {
			entries := make([]feedEntry, 0, len(items))
			for _, it := range items {
				entries = append(entries, feedEntry{Group: it.Group, Item: it.JSON})
			}
			data, err := json.Marshal(map[string]any{"items": entries, "next": next})
			if err != nil {
				b.h.log.Error("encode feed items", "err", err)
			} else {
				b.send(sseMessage("items", data))
			}
		}
		if len(items) == itemBatchMax {
			continue // more are ready; no need to wait
		}
		if err := b.h.feed.WaitAll(ctx, since); err != nil {
			return
		}
		// Let items gather briefly so a busy class becomes a few messages a second.
		select {
		case <-ctx.Done():
			return
		case <-time.After(itemBatchEvery):
		}
	}
}

// stream is the dashboard's single live connection (Server-Sent Events).
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	sub, ok := h.hub.subscribe()
	if !ok {
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "too_many_dashboards", "too many dashboards are open; close one and retry")
		return
	}
	defer h.hub.unsubscribe(sub)

	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	hello, _ := json.Marshal(map[string]any{
		"version":      h.cfg.Version,
		"adminEnabled": h.cfg.AdminToken != "",
		"joinURLs":     joinURLs(r, h.cfg.PublicURL, h.cfg.LANHost),
	})
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The first overview goes out at once, not after up to a second.
	first, err := json.Marshal(h.overview(r.Context()))
	if err != nil {
		return
	}
	if !write([]byte("retry: 2000\n\n")) || !write(sseMessage("hello", hello)) || !write(sseMessage("overview", first)) {
		return
	}

	hb := time.NewTicker(heartbeatEvery)
	defer hb.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case m := <-sub.ch:
			sub.mu.Lock()
			lagged := sub.lagged
			sub.lagged = false
			sub.mu.Unlock()
			if lagged && !write(sseMessage("reset", []byte("{}"))) {
				return
			}
			if !write(m) {
				return
			}
		case now := <-hb.C:
			if !write([]byte(": " + strconv.FormatInt(now.Unix(), 10) + "\n\n")) {
				return
			}
		}
	}
}
