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
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/gobwas/ws/wsutil"
	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	vconfig "github.com/pb33f/libopenapi-validator/config"
	verrors "github.com/pb33f/libopenapi-validator/errors"
	"github.com/pb33f/libopenapi-validator/paths"
	"github.com/pb33f/libopenapi-validator/schema_validation"
	v3 "github.com/pb33f/libopenapi/datamodel/high/v3"

	"meshbox/app"
	"meshbox/config"
)

// The tests below hold the OpenAPI description meshbox serves at /api/v1/openapi.json
// (embed/assets/openapi.json) to what the server really does: every request they send and
// every answer they get, stream messages included, is checked against the description by
// github.com/pb33f/libopenapi-validator (OpenAPI 3.1, JSON Schema 2020-12), and the router's
// routes are compared with the description's operations.

// contract is a meshbox and the description it serves, with a record of what was exercised.
type contract struct {
	t     *testing.T
	base  string
	v     validator.Validator
	model *v3.Document
	opts  *vconfig.ValidationOptions
	// schemas validates stream messages (SSE data, WebSocket frames) against a named schema.
	schemas schema_validation.SchemaValidator

	mu sync.Mutex
	// seen is each operation ("GET /api/v1/groups/{gid}") and the statuses it answered.
	seen map[string]map[int]bool
}

// loadContract fetches the description from the running box itself and builds the validator.
func loadContract(t *testing.T, base string) *contract {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/v1/openapi.json: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		t.Fatalf("parse the description: %v", err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("the description is OpenAPI %s, want 3.1.0", v)
	}
	// Strict mode reports query parameters and headers the description does not declare.
	// Bodies are held by the description itself (additionalProperties: false on every fixed
	// object); strict mode would also refuse every key of a map (a node's data).
	opts := []vconfig.Option{vconfig.WithFormatAssertions(), vconfig.WithStrictMode(), vconfig.WithStrictIgnorePaths("$.body.**"),
		// Generic headers of every answer, not part of any one operation's contract.
		vconfig.WithStrictIgnoredHeadersExtra("x-content-type-options", "accept-ranges")}
	v, errs := validator.NewValidator(doc, opts...)
	if len(errs) > 0 {
		t.Fatalf("build the validator: %v", errs)
	}
	if ok, verrs := v.ValidateDocument(); !ok {
		t.Fatalf("the description is not a valid OpenAPI 3.1 document:\n%s", describe(verrs))
	}
	m, err := doc.BuildV3Model()
	if err != nil {
		t.Fatalf("build the model: %v", err)
	}
	return &contract{t: t, base: base, v: v, model: &m.Model, opts: vconfig.NewValidationOptions(opts...),
		schemas: schema_validation.NewSchemaValidator(opts...), seen: map[string]map[int]bool{}}
}

func describe(errs []*verrors.ValidationError) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  - %v\n", e)
	}
	return b.String()
}

// call describes one request: what is sent and what the description must say about it.
type call struct {
	method, path string
	token        string // sent as Authorization: Bearer
	body         any    // JSON-encoded unless a string or []byte
	header       http.Header
	// outside marks a request the description does not allow (no token, a malformed body, a
	// value out of range): the validator must say so, and the server's answer must still be
	// one the description lists.
	outside bool
	want    int
	client  *http.Client
}

// do sends c, checks the request and the answer against the description and returns the
// answer's body.
func (k *contract) do(c call) []byte {
	k.t.Helper()
	resp, body := k.send(c)
	if resp.StatusCode != c.want {
		k.t.Errorf("%s %s: status %d, want %d: %s", c.method, c.path, resp.StatusCode, c.want, body)
	}
	return body
}

func (k *contract) send(c call) (*http.Response, []byte) {
	k.t.Helper()
	var raw []byte
	switch b := c.body.(type) {
	case nil:
	case string:
		raw = []byte(b)
	case []byte:
		raw = b
	default:
		var err error
		if raw, err = json.Marshal(b); err != nil {
			k.t.Fatal(err)
		}
	}
	req := k.request(c, raw)
	client := c.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		k.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	k.checkRequest(c, k.request(c, raw))
	k.checkResponse(c, k.request(c, raw), resp)
	return resp, body
}

