package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/config"
)

// send posts body (a *genBody or bytes) and returns the status and the answer.
func (l *laptop) send(method, path, token string, body io.Reader, length int64) (int, http.Header, []byte) {
	req, err := http.NewRequest(method, l.base+path, body)
	if err != nil {
		l.t.Error(err)
		return 0, nil, nil
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := l.http.Do(req)
	if err != nil {
		l.t.Errorf("%s %s: %v", method, path, err)
		return 0, nil, nil
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// json posts v as JSON.
func (l *laptop) json(method, path, token string, v any, out any) (int, []byte) {
	b, err := json.Marshal(v)
	if err != nil {
		l.t.Fatal(err)
	}
	st, _, raw := l.send(method, path, token, bytes.NewReader(b), int64(len(b)))
	if out != nil && st < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			l.t.Errorf("%s %s: %v: %s", method, path, err, raw)
		}
	}
	return st, raw
}

// genBody is a request body made as it is read, so the attacking client holds none of it:
// head, then unit(i) for i in [0, n), then tail. When gate is set, reading stops halfway
// (after reporting it on halfway) until gate is closed.
type genBody struct {
	head, tail string
	unit       func(i int) string
	n, i       int
	buf        []byte
	done       bool
	gate       <-chan struct{}
	halfway    chan<- struct{}
}

func (g *genBody) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		switch {
		case g.done:
			return 0, io.EOF
		case g.i == 0 && g.head != "":
			g.buf = append(g.buf[:0], g.head...)
			g.head = ""
		case g.i < g.n:
			if g.gate != nil && g.i >= g.n/2 {
				g.halfway <- struct{}{}
				<-g.gate
				g.gate = nil
			}
			g.buf = g.buf[:0]
			for ; g.i < g.n && len(g.buf) < 32<<10; g.i++ {
				g.buf = append(g.buf, g.unit(g.i)...)
			}
		default:
			g.buf = append(g.buf[:0], g.tail...)
			g.done = true
		}
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// length is the body's size in bytes.
func (g *genBody) length() int64 {
	n := int64(len(g.head) + len(g.tail))
	for i := range g.n {
		n += int64(len(g.unit(i)))
	}
	return n
}

// The hostile bodies of issue 22, each just under the default --max-body of 4 MiB.
const floodBytes = 4<<20 - 1<<10

// variablesFlood is row 1: a harmless document with 4 MiB of variables, `{"x":[{},{},…]}`.
func variablesFlood() *genBody {
	return &genBody{head: `{"query":"mutation { createDomain }","variables":{"x":[{}`, tail: `]}}`,
		unit: func(int) string { return `,{}` }, n: floodBytes / 3}
}

// dataFlood is row 8: a data change of 300,000 keys.
func dataFlood() *genBody {
	return &genBody{head: `{"data":{"k0":""`, tail: `}}`,
		unit: func(i int) string { return fmt.Sprintf(`,"k%06d":""`, i+1) }, n: 300_000}
}

// eventsFlood is a publish of a million empty events.
func eventsFlood() *genBody {
	return &genBody{head: `{"events":[{}`, tail: `]}`, unit: func(int) string { return `,{}` }, n: floodBytes / 3}
}

// meshV2Classmate creates a Mesh v2 group and fires an event in it, as the Smalruby client
// does; it fails the test if either is refused.
func meshV2Classmate(t *testing.T, l *laptop, name string) {
	t.Helper()
	var created struct {
		Data struct {
			CreateGroup struct{ ID, Domain string } `json:"createGroup"`
		} `json:"data"`
		Errors []any `json:"errors"`
	}
	st, raw := l.json("POST", "/graphql", "", map[string]any{
		"query": `mutation CreateGroup($name: String!, $hostId: ID!, $domain: String!, $useWebSocket: Boolean!) {
  createGroup(name: $name, hostId: $hostId, domain: $domain, useWebSocket: $useWebSocket) { id domain } }`,
		"variables": map[string]any{"name": name, "hostId": name + "-host", "domain": "classroom", "useWebSocket": false},
	}, &created)
	if st != http.StatusOK || len(created.Errors) > 0 || created.Data.CreateGroup.ID == "" {
		t.Errorf("classmate's Mesh v2 createGroup: %d %s", st, raw)
		return
	}
	var fired struct {
		Data   map[string]any `json:"data"`
		Errors []any          `json:"errors"`
	}
	st, raw = l.json("POST", "/graphql", "", map[string]any{
		"query": `mutation FireEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
  fireEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) { groupId } }`,
		"variables": map[string]any{"groupId": created.Data.CreateGroup.ID, "domain": created.Data.CreateGroup.Domain, "nodeId": name + "-host",
			"events": []any{map[string]any{"eventName": "go", "payload": "p", "firedAt": time.Now().UTC().Format(time.RFC3339Nano)}}},
	}, &fired)
	if st != http.StatusOK || len(fired.Errors) > 0 {
		t.Errorf("classmate's Mesh v2 fireEventsByNode: %d %s", st, raw)
	}
}

// nativeClassmate publishes in its group; it fails the test if the publish is refused.
func nativeClassmate(t *testing.T, l *laptop, j joined) {
	t.Helper()
	if st, raw := l.json("POST", "/api/v1/groups/"+j.Group.ID+"/events", j.Token, map[string]any{"events": []any{map[string]any{"name": "go", "payload": "p"}}}, nil); st != http.StatusOK {
		t.Errorf("classmate's native publish: %d %s", st, raw)
	}
}

// TestBigBodiesLeaveClassmatesAlone is issue 22 rows 1 and 8 as seen by the class: one laptop
// (127.0.0.2) sends the hostile bodies — 4 MiB of GraphQL variables, 300,000 data keys, a
// million events — and holds them half sent, while a classmate (127.0.0.3) creates a Mesh v2
// group and fires in it, and publishes natively. The classmate is served; every hostile body
// is refused (the variables as a GraphQL bound failure, which the old code executed with a
// 200, the others with the rules' 413) or told the box is busy.
func TestBigBodiesLeaveClassmatesAlone(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t, nil)
	pupil := newLaptop(t, a.URL(), "127.0.0.2")
	classmate := newLaptop(t, a.URL(), "127.0.0.3")
	var own, theirs joined
	if st, raw := pupil.json("POST", "/api/v1/groups", "", map[string]any{"name": "mine"}, &own); st != http.StatusCreated {
		t.Fatalf("pupil's group: %d %s", st, raw)
	}
	if st, raw := classmate.json("POST", "/api/v1/groups", "", map[string]any{"name": "ours"}, &theirs); st != http.StatusCreated {
		t.Fatalf("classmate's group: %d %s", st, raw)
	}

	gate := make(chan struct{})
	halfway := make(chan struct{}, 16)
	attacks := []struct {
		name, method, path, token string
		body                      func() *genBody
		want                      []int
	}{
		{"graphql variables", "POST", "/graphql", "", variablesFlood, []int{http.StatusBadRequest, http.StatusServiceUnavailable}},
		{"data keys", "PUT", "/api/v1/groups/" + own.Group.ID + "/data", own.Token, dataFlood, []int{http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}},
		{"events", "POST", "/api/v1/groups/" + own.Group.ID + "/events", own.Token, eventsFlood, []int{http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable}},
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string][]int{}
	for _, at := range attacks {
		for range 3 {
			b := at.body()
			size := b.length()
			b.gate, b.halfway = gate, halfway
			wg.Go(func() {
				st, _, raw := pupil.send(at.method, at.path, at.token, b, size)
				mu.Lock()
				got[at.name] = append(got[at.name], st)
				mu.Unlock()
				if st == http.StatusOK {
					t.Errorf("%s: served: %.200s", at.name, raw)
				}
			})
		}
	}
	// Two hostile bodies are being read (as many as the budget holds, and more on the old
	// code), half sent, when the classmate acts.
	<-halfway
	<-halfway
	meshV2Classmate(t, classmate, "victim")
	nativeClassmate(t, classmate, theirs)
	close(gate)
	wg.Wait()
	for _, at := range attacks {
		for _, st := range got[at.name] {
			if !containsInt(at.want, st) {
				t.Errorf("%s: status %d, want one of %v", at.name, st, at.want)
			}
		}
	}
	// Once the flood is over, the pupil is served as usual.
	nativeClassmate(t, pupil, own)
}

