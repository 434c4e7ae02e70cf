package meshv2e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"meshbox/app"
)

// gqlFrom posts GraphQL requests from its own loopback address, standing in for one laptop.
type gqlFrom struct {
	t    *testing.T
	url  string
	http *http.Client
}

func newGQLFrom(t *testing.T, base, ip string) *gqlFrom {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	return &gqlFrom{t: t, url: base + "/graphql", http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// do runs one request and returns its data and first error's type and message ("" when none).
func (g *gqlFrom) do(query string, vars map[string]any) (data map[string]any, errType, msg string) {
	g.t.Helper()
	raw, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest("POST", g.url, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", "any")
	resp, err := g.http.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Data   map[string]any
		Errors []struct{ ErrorType, Message string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		g.t.Fatalf("decode: %v", err)
	}
	if len(out.Errors) > 0 {
		return out.Data, out.Errors[0].ErrorType, out.Errors[0].Message
	}
	return out.Data, "", ""
}

const (
	gqlCreate = `mutation($d:String!,$n:ID!,$name:String!){createGroup(name:$name,hostId:$n,domain:$d,useWebSocket:true){id}}`
	gqlJoin   = `mutation($g:ID!,$d:String!,$n:ID!){joinGroup(groupId:$g,domain:$d,nodeId:$n){id}}`
)

// TestMeshV2OneLaptopGetsItsShare is issue 22, rows 4 and 5 on /graphql with the shipped
// settings: one laptop's joinGroup calls to a classmate's group stop at its share of the group
// (50), its createGroup calls in one domain at its share of the domain (40), each refused
// with ValidationError saying why, while a classmate from another address still joins and
// creates. Before, the same calls filled the group and the domain.
func TestMeshV2OneLaptopGetsItsShare(t *testing.T) {
	t.Parallel()
	a := app.StartTest(t, nil)
	pupil := newGQLFrom(t, a.URL(), "127.0.0.2")
	class := newGQLFrom(t, a.URL(), "127.0.0.3")
	data, et, msg := class.do(gqlCreate, map[string]any{"d": "school", "n": "teacher", "name": "5B"})
	if et != "" {
		t.Fatalf("createGroup: %s %s", et, msg)
	}
	gid := data["createGroup"].(map[string]any)["id"].(string)
	refusal := func(what string, n int, call func(i int) (string, string)) {
		t.Helper()
		done := 0
		for i := range n {
			et, msg := call(i)
			switch {
			case et == "":
				done++
			case et == "ValidationError" && strings.Contains(msg, "share") && strings.Contains(msg, "127.0.0.2"):
			default:
				t.Fatalf("%s %d: %s %q, want success or ValidationError about the share", what, i, et, msg)
			}
		}
		if max := map[string]int{"joinGroup": 50, "createGroup": 40}[what]; done != max {
			t.Fatalf("the pupil's %s succeeded %d times, want its share of %d", what, done, max)
		}
	}
	refusal("joinGroup", 60, func(i int) (string, string) {
		_, et, msg := pupil.do(gqlJoin, map[string]any{"g": gid, "d": "school", "n": fmt.Sprint("Teacher-", i)})
		return et, msg
	})
	if _, et, msg := class.do(gqlJoin, map[string]any{"g": gid, "d": "school", "n": "pupil-1"}); et != "" {
		t.Fatalf("a classmate's joinGroup during the attack: %s %s", et, msg)
	}
	refusal("createGroup", 45, func(i int) (string, string) {
		_, et, msg := pupil.do(gqlCreate, map[string]any{"d": "school", "n": fmt.Sprint("host-", i), "name": "spam"})
		return et, msg
	})
	if _, et, msg := class.do(gqlCreate, map[string]any{"d": "school", "n": "pupil-2", "name": "5B-2"}); et != "" {
		t.Fatalf("a classmate's createGroup during the attack: %s %s", et, msg)
	}
}

// TestMeshV2RefusesUnreadableNames is issue 22, row 7 on /graphql: a group name, a node id
// (Mesh v2 shows it as the node's name), an event name or a data key with a control,
// bidirectional or invisible formatting character is refused with ValidationError naming it.
func TestMeshV2RefusesUnreadableNames(t *testing.T) {
	t.Parallel()
	a := app.StartTest(t, nil)
	g := newGQLFrom(t, a.URL(), "127.0.0.2")
	data, et, msg := g.do(gqlCreate, map[string]any{"d": "school", "n": "host", "name": "5B"})
	if et != "" {
		t.Fatalf("createGroup: %s %s", et, msg)
	}
	gid := data["createGroup"].(map[string]any)["id"].(string)
	v := func(extra map[string]any) map[string]any {
		out := map[string]any{"g": gid, "d": "school", "n": "host"}
		for k, x := range extra {
			out[k] = x
		}
		return out
	}
	fire := `mutation($g:ID!,$d:String!,$n:ID!,$e:String!){fireEventsByNode(groupId:$g,domain:$d,nodeId:$n,events:[{eventName:$e,firedAt:"2026-11-29T00:00:00Z"}]){groupId}}`
	report := `mutation($g:ID!,$d:String!,$n:ID!,$k:String!){reportDataByNode(groupId:$g,domain:$d,nodeId:$n,data:[{key:$k,value:"1"}]){groupId}}`
	for _, tc := range []struct {
		what, query string
		vars        map[string]any
		char        string
	}{
		{"group name", gqlCreate, map[string]any{"d": "school", "n": "host-2", "name": "\u202eTeacher"}, "U+202E"},
		{"host id", gqlCreate, map[string]any{"d": "school", "n": "\u2067host", "name": "5C"}, "U+2067"},
		{"node id", gqlJoin, v(map[string]any{"n": "Teacher\x1b[8m"}), "U+001B"},
		{"event name", fire, v(map[string]any{"e": "go\x00"}), "U+0000"},
		{"data key", report, v(map[string]any{"k": "score\u200f"}), "U+200F"},
	} {
		if _, et, msg := g.do(tc.query, tc.vars); et != "ValidationError" || !strings.Contains(msg, tc.char) {
			t.Errorf("%s: %s %q, want ValidationError naming %s", tc.what, et, msg, tc.char)
		}
	}
	if _, et, msg := g.do(fire, v(map[string]any{"e": "go 🚀"})); et != "" {
		t.Fatalf("a readable event name: %s %s", et, msg)
	}
}
