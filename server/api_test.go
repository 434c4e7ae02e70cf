package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"meshbox/config"
)

func TestAPICreateJoinPublishRead(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, nil)
	host := c.create("class 1")
	if host.Group.Domain != "classroom" || host.Token == "" || host.Cursor <= 0 {
		t.Fatalf("create = %+v", host)
	}
	alice := c.join(host.Group.ID, "alice")
	cursors := c.publish(alice, "go", "stop")
	if len(cursors) != 2 || cursors[0] <= alice.Cursor || cursors[1] != cursors[0]+1 {
		t.Fatalf("cursors = %v after join cursor %d", cursors, alice.Cursor)
	}
	var dataOut struct{ Cursor int64 }
	if st, raw := c.call("PUT", "/api/v1/groups/"+host.Group.ID+"/data", alice.Token, map[string]any{"data": map[string]string{"x": "10", "costume": "cat"}}, &dataOut); st != 200 || dataOut.Cursor != cursors[1]+1 {
		t.Fatalf("data: %d %s", st, raw)
	}
	var p page
	st, raw := c.call("GET", fmt.Sprintf("/api/v1/groups/%s/events?since=%d", host.Group.ID, host.Cursor), host.Token, nil, &p)
	if st != 200 || len(p.Items) != 4 || p.Truncated || p.Next != dataOut.Cursor {
		t.Fatalf("read: %d %s", st, raw)
	}
	want := []string{"join", "event", "event", "data"}
	for i, it := range p.Items {
		if it.Kind != want[i] || (i > 0 && it.Cursor != p.Items[i-1].Cursor+1) {
			t.Fatalf("item %d = %+v", i, it)
		}
		if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", it.At); err != nil {
			t.Fatalf("item time %q: %v", it.At, err)
		}
	}
	if p.Items[0].Name != "alice" || p.Items[1].Name != "go" || *p.Items[1].Payload != "p-go" || p.Items[3].Data["costume"] != "cat" {
		t.Fatalf("items = %+v", p.Items)
	}
	// limit pages through the same items.
	st, _ = c.call("GET", fmt.Sprintf("/api/v1/groups/%s/events?since=%d&limit=1", host.Group.ID, host.Cursor), host.Token, nil, &p)
	if st != 200 || len(p.Items) != 1 || p.Next != alice.Cursor {
		t.Fatalf("limit=1: %+v", p)
	}

	var snap struct {
		Group struct {
			ID    string `json:"id"`
			Nodes int    `json:"nodes"`
		} `json:"group"`
		Nodes []struct {
			ID   string            `json:"id"`
			Data map[string]string `json:"data"`
			Host bool              `json:"host"`
		} `json:"nodes"`
		Cursor int64 `json:"cursor"`
	}
	if st, raw := c.call("GET", "/api/v1/groups/"+host.Group.ID, host.Token, nil, &snap); st != 200 || len(snap.Nodes) != 2 || snap.Cursor != dataOut.Cursor ||
		!snap.Nodes[0].Host || snap.Nodes[1].Data["x"] != "10" {
		t.Fatalf("snapshot: %d %s", st, raw)
	}
	var list struct {
		Domain string `json:"domain"`
		Groups []struct {
			ID string `json:"id"`
		} `json:"groups"`
	}
	if st, raw := c.call("GET", "/api/v1/groups", "", nil, &list); st != 200 || len(list.Groups) != 1 || list.Groups[0].ID != host.Group.ID {
		t.Fatalf("list: %d %s", st, raw)
	}
	var dom struct{ Domain string }
	if st, _ := c.call("GET", "/api/v1/domain", "", nil, &dom); st != 200 || dom.Domain != "classroom" {
		t.Fatalf("domain = %q", dom.Domain)
	}
	var hb struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	if st, raw := c.call("POST", "/api/v1/groups/"+host.Group.ID+"/heartbeat", alice.Token, nil, &hb); st != 200 || hb.Node.ID != alice.Node.ID {
		t.Fatalf("heartbeat: %d %s", st, raw)
	}
	if st, raw := c.call("DELETE", "/api/v1/groups/"+host.Group.ID+"/nodes/"+alice.Node.ID, alice.Token, nil, nil); st != 204 {
		t.Fatalf("leave: %d %s", st, raw)
	}
	if st, raw := c.call("DELETE", "/api/v1/groups/"+host.Group.ID, host.Token, nil, nil); st != 204 {
		t.Fatalf("dissolve: %d %s", st, raw)
	}
	st, raw = c.call("GET", fmt.Sprintf("/api/v1/groups/%s/events?since=%d", host.Group.ID, dataOut.Cursor), host.Token, nil, &p)
	if st != 200 || len(p.Items) != 2 || p.Items[0].Kind != "leave" || p.Items[0].Reason != "left" || p.Items[1].Kind != "dissolve" || p.Items[1].Reason != "host" {
		t.Fatalf("after dissolve: %d %s", st, raw)
	}
	if st, raw := c.call("GET", fmt.Sprintf("/api/v1/groups/%s/events?since=%d", host.Group.ID, p.Next), host.Token, nil, nil); st != http.StatusGone {
		t.Fatalf("read past the end of a dissolved group: %d %s", st, raw)
	}
	if st, raw := c.call("POST", "/api/v1/groups/"+host.Group.ID+"/events", host.Token, `{"events":[{"name":"late"}]}`, nil); st != http.StatusGone {
		t.Fatalf("publish to dissolved group: %d %s", st, raw)
	}
}