func containsInt(l []int, v int) bool {
	for _, x := range l {
		if x == v {
			return true
		}
	}
	return false
}

// heapObjects is the bytes of heap objects, live or not yet swept: what the process holds.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// TestBigBodiesStayWithinMemory is issue 22's memory target: during rows 1 and 8 — eight
// hostile bodies of about 4 MiB at once from one laptop, on a box run with --memory-limit
// 300MiB (applied as main applies it, debug.SetMemoryLimit) — the heap stays within 64 MiB of
// its idle figure. A goroutine samples the heap until the requests are answered. Measured
// on the old code: the variables took the heap 704 MiB above idle (and executed: 200) and the
// data keys 280 MiB; here about 34 and 30 MiB.
func TestBigBodiesStayWithinMemory(t *testing.T) {
	// Not parallel: it measures the whole process.
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(300 << 20))
	a, _ := newServer(t, func(cfg *config.Config) { cfg.MemoryLimit = 300 << 20 })
	pupil := newLaptop(t, a.URL(), "127.0.0.2")
	var own joined
	if st, raw := pupil.json("POST", "/api/v1/groups", "", map[string]any{"name": "mine"}, &own); st != http.StatusCreated {
		t.Fatalf("pupil's group: %d %s", st, raw)
	}
	const budget = 64 << 20
	for _, at := range []struct {
		name, method, path, token string
		body                      func() *genBody
	}{
		{"row 1: graphql variables", "POST", "/graphql", "", variablesFlood},
		{"row 8: data keys", "PUT", "/api/v1/groups/" + own.Group.ID + "/data", own.Token, dataFlood},
	} {
		bodies := make([]*genBody, 8)
		sizes := make([]int64, 8)
		for i := range bodies {
			bodies[i] = at.body()
			sizes[i] = bodies[i].length()
		}
		runtime.GC()
		idle := heapObjects()
		peak := idle
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			tick := time.NewTicker(200 * time.Microsecond)
			defer tick.Stop()
			for {
				peak = max(peak, heapObjects())
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		}()
		var wg sync.WaitGroup
		statuses := make([]int, len(bodies))
		for i := range bodies {
			wg.Go(func() { statuses[i], _, _ = pupil.send(at.method, at.path, at.token, bodies[i], sizes[i]) })
		}
		wg.Wait()
		close(stop)
		<-sampled
		t.Logf("%s: 8 bodies of %d bytes: heap idle %d MiB, peak %d MiB (+%d MiB); statuses %v",
			at.name, sizes[0], idle>>20, peak>>20, (peak-idle)>>20, statuses)
		if peak-idle > budget {
			t.Errorf("%s: heap peaked %d MiB above idle, want at most %d MiB", at.name, (peak-idle)>>20, budget>>20)
		}
	}
}

