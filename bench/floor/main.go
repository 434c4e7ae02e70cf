// Command floor is the no-storage broadcast floor `meshbox bench` compares
// meshbox with: the naive relay anyone writes in an afternoon, speaking just
// enough of meshbox's native API (create, join, publish, dissolve, WebSocket
// and SSE streams, long-poll) for the bench tool to drive it exactly as it
// drives meshbox. Nothing is stored; every subscriber has a goroutine and a
// queue, and every item is encoded once per subscriber. Long-polls read the
// last items kept in memory. It checks no tokens.
//
//	go run ./bench/floor -addr 127.0.0.1:8090
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

type item struct {
	Cursor  int64  `json:"cursor"`
	Kind    string `json:"kind"`
	Node    string `json:"node"`
	Name    string `json:"name"`
	Payload string `json:"payload"`
	At      string `json:"at"`
}

type relay struct {
	mu     sync.Mutex
	cursor int64
	subs   map[chan item]struct{}
	recent []item        // the last items, for long-polls
	wake   chan struct{} // closed by the next publish
}

// keep is how many recent items long-polls can read back.
const keep = 4096

func (r *relay) publish(it item) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cursor++
	it.Cursor = r.cursor
	if len(r.recent) == keep {
		r.recent = append(r.recent[:0], r.recent[keep/2:]...)
	}
	r.recent = append(r.recent, it)
	close(r.wake)
	r.wake = make(chan struct{})
	for ch := range r.subs {
		select {
		case ch <- it:
		default: // a subscriber this far behind loses items; the bench reports it
		}
	}
	return it.Cursor
}

// after returns the kept items after since, or the channel the next publish closes.
func (r *relay) after(since int64) ([]item, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []item
	for _, it := range r.recent {
		if it.Cursor > since {
			out = append(out, it)
		}
	}
	return out, r.wake
}

func (r *relay) subscribe() (chan item, func()) {
	ch := make(chan item, 1024)
	r.mu.Lock()
	r.subs[ch] = struct{}{}
	r.mu.Unlock()
	return ch, func() { r.mu.Lock(); delete(r.subs, ch); r.mu.Unlock() }
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8090", "listen address")
	flag.Parse()
	log.Fatal(http.ListenAndServe(*addr, newMux()))
}

// newMux serves the relay's routes.
func newMux() http.Handler {
	r := &relay{subs: map[chan item]struct{}{}, wake: make(chan struct{})}
	mux := http.NewServeMux()
	member := func(w http.ResponseWriter, g string) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"group":{"id":%q},"node":{"id":"n%d"},"token":"t","cursor":0}`, g, time.Now().UnixNano())
	}
	mux.HandleFunc("POST /api/v1/groups", func(w http.ResponseWriter, _ *http.Request) { member(w, "g") })
	mux.HandleFunc("POST /api/v1/groups/{g}/nodes", func(w http.ResponseWriter, q *http.Request) { member(w, q.PathValue("g")) })
	mux.HandleFunc("DELETE /api/v1/groups/{g}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("POST /api/v1/groups/{g}/events", func(w http.ResponseWriter, q *http.Request) {
		var in struct{ Events []item }
		if err := json.NewDecoder(q.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		cursors := make([]int64, len(in.Events))
		for i, it := range in.Events {
			it.Kind, it.At = "event", time.Now().UTC().Format(time.RFC3339Nano)
			cursors[i] = r.publish(it)
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string][]int64{"cursors": cursors})
	})
	mux.HandleFunc("GET /api/v1/groups/{g}/ws", func(w http.ResponseWriter, q *http.Request) {
		// Subscribed before the handshake completes: the client may publish as soon as it has
		// its answer, and the floor keeps nothing to replay.
		ch, unsub := r.subscribe()
		defer unsub()
		c, err := websocket.Accept(w, q, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		ctx := c.CloseRead(context.Background())
		for {
			select {
			case <-ctx.Done():
				return
			case it := <-ch:
				b, _ := json.Marshal(map[string]any{"type": "items", "items": []item{it}, "next": it.Cursor})
				if c.Write(ctx, websocket.MessageText, b) != nil {
					return
				}
			}
		}
	})
	mux.HandleFunc("GET /api/v1/groups/{g}/stream", func(w http.ResponseWriter, q *http.Request) {
		ch, unsub := r.subscribe()
		defer unsub()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		for {
			select {
			case <-q.Context().Done():
				return
			case it := <-ch:
				b, _ := json.Marshal(it)
				fmt.Fprintf(w, "id: %s\nevent: event\ndata: %s\n\n", strconv.FormatInt(it.Cursor, 10), b)
				w.(http.Flusher).Flush()
			}
		}
	})
	mux.HandleFunc("GET /api/v1/groups/{g}/events", func(w http.ResponseWriter, q *http.Request) {
		since, _ := strconv.ParseInt(q.URL.Query().Get("since"), 10, 64)
		wait, _ := strconv.Atoi(q.URL.Query().Get("wait"))
		timeout := time.After(time.Duration(wait) * time.Second)
		for {
			items, wake := r.after(since)
			if len(items) > 0 || wait == 0 {
				next := since
				if len(items) > 0 {
					next = items[len(items)-1].Cursor
				}
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"items": items, "next": next})
				return
			}
			select {
			case <-wake:
			case <-timeout:
				wait = 0
			case <-q.Context().Done():
				return
			}
		}
	})
	return mux
}
