package bench

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// fakeMeshbox is a small in-memory implementation of the native API's
// stream contract, so the tool's client side (transports, loss accounting,
// scenarios) can be tested on its own. Its fault hook corrupts delivery on
// purpose to prove the tool notices.
type fakeMeshbox struct {
	mu     sync.Mutex
	cursor int64
	groups map[string]*fakeGroup
	tokens map[string]string // token → group id
	wake   chan struct{}     // closed and replaced on every append

	// fault, if set, decides per delivered event item: "drop" skips it,
	// "dup" sends it twice. It must be deterministic per cursor.
	fault func(cursor int64) string
}

type fakeGroup struct {
	cursors []int64
	bodies  [][]byte
	kinds   []string
}

func newFakeMeshbox(t *testing.T) (*fakeMeshbox, *httptest.Server) {
	t.Helper()
	f := &fakeMeshbox{groups: map[string]*fakeGroup{}, tokens: map[string]string{}, wake: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/groups", f.create)
	mux.HandleFunc("POST /api/v1/groups/{gid}/nodes", f.join)
	mux.HandleFunc("POST /api/v1/groups/{gid}/events", f.publish)
	mux.HandleFunc("PUT /api/v1/groups/{gid}/data", f.data)
	mux.HandleFunc("DELETE /api/v1/groups/{gid}", func(w http.ResponseWriter, r *http.Request) {
		if _, ok := f.auth(w, r); ok {
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("GET /api/v1/groups/{gid}/events", f.poll)
	mux.HandleFunc("GET /api/v1/groups/{gid}/stream", f.sse)
	mux.HandleFunc("GET /api/v1/groups/{gid}/ws", f.ws)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// appendItem adds an item to gid's stream; the caller holds f.mu.
func (f *fakeMeshbox) appendItem(gid, kind string, fields map[string]any) int64 {
	f.cursor++
	fields["cursor"] = f.cursor
	fields["kind"] = kind
	fields["at"] = time.Now().UTC().Format(time.RFC3339Nano)
	b, _ := json.Marshal(fields)
	g := f.groups[gid]
	g.cursors = append(g.cursors, f.cursor)
	g.bodies = append(g.bodies, b)
	g.kinds = append(g.kinds, kind)
	close(f.wake)
	f.wake = make(chan struct{})
	return f.cursor
}

func (f *fakeMeshbox) member(w http.ResponseWriter, gid, name string) {
	tok := fmt.Sprintf("tok-%s-%d", gid, f.cursor)
	f.tokens[tok] = gid
	c := f.appendItem(gid, "join", map[string]any{"node": name, "name": name})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(map[string]any{
		"group": map[string]any{"id": gid}, "node": map[string]any{"id": name}, "token": tok, "cursor": c,
	})
}

func (f *fakeMeshbox) create(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gid := "g" + strconv.Itoa(len(f.groups)+1)
	f.groups[gid] = &fakeGroup{}
	f.member(w, gid, "host")
}

func (f *fakeMeshbox) join(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	gid := r.PathValue("gid")
	if f.groups[gid] == nil {
		http.Error(w, `{"error":{"code":"group_not_found","message":"no"}}`, http.StatusNotFound)
		return
	}
	var body struct{ Name string }
	json.NewDecoder(r.Body).Decode(&body)
	f.member(w, gid, body.Name)
}

// auth checks the bearer token (or ?token=) against the path's group.
func (f *fakeMeshbox) auth(w http.ResponseWriter, r *http.Request) (string, bool) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		tok = r.URL.Query().Get("token")
	}
	f.mu.Lock()
	gid, ok := f.tokens[tok]
	f.mu.Unlock()
	if !ok || gid != r.PathValue("gid") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":{"code":"unauthorized","message":"bad token"}}`))
		return "", false
	}
	return gid, true
}

func (f *fakeMeshbox) publish(w http.ResponseWriter, r *http.Request) {
	gid, ok := f.auth(w, r)
	if !ok {
		return
	}
	var body struct {
		Events []struct{ Name, Payload string }
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		http.Error(w, `{"error":{"code":"bad_request","message":"json"}}`, http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	cursors := make([]int64, len(body.Events))
	for i, e := range body.Events {
		cursors[i] = f.appendItem(gid, "event", map[string]any{"node": "n", "name": e.Name, "payload": e.Payload})
	}
	f.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"cursors": cursors, "next": cursors[len(cursors)-1]})
}

func (f *fakeMeshbox) data(w http.ResponseWriter, r *http.Request) {
	gid, ok := f.auth(w, r)
	if !ok {
		return
	}
	var body struct{ Data map[string]string }
	json.NewDecoder(r.Body).Decode(&body)
	f.mu.Lock()
	c := f.appendItem(gid, "data", map[string]any{"node": "n", "data": body.Data})
	f.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{"cursor": c})
}

// read returns gid's items after since, with faults applied, and a channel
// closed at the next append.
func (f *fakeMeshbox) read(gid string, since int64) ([][]byte, int64, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.groups[gid]
	var out [][]byte
	next := since
	for i, c := range g.cursors {
		if c <= since {
			continue
		}
		next = c
		switch {
		case f.fault == nil || g.kinds[i] != "event":
			out = append(out, g.bodies[i])
		case f.fault(c) == "drop":
		case f.fault(c) == "dup":
			out = append(out, g.bodies[i], g.bodies[i])
		default:
			out = append(out, g.bodies[i])
		}
	}
	return out, next, f.wake
}

func since(r *http.Request) int64 {
	n, _ := strconv.ParseInt(r.URL.Query().Get("since"), 10, 64)
	return n
}

func itemsJSON(items [][]byte) string {
	return "[" + string(joinBytes(items)) + "]"
}

func joinBytes(items [][]byte) []byte {
	var b []byte
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it...)
	}
	return b
}

func (f *fakeMeshbox) poll(w http.ResponseWriter, r *http.Request) {
	gid, ok := f.auth(w, r)
	if !ok {
		return
	}
	wait, _ := strconv.Atoi(r.URL.Query().Get("wait"))
	deadline := time.After(time.Duration(wait) * time.Second)
	cur := since(r)
	for {
		items, next, wake := f.read(gid, cur)
		if next > cur || wait == 0 {
			fmt.Fprintf(w, `{"items":%s,"next":%d,"truncated":false}`, itemsJSON(items), next)
			return
		}
		select {
		case <-wake:
		case <-deadline:
			wait = 0
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeMeshbox) sse(w http.ResponseWriter, r *http.Request) {
	gid, ok := f.auth(w, r)
	if !ok {
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	fmt.Fprint(w, ": hello\nretry: 1000\n\n")
	w.(http.Flusher).Flush()
	cur := since(r)
	for {
		items, next, wake := f.read(gid, cur)
		for _, it := range items {
			var head struct {
				Cursor int64
				Kind   string
			}
			json.Unmarshal(it, &head)
			fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", head.Cursor, head.Kind, it)
		}
		w.(http.Flusher).Flush()
		cur = next
		select {
		case <-wake:
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeMeshbox) ws(w http.ResponseWriter, r *http.Request) {
	gid, ok := f.auth(w, r)
	if !ok {
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx := c.CloseRead(r.Context())
	cur := since(r)
	if r.URL.Query().Get("since") == "" {
		_, cur, _ = f.read(gid, 0)
	}
	for {
		items, next, wake := f.read(gid, cur)
		if len(items) > 0 {
			msg := fmt.Sprintf(`{"type":"items","items":%s,"next":%d}`, itemsJSON(items), next)
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				return
			}
		}
		cur = next
		select {
		case <-wake:
		case <-ctx.Done():
			return
		}
	}
}