func TestTokensActOnlyOnTheirOwnGroupAndNode(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.AdminToken = "teacher-secret" })
	a := c.create("a")
	b := c.create("b")
	a1 := c.join(a.Group.ID, "a1")
	a2 := c.join(a.Group.ID, "a2")
	cases := []struct {
		name, method, path, token string
		want                      int
	}{
		{"publish with another group's token", "POST", "/api/v1/groups/" + a.Group.ID + "/events", b.Token, 401},
		{"read with another group's token", "GET", "/api/v1/groups/" + a.Group.ID + "/events", b.Token, 401},
		{"data with another group's token", "PUT", "/api/v1/groups/" + a.Group.ID + "/data", b.Token, 401},
		{"member removes another member", "DELETE", "/api/v1/groups/" + a.Group.ID + "/nodes/" + a2.Node.ID, a1.Token, 403},
		{"member dissolves", "DELETE", "/api/v1/groups/" + a.Group.ID, a1.Token, 403},
		{"other host dissolves", "DELETE", "/api/v1/groups/" + a.Group.ID, b.Token, 401},
		{"heartbeat without token", "POST", "/api/v1/groups/" + a.Group.ID + "/heartbeat", "", 401},
		{"heartbeat with garbage token", "POST", "/api/v1/groups/" + a.Group.ID + "/heartbeat", "garbage", 401},
		{"admin token is not a node token", "POST", "/api/v1/groups/" + a.Group.ID + "/events", "teacher-secret", 401},
		{"host removes a member", "DELETE", "/api/v1/groups/" + a.Group.ID + "/nodes/" + a2.Node.ID, a.Token, 204},
		{"admin removes a member", "DELETE", "/api/v1/groups/" + a.Group.ID + "/nodes/" + a1.Node.ID, "teacher-secret", 204},
		{"admin dissolves", "DELETE", "/api/v1/groups/" + b.Group.ID, "teacher-secret", 204},
	}
	for _, tc := range cases {
		var body any
		if tc.method == "POST" && strings.HasSuffix(tc.path, "/events") {
			body = `{"events":[{"name":"x"}]}`
		} else if tc.method == "PUT" {
			body = `{"data":{"k":"v"}}`
		}
		st, raw := c.call(tc.method, tc.path, tc.token, body, nil)
		if st != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, st, raw, tc.want)
		}
		if st >= 400 && !json.Valid(raw) {
			t.Errorf("%s: error body is not JSON: %s", tc.name, raw)
		}
	}
	var p page
	c.call("GET", fmt.Sprintf("/api/v1/groups/%s/events?since=%d", a.Group.ID, a2.Cursor), a.Token, nil, &p)
	if len(p.Items) != 2 || p.Items[0].Reason != "removed" || p.Items[1].Reason != "removed" {
		t.Fatalf("removals = %+v", p.Items)
	}
}

func TestAdminNeedsConfiguredToken(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, nil)
	g := c.create("g")
	if st, _ := c.call("DELETE", "/api/v1/groups/"+g.Group.ID, "", nil, nil); st != 401 {
		t.Fatalf("dissolve without token: %d", st)
	}
	if st, _ := c.call("DELETE", "/api/v1/groups/"+g.Group.ID, "anything", nil, nil); st != 401 {
		t.Fatalf("dissolve with a made-up admin token: %d", st)
	}
}