// TestDecodeBudgetAnswersBusy fills the budget of bodies being decoded at once (1 MiB here)
// from one laptop with two big bodies that never finish, one to /graphql and one to the
// native API: both entrances draw on the one budget, so one of them waits and is told the
// box is busy (503 busy, with Retry-After) instead of adding up, while a classmate's Mesh v2
// group and native publish, small bodies, are served meanwhile. On the old code nothing
// waits: both bodies are read until the body deadline cuts them (408).
func TestDecodeBudgetAnswersBusy(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t, func(cfg *config.Config) {
		cfg.MaxDecoding = 1 << 20
		cfg.BodyTimeout = 20 * time.Second
	})
	classmate := newLaptop(t, a.URL(), "127.0.0.3")
	var pupilGroup, theirs joined
	pupil := newLaptop(t, a.URL(), "127.0.0.2")
	if st, raw := pupil.json("POST", "/api/v1/groups", "", map[string]any{"name": "mine"}, &pupilGroup); st != http.StatusCreated {
		t.Fatalf("pupil's group: %d %s", st, raw)
	}
	if st, raw := classmate.json("POST", "/api/v1/groups", "", map[string]any{"name": "ours"}, &theirs); st != http.StatusCreated {
		t.Fatalf("classmate's group: %d %s", st, raw)
	}
	heads := []string{
		"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"query\":\"mutation { createDomain }\",\"variables\":{\"x\":[",
		"PUT /api/v1/groups/" + pupilGroup.Group.ID + "/data HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + pupilGroup.Token +
			"\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n{\"data\":{\"k\":\"",
	}
	type answer struct {
		i    int
		resp *http.Response
		body string
		err  error
	}
	answers := make(chan answer, len(heads))
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
	for i, h := range heads {
		conn, err := d.DialContext(context.Background(), "tcp", strings.TrimPrefix(a.URL(), "http://"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, h); err != nil {
			t.Fatal(err)
		}
		go func() {
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			var body []byte
			if err == nil {
				body, _ = io.ReadAll(resp.Body)
			}
			answers <- answer{i, resp, string(body), err}
		}()
	}
	first := <-answers
	if first.err != nil {
		t.Fatalf("no answer: %v", first.err)
	}
	if first.resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(first.body, `"busy"`) || first.resp.Header.Get("Retry-After") == "" {
		t.Fatalf("first answer to two big bodies over the budget: %d (Retry-After %q) %s", first.resp.StatusCode, first.resp.Header.Get("Retry-After"), first.body)
	}
	// The other body still holds the whole budget for big bodies: small ones pass.
	meshV2Classmate(t, classmate, "victim")
	nativeClassmate(t, classmate, theirs)
}