// request builds c's request with body raw (a fresh one each time: validating reads it).
func (k *contract) request(c call, raw []byte) *http.Request {
	var rd io.Reader
	if raw != nil {
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(c.method, k.base+c.path, rd)
	if err != nil {
		k.t.Fatal(err)
	}
	if raw != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for name, vs := range c.header {
		req.Header[name] = vs
	}
	return req
}

func (k *contract) checkRequest(c call, req *http.Request) {
	k.t.Helper()
	ok, errs := k.v.ValidateHttpRequest(req)
	switch {
	case !ok && !c.outside:
		k.t.Errorf("%s %s: the description refuses this request:\n%s", c.method, c.path, describe(errs))
	case ok && c.outside:
		k.t.Errorf("%s %s: the description accepts a request it should refuse", c.method, c.path)
	}
}

// checkResponse validates the answer (status, content type, headers, body) and records it.
func (k *contract) checkResponse(c call, req *http.Request, resp *http.Response) {
	k.t.Helper()
	if ok, errs := k.v.ValidateHttpResponse(req, resp); !ok {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 600))
		k.t.Errorf("%s %s: answer %d %q is not as described:\n%s%s", c.method, c.path, resp.StatusCode,
			resp.Header.Get("Content-Type"), describe(errs), body)
	}
	_, _, tmpl := paths.FindPath(req, k.model, k.opts)
	op := c.method + " " + tmpl
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.seen[op] == nil {
		k.seen[op] = map[int]bool{}
	}
	k.seen[op][resp.StatusCode] = true
}

// message checks one stream message (an SSE event's data, a WebSocket frame) against a schema
// of the description's components.
func (k *contract) message(schema string, payload []byte) {
	k.t.Helper()
	proxy := k.model.Components.Schemas.GetOrZero(schema)
	if proxy == nil {
		k.t.Fatalf("the description has no schema %s", schema)
	}
	if ok, errs := k.schemas.ValidateSchemaBytes(proxy.Schema(), payload); !ok {
		var b strings.Builder
		for _, e := range errs {
			fmt.Fprintf(&b, "  - %s: %s\n", e.Message, e.Reason)
			for _, s := range e.SchemaValidationErrors {
				fmt.Fprintf(&b, "      %s at %s\n", s.Reason, s.FieldPath)
			}
		}
		k.t.Errorf("stream message %s is not a %s:\n%s", payload, schema, b.String())
	}
}

// apiEvent is one Server-Sent Event.
type apiEvent struct{ id, name, data string }

// openStream GETs an event stream, checks the request and the head of the answer against the
// description, and returns the answer with a reader of its events (nil when it is not 200).
// The stream is closed when the test ends, or by closing the answer's body.
func (k *contract) openStream(c call) (*http.Response, func() apiEvent) {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	k.t.Cleanup(cancel)
	req := k.request(c, nil).WithContext(ctx)
	client := c.client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		k.t.Fatalf("GET %s: %v", c.path, err)
	}
	k.t.Cleanup(func() { resp.Body.Close() })
	k.checkRequest(c, k.request(c, nil))
	if resp.StatusCode != c.want {
		k.t.Errorf("GET %s: status %d, want %d", c.path, resp.StatusCode, c.want)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(body))
		k.checkResponse(c, k.request(c, nil), resp)
		return resp, nil
	}
	// The body of an endless stream is checked event by event (k.message); the head here.
	head := *resp
	head.Body = io.NopCloser(strings.NewReader(""))
	k.checkResponse(c, k.request(c, nil), &head)
	br := bufio.NewReader(resp.Body)
	return resp, func() apiEvent {
		k.t.Helper()
		var ev apiEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				k.t.Fatalf("GET %s: stream ended: %v", c.path, err)
			}
			line = strings.TrimRight(line, "\r\n")
			switch {
			case line == "":
				if ev.data != "" || ev.name != "" {
					return ev
				}
			case strings.HasPrefix(line, ":"), strings.HasPrefix(line, "retry:"):
			case strings.HasPrefix(line, "id:"):
				ev.id = strings.TrimSpace(line[3:])
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(line[6:])
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimPrefix(line[5:], " ")
			}
		}
	}
}

