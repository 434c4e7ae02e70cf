package web

import (
	"context"
	"encoding/json"
	"meshbox/apierror"
	"meshbox/live"
	"meshbox/stream"
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
)

// message is one SSE event, encoded once and shared by every dashboard.
type message []byte

func sseMessage(event string, data []byte) message {
	return live.AppendEvent(make([]byte, 0, len(data)+len(event)+16), -1, event, data)
}

// subscriber is one open dashboard stream.
type subscriber struct {
	// admin streams get the details (group and node names, data, items); others only the
	// aggregate overview.
	admin bool
	// from is the cursor after which the broadcaster's item batches reach this stream: a
	// teacher's stream opens with the recent items up to it (the backfill), so none is shown
	// twice and none is missed.
	from   int64
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
	// admins counts the admin streams among subs; they have slots of their own, so a class
	// that opens the dashboard many times never keeps the teacher out.
	admins int
	// since is where the item feed starts: taken when the handler is built, so items
	// committed before Run's goroutine gets to run are not skipped.
	since int64
	// sent is the cursor through which item batches were offered to the admin streams; a
	// stream subscribing now gets every batch after it (under mu, like subs).
	sent int64
}

func newBroadcaster(h *Handler) *broadcaster {
	b := &broadcaster{h: h, subs: make(map[*subscriber]struct{})}
	if h.store != nil {
		b.since = h.store.LastCursor()
	}
	b.sent = b.since
	return b
}

func (b *broadcaster) subscribe(admin bool) (*subscriber, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if admin && b.admins >= b.h.cfg.AdminStreams || !admin && len(b.subs)-b.admins >= b.h.cfg.MaxStreams {
		return nil, false
	}
	s := &subscriber{admin: admin, from: b.sent, ch: make(chan message, streamQueue)}
	b.subs[s] = struct{}{}
	if admin {
		b.admins++
	}
	return s, true
}

func (b *broadcaster) unsubscribe(s *subscriber) {
	b.mu.Lock()
	delete(b.subs, s)
	if s.admin {
		b.admins--
	}
	b.mu.Unlock()
}

func (b *broadcaster) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}

// sendOverview sends the full overview to admin streams and the aggregate one to the others,
// each encoded once.
func (b *broadcaster) sendOverview(o Overview) {
	b.mu.Lock()
	admins, others := b.admins, len(b.subs)-b.admins
	b.mu.Unlock()
	for _, v := range []struct {
		o     Overview
		n     int
		admin bool
	}{{o, admins, true}, {o.aggregate(), others, false}} {
		if v.n == 0 {
			continue
		}
		data, err := json.Marshal(v.o)
		if err != nil {
			b.h.log.Error("encode overview", "err", err)
			continue
		}
		b.sendTo(sseMessage("overview", data), v.admin)
	}
}

// sendTo offers m to the admin streams, or to the others, without ever blocking: a dashboard
// too slow to keep up loses messages and is told so with a reset, it never slows the others.
func (b *broadcaster) sendTo(m message, admin bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.offerLocked(m, admin)
}

// offerLocked is sendTo with b.mu held.
func (b *broadcaster) offerLocked(m message, admin bool) {
	for s := range b.subs {
		if s.admin != admin {
			continue
		}
		select {
		case s.ch <- m:
		default:
			s.mu.Lock()
			s.lagged = true
			s.mu.Unlock()
		}
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
		}
		if b.count() == 0 {
			continue
		}
		b.sendOverview(b.h.overview(ctx))
	}
}

// feedEntry is how an item travels to the dashboard: the group id plus the item's own JSON,
// reused as encoded by the writer.
type feedEntry struct {
	Group string          `json:"group"`
	Item  json.RawMessage `json:"item"`
}

// feedItems is the data of an items event.
type feedItems struct {
	Items []feedEntry `json:"items"`
	Next  int64       `json:"next"`
	// Backfill marks the event a teacher's stream opens with: activity from before it opened.
	Backfill bool `json:"backfill,omitempty"`
}