// TestWebSocketMessagesDecodeWithinTheRules sends a WebSocket data message of 300,000 keys and
// a publish of a million events (each just under --max-body): each is refused with the rules'
// own error (too_large, 413's code) and the message's id, as the HTTP bodies are, decoded only
// up to the rules' bound; the connection stays usable.
func TestWebSocketMessagesDecodeWithinTheRules(t *testing.T) {
	t.Parallel()
	a, c := newServer(t, nil)
	j := c.create("ws")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ws, _, err := dialWS(ctx, a.URL(), j, readerOpts{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	read := func(r io.Reader) []byte {
		b, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	data, events := dataFlood(), eventsFlood()
	data.head = `{"type":"data","id":"d1",` + data.head[1:]
	events.head = `{"type":"publish","id":"e1",` + events.head[1:]
	for _, msg := range []struct {
		id   string
		body []byte
	}{{"d1", read(data)}, {"e1", read(events)}, {"ok", []byte(`{"type":"publish","id":"ok","events":[{"name":"go"}]}`)}} {
		if err := ws.Write(ctx, websocket.MessageText, msg.body); err != nil {
			t.Fatal(err)
		}
		for {
			_, raw, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("%s: %v", msg.id, err)
			}
			var f wsFrame
			if err := json.Unmarshal(raw, &f); err != nil {
				t.Fatal(err)
			}
			if f.Type == "items" {
				continue
			}
			switch {
			case msg.id == "ok" && f.Type != "ack":
				t.Fatalf("publish after the refused ones: %s", raw)
			case msg.id != "ok" && (f.Type != "error" || f.Error == nil || f.Error.Code != "too_large" || !strings.Contains(string(raw), `"id":"`+msg.id+`"`)):
				t.Fatalf("%s: %.300s", msg.id, raw)
			}
			break
		}
	}
}