// TestOpenAPIDescribesEveryAnswer drives every described operation of a real meshbox over
// HTTP, WebSocket and SSE, with the answers that succeed and the main refusals (400, 401, 403,
// 404, 409, 410, 413, 429), and checks each real request and answer against the description
// the box serves, stream messages included. 507 has a test of its own (it needs a full
// database).
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	a := app.StartTest(t, func(c *config.Config) {
		c.AdminToken = adminToken
		c.MaxNodesPerGroup = 3
		c.MaxGroupsPerDomain = 2
		c.MaxBodyBytes = 8 << 10
		c.MaxConnsPerIP = 3
	})
	k := loadContract(t, a.URL())

	// The description itself, and its ETag.
	resp, _ := k.send(call{method: "GET", path: "/api/v1/openapi.json", want: 200})
	k.do(call{method: "GET", path: "/api/v1/openapi.json", header: http.Header{"If-None-Match": {resp.Header.Get("ETag")}}, want: 304})
	k.do(call{method: "HEAD", path: "/api/v1/openapi.json", want: 200})
	k.do(call{method: "HEAD", path: "/api/v1/openapi.json", header: http.Header{"If-None-Match": {resp.Header.Get("ETag")}}, want: 304})

	// Probes and the caller's domain.
	k.do(call{method: "GET", path: "/healthz", want: 200})
	k.do(call{method: "GET", path: "/readyz", want: 200})
	k.do(call{method: "GET", path: "/api/v1/domain", want: 200})

	// The admin check.
	k.do(call{method: "GET", path: "/api/v1/admin/check", token: adminToken, want: 204})
	k.do(call{method: "GET", path: "/api/v1/admin/check?token=" + adminToken, want: 204})
	k.do(call{method: "GET", path: "/api/v1/admin/check", token: "not-the-admin", want: 401})
	k.do(call{method: "GET", path: "/api/v1/admin/check", outside: true, want: 401})

	// Groups: create, list, and the refusals of create.
	var host joined
	if err := json.Unmarshal(k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": "science", "nodeName": "teacher", "maxConnectionTimeSeconds": 600, "meshV2": true}, want: 201}), &host); err != nil {
		t.Fatal(err)
	}
	gid := host.Group.ID
	g := "/api/v1/groups/" + gid
	k.do(call{method: "GET", path: "/api/v1/groups", want: 200})
	k.do(call{method: "GET", path: "/api/v1/groups?domain=" + host.Group.Domain, want: 200})
	k.do(call{method: "GET", path: "/api/v1/groups?domain=" + url.QueryEscape("not a domain!"), outside: true, want: 400})
	k.do(call{method: "POST", path: "/api/v1/groups", body: `{"name":`, outside: true, want: 400})
	k.do(call{method: "POST", path: "/api/v1/groups", body: `{"name":"x","maxConnectionTimeSeconds":-1}`, outside: true, want: 400})
	k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": strings.Repeat("x", 9<<10)}, want: 413})
	for i := range 2 {
		k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": fmt.Sprint("full-", i), "domain": "full"}, want: 201})
	}
	k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": "one too many", "domain": "full"}, want: 409})

	// Join: named, unnamed, the group full, a group that does not exist.
	var alice, bob joined
	json.Unmarshal(k.do(call{method: "POST", path: g + "/nodes", body: map[string]any{"name": "alice"}, want: 201}), &alice)
	json.Unmarshal(k.do(call{method: "POST", path: g + "/nodes", want: 201}), &bob)
	k.do(call{method: "POST", path: g + "/nodes", body: map[string]any{"name": "carol"}, want: 409})
	k.do(call{method: "POST", path: "/api/v1/groups/no-such-group/nodes", body: map[string]any{"name": "x"}, want: 404})
	k.do(call{method: "POST", path: g + "/nodes", body: map[string]any{"name": 7}, outside: true, want: 400})

	// Snapshot: a member, the admin, no token, a wrong token, a group that does not exist.
	k.do(call{method: "GET", path: g, token: alice.Token, want: 200})
	k.do(call{method: "GET", path: g + "?token=" + adminToken, want: 200})
	k.do(call{method: "GET", path: g, outside: true, want: 401})
	k.do(call{method: "GET", path: g, token: "wrong", want: 401})
	k.do(call{method: "GET", path: "/api/v1/groups/no-such-group", token: adminToken, want: 404})

	// Heartbeat, data, publish.
	k.do(call{method: "POST", path: g + "/heartbeat", token: host.Token, want: 200})
	k.do(call{method: "POST", path: g + "/heartbeat?echo=" + strconv.FormatInt(time.Now().UnixNano(), 10), token: alice.Token, want: 200})
	k.do(call{method: "POST", path: g + "/heartbeat", outside: true, want: 401})
	k.do(call{method: "PUT", path: g + "/data", token: alice.Token, body: map[string]any{"data": map[string]string{"mood": "curious", "score": "7"}}, want: 200})
	k.do(call{method: "PUT", path: g + "/data", token: alice.Token, body: map[string]any{"data": map[string]string{"score": ""}}, want: 200})
	k.do(call{method: "PUT", path: g + "/data", token: alice.Token, body: `{"data":{"score":7}}`, outside: true, want: 400})
	k.do(call{method: "POST", path: g + "/events", token: alice.Token, body: map[string]any{"events": []map[string]any{{"name": "go", "payload": "hi"}, {"name": "stop"}}}, want: 200})
	k.do(call{method: "POST", path: g + "/events", token: alice.Token, body: `{"events":[{"payload":"no name"}]}`, outside: true, want: 400})
	k.do(call{method: "POST", path: g + "/events", token: alice.Token, body: map[string]any{"events": []map[string]any{{"name": "big", "payload": strings.Repeat("p", 9<<10)}}}, want: 413})
	k.do(call{method: "POST", path: g + "/events", token: "wrong", body: map[string]any{"events": []map[string]any{{"name": "x"}}}, want: 401})

	// Poll and long-poll, from the start of the group.
	var page struct {
		Items []json.RawMessage `json:"items"`
		Next  int64             `json:"next"`
	}
	since := strconv.FormatInt(host.Cursor, 10)
	json.Unmarshal(k.do(call{method: "GET", path: g + "/events?since=" + since + "&limit=100", token: host.Token, want: 200}), &page)
	if len(page.Items) < 5 { // alice's and bob's joins, two data changes, two events
		t.Errorf("poll after the create: %d items, want at least 6", len(page.Items))
	}
	k.do(call{method: "GET", path: g + "/events?wait=0.05&token=" + bob.Token, want: 200})
	k.do(call{method: "GET", path: g + "/events?since=nope", token: host.Token, outside: true, want: 400})
	k.do(call{method: "GET", path: g + "/events?since=" + strconv.FormatInt(page.Next+1000, 10), token: host.Token, want: 400})
	k.do(call{method: "GET", path: g + "/events?limit=0", token: host.Token, outside: true, want: 400})
	k.do(call{method: "GET", path: "/api/v1/groups/no-such-group/events", token: host.Token, want: 404})

	// SSE, with the token in the query (as EventSource sends it) and resumed by Last-Event-ID.
	sse, next := k.openStream(call{method: "GET", path: g + "/stream?since=" + since + "&token=" + host.Token, want: 200})
	for range len(page.Items) {
		ev := next()
		k.message("Item", []byte(ev.data))
		if ev.id == "" {
			t.Errorf("SSE item %s has no id", ev.data)
		}
	}
	sse.Body.Close()
	resumed, next := k.openStream(call{method: "GET", path: g + "/stream", token: bob.Token, header: http.Header{"Last-Event-ID": {since}}, want: 200})
	k.message("Item", []byte(next().data))
	resumed.Body.Close()
	k.openStream(call{method: "GET", path: g + "/stream?lastEventId=x", token: bob.Token, outside: true, want: 400})

	// WebSocket: the upgrade, then every message both ways.
	k.websocket(g, alice, host.Cursor)
	k.do(call{method: "GET", path: g + "/ws", token: alice.Token, outside: true, want: 400}) // not a handshake

	// The dashboard's routes, without and with the admin token.
	k.do(call{method: "GET", path: "/api/v1/dashboard/overview", want: 200})
	k.do(call{method: "GET", path: "/api/v1/dashboard/overview", token: adminToken, want: 200})
	k.do(call{method: "GET", path: "/api/v1/dashboard/join", want: 200})
	k.do(call{method: "GET", path: "/api/v1/dashboard/qr.svg?text=" + url.QueryEscape(a.URL()+"/try"), want: 200})
	k.do(call{method: "GET", path: "/api/v1/dashboard/qr.svg?text=" + strings.Repeat("x", 201), want: 400})
	k.do(call{method: "GET", path: "/api/v1/dashboard/qr.svg", outside: true, want: 400})
	for _, tok := range []string{"", adminToken} {
		dash, next := k.openStream(call{method: "GET", path: "/api/v1/dashboard/stream", token: tok, want: 200})
		hello := next()
		k.message("DashboardHello", []byte(hello.data))
		overview := next()
		k.message("Overview", []byte(overview.data))
		if hello.name != "hello" || overview.name != "overview" {
			t.Errorf("dashboard stream began with %q and %q, want hello and overview", hello.name, overview.name)
		}
		dash.Body.Close()
	}

	// Leaving and removing: who may, and who may not.
	k.do(call{method: "POST", path: g + "/nodes", body: map[string]any{"name": "carol"}, want: 409})
	k.do(call{method: "DELETE", path: g + "/nodes/" + bob.Node.ID, token: alice.Token, want: 403})
	k.do(call{method: "DELETE", path: g + "/nodes/no-such-node", token: host.Token, want: 404})
	k.do(call{method: "DELETE", path: g + "/nodes/" + bob.Node.ID, token: bob.Token, want: 204})
	k.do(call{method: "DELETE", path: g + "/nodes/" + alice.Node.ID, token: adminToken, want: 204})
	k.do(call{method: "DELETE", path: g + "/nodes/" + alice.Node.ID, outside: true, want: 401})

	// Dissolving: a member may not; the host may; then the group is gone (410).
	var dave joined
	json.Unmarshal(k.do(call{method: "POST", path: g + "/nodes", body: map[string]any{"name": "dave"}, want: 201}), &dave)
	k.do(call{method: "DELETE", path: g, token: dave.Token, want: 403})
	k.do(call{method: "DELETE", path: g, token: host.Token, want: 204})
	k.do(call{method: "POST", path: g + "/heartbeat", token: dave.Token, want: 410})
	k.do(call{method: "GET", path: g + "/events", token: dave.Token, want: 410})
	k.do(call{method: "POST", path: g + "/nodes", body: map[string]any{"name": "late"}, want: 410})
	k.do(call{method: "DELETE", path: g, token: host.Token, want: 410})
	var other joined
	json.Unmarshal(k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": "maths"}, want: 201}), &other)
	k.do(call{method: "DELETE", path: "/api/v1/groups/" + other.Group.ID, token: adminToken, want: 204})
	k.do(call{method: "DELETE", path: "/api/v1/groups/no-such-group", token: adminToken, want: 404})

	// 429 from a guesser at 127.0.0.2: wrong admin tokens until the back-off answers, while
	// the teacher at 127.0.0.1 is let in throughout.
	guesser := httpFrom("127.0.0.2")
	refused := false
	for i := 0; i < 20 && !refused; i++ {
		resp, _ := k.send(call{method: "GET", path: "/api/v1/admin/check", token: fmt.Sprint("guess-", i), client: guesser, want: 401})
		refused = resp.StatusCode == http.StatusTooManyRequests
		k.do(call{method: "GET", path: "/api/v1/admin/check", token: adminToken, want: 204})
	}
	if !refused {
		t.Error("twenty wrong admin tokens from one address were never answered 429")
	}
	// 429 too_many_connections: a pupil at 127.0.0.3 opening more streams than its share.
	var pupil joined
	json.Unmarshal(k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": "streams"}, want: 201}), &pupil)
	hog := httpFrom("127.0.0.3")
	for i := 0; ; i++ {
		want := http.StatusOK
		if i == 3 {
			want = http.StatusTooManyRequests
		}
		resp, _ := k.openStream(call{method: "GET", path: "/api/v1/groups/" + pupil.Group.ID + "/stream", token: pupil.Token, client: hog, want: want})
		if resp.StatusCode != http.StatusOK {
			break
		}
		if i > 3 {
			t.Fatal("the streams of one address were never capped")
		}
	}

	k.covered(200, 201, 204, 304, 101, 400, 401, 403, 404, 409, 410, 413, 429)
}

// websocket upgrades a connection by hand (so the request the validator checks is the one
// sent), then exchanges every kind of message and checks each frame against its schema.
func (k *contract) websocket(g string, n joined, since int64) {
	k.t.Helper()
	c := call{method: "GET", path: g + "/ws?token=" + n.Token + "&since=" + strconv.FormatInt(since, 10), want: 101,
		header: http.Header{"Upgrade": {"websocket"}, "Connection": {"Upgrade"},
			"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="}, "Sec-Websocket-Version": {"13"}}}
	req := k.request(c, nil)
	conn, err := net.Dial("tcp", req.URL.Host)
	if err != nil {
		k.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if err := req.Write(conn); err != nil {
		k.t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		k.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		k.t.Fatalf("websocket upgrade: %d", resp.StatusCode)
	}
	k.checkRequest(c, k.request(c, nil))
	k.checkResponse(c, k.request(c, nil), resp)

	rw := struct {
		io.Reader
		io.Writer
	}{br, conn}
	read := func() (typ string, msg []byte) {
		k.t.Helper()
		msg, err := wsutil.ReadServerText(rw)
		if err != nil {
			k.t.Fatalf("websocket read: %v", err)
		}
		var m struct{ Type string }
		json.Unmarshal(msg, &m)
		schema := map[string]string{"items": "WsItems", "ack": "WsAck", "error": "WsError", "reset": "WsReset"}[m.Type]
		if schema == "" {
			k.t.Fatalf("websocket message of no described type: %s", msg)
		}
		k.message(schema, msg)
		return m.Type, msg
	}
	send := func(schema string, msg string) {
		k.t.Helper()
		if schema != "" {
			k.message(schema, []byte(msg))
		}
		if err := wsutil.WriteClientText(conn, []byte(msg)); err != nil {
			k.t.Fatal(err)
		}
	}
	// An answer, skipping the items that may come before it.
	answer := func() []byte {
		k.t.Helper()
		for {
			if typ, msg := read(); typ == "ack" || typ == "error" {
				return msg
			}
		}
	}
	send("WsPublish", `{"type":"publish","id":1,"events":[{"name":"wave","payload":"👋"},{"name":"clap"}]}`)
	if got := answer(); !bytes.Contains(got, []byte(`"ack"`)) {
		k.t.Errorf("publish answered %s", got)
	}
	send("WsData", `{"type":"data","id":"two","data":{"mood":"happy"}}`)
	answer()
	send("WsHeartbeat", `{"type":"heartbeat","id":3}`)
	answer()
	send("", `{"type":"shout","id":4}`)
	if got := answer(); !bytes.Contains(got, []byte(`"error"`)) {
		k.t.Errorf("an unknown message type answered %s", got)
	}
	send("WsPublish", `{"type":"publish","id":5,"events":[]}`)
	answer()
	wsutil.WriteClientMessage(conn, 0x8, nil) // close
}

// covered checks that every operation of the description answered with success at least
// once, and that the run met each of the statuses in want somewhere.
func (k *contract) covered(want ...int) {
	k.t.Helper()
	all := map[int]bool{}
	var lines []string
	for op, statuses := range k.seen {
		var codes []string
		for s := range statuses {
			all[s] = true
			codes = append(codes, strconv.Itoa(s))
		}
		sort.Strings(codes)
		lines = append(lines, op+": "+strings.Join(codes, " "))
	}
	sort.Strings(lines)
	k.t.Logf("operations and the statuses they answered:\n  %s", strings.Join(lines, "\n  "))
	for _, op := range describedOperations(k.model) {
		ok := false
		for s := range k.seen[op] {
			ok = ok || s < 400
		}
		if !ok {
			k.t.Errorf("%s was never answered with success", op)
		}
	}
	for _, s := range want {
		if !all[s] {
			k.t.Errorf("no operation answered %d", s)
		}
	}
}

// describedOperations lists the description's operations as "METHOD /path".
func describedOperations(m *v3.Document) []string {
	var ops []string
	for p, item := range m.Paths.PathItems.FromOldest() {
		for method := range item.GetOperations().FromOldest() {
			ops = append(ops, strings.ToUpper(method)+" "+p)
		}
	}
	sort.Strings(ops)
	return ops
}

// TestOpenAPIFullStorageAnswer fills a database with a small size budget: the refused write's
// 507 storage_full, with Retry-After, is as described.
func TestOpenAPIFullStorageAnswer(t *testing.T) {
	a := app.StartTest(t, func(c *config.Config) {
		c.MaxDBSize = 1 << 20
		c.PurgeInterval = time.Hour // only a refused write wakes the purge
		c.NodeByteRate = 0          // one node fills the budget
	})
	k := loadContract(t, a.URL())
	var host joined
	json.Unmarshal(k.do(call{method: "POST", path: "/api/v1/groups", body: map[string]any{"name": "full"}, want: 201}), &host)
	// One publish larger than the whole budget: the purge keeps up with smaller ones.
	payload := strings.Repeat("p", 15000)
	events := make([]map[string]any, 100)
	for i := range events {
		events[i] = map[string]any{"name": "e", "payload": payload}
	}
	body := map[string]any{"events": events}
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("a 1 MiB budget never filled")
		}
		resp, raw := k.send(call{method: "POST", path: "/api/v1/groups/" + host.Group.ID + "/events", token: host.Token, body: body, want: 200})
		if resp.StatusCode == http.StatusInsufficientStorage {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("publish: %d %s", resp.StatusCode, raw)
		}
	}
	if !k.seen["POST /api/v1/groups/{gid}/events"][507] {
		t.Error("no 507 was recorded")
	}
}