// sendItems offers a batch of the feed, through next, to the admin streams (payloads: the
// teacher's only) and moves sent to next in the same critical section, so a stream subscribing
// at any moment either gets this batch live or has it in its backfill, never both or neither.
func (b *broadcaster) sendItems(items []stream.Item, next int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = next
	if len(items) == 0 || b.admins == 0 {
		return
	}
	entries := make([]feedEntry, 0, len(items))
	for _, it := range items {
		entries = append(entries, feedEntry{Group: it.Group, Item: it.JSON})
	}
	data, err := json.Marshal(feedItems{Items: entries, Next: next})
	if err != nil {
		b.h.log.Error("encode feed items", "err", err)
		return
	}
	b.offerLocked(sseMessage("items", data), true)
}

func (b *broadcaster) runItems(ctx context.Context) {
	since := b.since
	for {
		items, next, truncated := b.h.feed.ReadAll(since, itemBatchMax)
		if truncated {
			b.sendTo(sseMessage("reset", []byte("{}")), true)
		}
		since = next
		b.sendItems(items, next)
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

// stream is the dashboard's single live connection (Server-Sent Events, written by package
// live, which also registers it and ends it at shutdown). With the admin token (?token=, as
// EventSource sends no headers) it carries every detail; without, the aggregate overview only.
// Streams without the token count toward the per-address connection cap like any other
// stream; the teacher's are not charged to the address, since the dashboard keeps slots of its
// own for them (a class behind one NAT must not lock the teacher out).
func (h *Handler) stream(w http.ResponseWriter, r *http.Request) {
	admin := h.isAdmin(r)
	addr := ""
	if !admin {
		addr = h.cfg.Clients.IP(r)
	}
	sub, ok := h.hub.subscribe(admin)
	if !ok {
		h.errs.Write(w, r, &apierror.Error{Status: http.StatusServiceUnavailable, Code: "too_many_dashboards",
			Msg: "too many dashboards are open; close one and retry", RetryAfter: 5 * time.Second})
		return
	}
	defer h.hub.unsubscribe(sub)

	j := h.join(r)
	hello, _ := json.Marshal(map[string]any{
		"version":      h.cfg.Version,
		"adminEnabled": h.cfg.AdminToken != "",
		"admin":        admin,
		"joinURLs":     j.URLs,
		"join":         j,
	})
	// The first overview goes out at once, not after up to a second.
	o := h.overview(r.Context())
	if !admin {
		o = o.aggregate()
	}
	first, err := json.Marshal(o)
	if err != nil {
		return
	}
	head := live.AppendRetry(nil, 2*time.Second)
	head = live.AppendEvent(head, -1, "hello", hello)
	head = live.AppendEvent(head, -1, "overview", first)
	if admin {
		// The groups' recent activity, after the overview that names them; live items (after
		// sub.from) follow on sub.ch.
		recent, err := h.backfill(sub.from)
		if err != nil {
			h.log.Error("dashboard backfill", "err", err)
		} else {
			head = live.AppendEvent(head, -1, "items", recent)
		}
	}
	st, err := h.conns.StartStream(w, r, addr, "dashboard", head, h.log)
	if err != nil {
		if !live.Answered(err) {
			h.errs.Write(w, r, err)
		}
		return
	}
	// A comment now and then keeps proxies from closing a quiet stream (the manager's ticker
	// sends it).
	st.OnHeartbeat(func() {
		if st.Write(live.AppendComment(nil, strconv.FormatInt(time.Now().Unix(), 10))) != nil {
			st.Drop(live.PeerGone)
		}
	})
	gone := make(chan struct{})
	go func() { st.Serve(); close(gone) }()
	defer func() { st.Release(live.PeerGone); <-gone }()
	for {
		select {
		case <-st.Context().Done():
			return
		case m := <-sub.ch:
			sub.mu.Lock()
			lagged := sub.lagged
			sub.lagged = false
			sub.mu.Unlock()
			var b []byte
			if lagged {
				b = live.AppendEvent(b, -1, "reset", []byte("{}"))
			}
			if st.Write(append(b, m...)) != nil {
				return
			}
		}
	}
}