func TestLimitsAnswerWithTheirStatus(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) {
		cfg.MaxPayloadBytes = 100
		cfg.MaxEventsPerPublish = 3
		cfg.MaxBodyBytes = 2000
		cfg.MaxDataKeys = 2
		cfg.MaxDataKeyBytes = 8
		cfg.MaxDataValueBytes = 16
		cfg.MaxNodesPerGroup = 2
		cfg.MaxGroupsPerDomain = 2
	})
	g := c.create("g")
	gp := "/api/v1/groups/" + g.Group.ID
	cases := []struct {
		name   string
		method string
		path   string
		body   string
		want   int
	}{
		{"payload too large", "POST", gp + "/events", `{"events":[{"name":"x","payload":"` + strings.Repeat("a", 101) + `"}]}`, 413},
		{"too many events", "POST", gp + "/events", `{"events":[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"d"}]}`, 413},
		{"body too large", "POST", gp + "/events", `{"events":[{"name":"x","payload":"` + strings.Repeat("a", 3000) + `"}]}`, 413},
		{"too many data keys", "PUT", gp + "/data", `{"data":{"a":"1","b":"2","c":"3"}}`, 413},
		{"data key too long", "PUT", gp + "/data", `{"data":{"abcdefghi":"1"}}`, 413},
		{"data value too long", "PUT", gp + "/data", `{"data":{"a":"` + strings.Repeat("v", 17) + `"}}`, 413},
		{"no events", "POST", gp + "/events", `{"events":[]}`, 400},
		{"event without name", "POST", gp + "/events", `{"events":[{"payload":"x"}]}`, 400},
	}
	for _, tc := range cases {
		st, raw := c.call(tc.method, tc.path, g.Token, tc.body, nil)
		if st != tc.want || !strings.Contains(string(raw), `"error"`) {
			t.Errorf("%s: %d %s, want %d", tc.name, st, raw, tc.want)
		}
	}
	c.join(g.Group.ID, "second")
	if st, raw := c.call("POST", gp+"/nodes", "", `{"name":"third"}`, nil); st != 409 || !strings.Contains(string(raw), "group_full") {
		t.Errorf("third node: %d %s", st, raw)
	}
	c.create("g2")
	if st, raw := c.call("POST", "/api/v1/groups", "", `{"name":"g3"}`, nil); st != 409 || !strings.Contains(string(raw), "domain_full") {
		t.Errorf("third group: %d %s", st, raw)
	}
	// Nothing rejected touched the stream: only the two joins are there.
	var p page
	c.call("GET", fmt.Sprintf("%s/events?since=%d", gp, g.Cursor), g.Token, nil, &p)
	if len(p.Items) != 1 || p.Items[0].Kind != "join" {
		t.Fatalf("stream after rejections = %+v", p.Items)
	}
}

func TestRateLimitsAnswer429WithRetryAfter(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.PublishRate = 2 })
	g := c.create("g")
	var last int
	var retry string
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("POST", c.base+"/api/v1/groups/"+g.Group.ID+"/events", strings.NewReader(`{"events":[{"name":"x"}]}`))
		req.Header.Set("Authorization", "Bearer "+g.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		last, retry = resp.StatusCode, resp.Header.Get("Retry-After")
		if last == 429 {
			break
		}
	}
	if last != 429 || retry == "" {
		t.Fatalf("publish flood: last status %d, Retry-After %q", last, retry)
	}

	_, c2 := newServer(t, func(cfg *config.Config) { cfg.IPRate = 1 })
	last = 0
	for i := 0; i < 10 && last != 429; i++ {
		last, _ = c2.call("GET", "/api/v1/domain", "", nil, nil)
	}
	if last != 429 {
		t.Fatalf("IP flood: last status %d", last)
	}
}

func TestStreamsPerIPAreLimited(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.MaxConnsPerIP = 1 })
	g := c.create("g")
	resp, err := http.Get(c.base + "/api/v1/groups/" + g.Group.ID + "/stream?token=" + g.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("first stream: %d", resp.StatusCode)
	}
	st, raw := c.call("GET", "/api/v1/groups/"+g.Group.ID+"/stream?token="+g.Token, "", nil, nil)
	if st != 429 || !strings.Contains(string(raw), "too_many_connections") {
		t.Fatalf("second stream: %d %s", st, raw)
	}
}