// notDescribed are the router's routes the description leaves out, each for a reason: pages
// and static files (HTML, JavaScript, images, not an API), Mesh v2 (GraphQL, described by its
// own schema), /metrics (the Prometheus exposition format, checked by promtool) and the
// profiler (off by default).
func notDescribed(method, route string) bool {
	switch {
	case route == "/" || route == "/try" || route == "/meshbox.js" || route == "/meshbox.d.ts" || route == "/favicon.svg" || route == "/assets/*":
		return true
	case route == "/graphql" || route == "/graphql/realtime":
		return true
	case route == "/metrics":
		return true
	case strings.HasPrefix(route, "/debug/pprof/"):
		return true
	}
	return false
}

// TestOpenAPICoversEveryRoute walks the router of a real meshbox: every route is described
// (or named in notDescribed, with its reason), and every described operation is routed.
func TestOpenAPICoversEveryRoute(t *testing.T) {
	a := app.StartTest(t, nil)
	k := loadContract(t, a.URL())
	routes, ok := a.Server.Handler().(chi.Routes)
	if !ok {
		t.Fatalf("the server's handler is a %T, not a chi router", a.Server.Handler())
	}
	var routed []string
	err := chi.Walk(routes, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if !notDescribed(method, route) {
			routed = append(routed, method+" "+route)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(routed)
	described := describedOperations(k.model)
	for _, r := range routed {
		if !slices.Contains(described, r) {
			t.Errorf("%s is routed but not in embed/assets/openapi.json", r)
		}
	}
	for _, d := range described {
		if !slices.Contains(routed, d) {
			t.Errorf("%s is in embed/assets/openapi.json but not routed", d)
		}
	}
	if len(routed) < 15 {
		t.Errorf("only %d routes walked: %v", len(routed), routed)
	}
}