func TestBadInputGets4xxJSON(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, nil)
	g := c.create("g")
	gp := "/api/v1/groups/" + g.Group.ID
	cases := []struct {
		name, method, path, token, body string
		want                            int
	}{
		{"malformed JSON", "POST", "/api/v1/groups", "", `{"name":`, 400},
		{"not an object", "POST", "/api/v1/groups", "", `[1,2]`, 400},
		{"name of the wrong type", "POST", "/api/v1/groups", "", `{"name":5}`, 400},
		{"empty body", "POST", "/api/v1/groups", "", ``, 400},
		{"two values", "POST", "/api/v1/groups", "", `{"name":"a"}{"name":"b"}`, 400},
		{"missing name", "POST", "/api/v1/groups", "", `{}`, 400},
		{"bad domain", "POST", "/api/v1/groups", "", `{"name":"a","domain":"no spaces allowed"}`, 400},
		{"bad domain query", "GET", "/api/v1/groups?domain=%2F%2F", "", ``, 400},
		{"negative lifetime", "POST", "/api/v1/groups", "", `{"name":"a","maxConnectionTimeSeconds":-1}`, 400},
		{"events of the wrong type", "POST", gp + "/events", g.Token, `{"events":{"name":"x"}}`, 400},
		{"payload of the wrong type", "POST", gp + "/events", g.Token, `{"events":[{"name":"x","payload":{"a":1}}]}`, 400},
		{"data values of the wrong type", "PUT", gp + "/data", g.Token, `{"data":{"a":1}}`, 400},
		{"cursor not a number", "GET", gp + "/events?since=abc", g.Token, ``, 400},
		{"negative cursor", "GET", gp + "/events?since=-5", g.Token, ``, 400},
		{"cursor from the future", "GET", gp + "/events?since=999999999", g.Token, ``, 400},
		{"huge cursor", "GET", gp + "/events?since=99999999999999999999999", g.Token, ``, 400},
		{"bad limit", "GET", gp + "/events?limit=0", g.Token, ``, 400},
		{"bad wait", "GET", gp + "/events?wait=forever", g.Token, ``, 400},
		{"missing token", "GET", gp + "/events", "", ``, 401},
		{"bad token", "GET", gp + "/events", g.Node.ID + ".nope", ``, 401},
		{"unknown group", "GET", "/api/v1/groups/zzzzzzzz", g.Token, ``, 404},
		{"snapshot without token", "GET", gp, "", ``, 401},
		{"unknown group join", "POST", "/api/v1/groups/zzzzzzzz/nodes", "", `{}`, 404},
		{"unknown node", "DELETE", gp + "/nodes/nobody", g.Token, ``, 404},
		{"unknown route", "GET", "/api/v1/nothing", "", ``, 404},
		{"wrong method", "PATCH", gp, "", ``, 405},
	}
	for _, tc := range cases {
		st, raw := c.call(tc.method, tc.path, tc.token, tc.body, nil)
		var e struct {
			Error struct{ Code, Message string }
		}
		if st != tc.want || json.Unmarshal(raw, &e) != nil || e.Error.Code == "" || e.Error.Message == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", tc.name, st, raw, tc.want)
		}
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, nil)
	if st, raw := c.call("GET", "/healthz", "", nil, nil); st != 200 {
		t.Fatalf("healthz: %d %s", st, raw)
	}
	if st, raw := c.call("GET", "/readyz", "", nil, nil); st != 200 {
		t.Fatalf("readyz: %d %s", st, raw)
	}
}

func TestCORSPreflight(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, nil)
	req, _ := http.NewRequest("OPTIONS", c.base+"/api/v1/groups", nil)
	req.Header.Set("Origin", "https://scratch.example")
	req.Header.Set("Access-Control-Request-Method", "POST")
	// As a browser sends it for a call with a bearer token: the allowed headers echo it.
	req.Header.Set("Access-Control-Request-Headers", "authorization,content-type")
	req.Header.Set("Access-Control-Request-Private-Network", "true")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Allow-Headers")), "authorization") ||
		resp.Header.Get("Access-Control-Allow-Private-Network") != "true" {
		t.Fatalf("preflight: %d %v", resp.StatusCode, resp.Header)
	}
}

// The dashboard unlocks with GET /api/v1/admin/check and acts through the API's own routes; the
// admin token is accepted in the same spellings as every token.
func TestAdminCheck(t *testing.T) {
	t.Parallel()
	const token = "s3cret-admin"
	a, c := newServer(t, func(cfg *config.Config) { cfg.AdminToken = token })
	for _, tc := range []struct {
		path, header string
		want         int
	}{
		{"/api/v1/admin/check", "", 401},
		{"/api/v1/admin/check", "Bearer wrong", 401},
		{"/api/v1/admin/check", "Bearer " + token + "x", 401},
		{"/api/v1/admin/check", "Bearer " + token, 204},
		{"/api/v1/admin/check", "bEARER " + token, 204},
		{"/api/v1/admin/check?token=" + token, "", 204},
	} {
		req, _ := http.NewRequest(http.MethodGet, c.base+tc.path, nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want || tc.want == 401 && resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("%s with %q: %d %v, want %d", tc.path, tc.header, resp.StatusCode, resp.Header, tc.want)
		}
	}
	g := c.create("g")
	before := a.Metrics.Totals().Rejected
	for _, tok := range []string{"", "wrong", token + "x"} {
		if st, raw := c.call("DELETE", "/api/v1/groups/"+g.Group.ID, tok, nil, nil); st != 401 || !strings.Contains(string(raw), `"unauthorized"`) {
			t.Errorf("dissolve with token %q: %d %s", tok, st, raw)
		}
	}
	if got := a.Metrics.Totals().Rejected - before; got != 3 {
		t.Errorf("rejected counter moved by %d, want 3", got)
	}
	if st, raw := c.call("DELETE", "/api/v1/groups/"+g.Group.ID, token, nil, nil); st != 204 {
		t.Fatalf("dissolve with the admin token: %d %s", st, raw)
	}
}
