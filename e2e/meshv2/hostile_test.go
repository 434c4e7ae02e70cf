package meshv2e2e

import (
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"meshbox/app"
	"meshbox/config"
)

// gqlErrorType posts one GraphQL request without any credential (the Mesh v2 protocol has
// none per node) and returns the first error's errorType ("" when it succeeded).
func gqlErrorType(t *testing.T, base, query string, vars map[string]any) string {
	t.Helper()
	var out struct {
		Data   map[string]any
		Errors []struct {
			ErrorType string
			Message   string
		}
	}
	post(t, base+"/graphql", "", map[string]any{"query": query, "variables": vars}, &out)
	if len(out.Errors) == 0 {
		return ""
	}
	return out.Errors[0].ErrorType
}

// TestMeshV2CannotActOnNativeNodes is a hostile LAN client with no token, using only public ids
// (the snapshot, the dashboard and listGroupsByDomain show them): it must not dissolve a
// native group, act as or remove a native node, or take a native node's id and with it its
// token. A native group the host opened to Mesh v2 takes Mesh v2 nodes, which act as
// themselves only.
func TestMeshV2CannotActOnNativeNodes(t *testing.T) {
	t.Parallel()
	a := app.StartTest(t, func(c *config.Config) { c.PublishRate = 0 })
	base := a.URL()
	type joined struct {
		Group struct{ ID, Domain, Host string }
		Node  struct{ ID string }
		Token string
	}
	create := func(open bool) (host, member joined) {
		if st := post(t, base+"/api/v1/groups", "", map[string]any{"name": "native", "meshV2": open}, &host); st != http.StatusCreated {
			t.Fatalf("create: %d", st)
		}
		if st := post(t, base+"/api/v1/groups/"+host.Group.ID+"/nodes", "", map[string]any{"name": "m"}, &member); st != http.StatusCreated {
			t.Fatalf("join: %d", st)
		}
		return host, member
	}
	for _, open := range []bool{false, true} {
		host, member := create(open)
		gid, dom := host.Group.ID, host.Group.Domain
		v := func(node string) map[string]any { return map[string]any{"g": gid, "d": dom, "n": node} }
		attacks := map[string]struct {
			query string
			vars  map[string]any
		}{
			"dissolve":         {`mutation($g:ID!,$d:String!,$n:ID!){dissolveGroup(groupId:$g,domain:$d,hostId:$n){groupId}}`, v(host.Node.ID)},
			"remove member":    {`mutation($g:ID!,$d:String!,$n:ID!){leaveGroup(groupId:$g,domain:$d,nodeId:$n){groupId}}`, v(member.Node.ID)},
			"publish as":       {`mutation($g:ID!,$d:String!,$n:ID!){fireEventsByNode(groupId:$g,domain:$d,nodeId:$n,events:[{eventName:"x",firedAt:"2026-11-29T00:00:00Z"}]){groupId}}`, v(member.Node.ID)},
			"record as":        {`mutation($g:ID!,$d:String!,$n:ID!){recordEventsByNode(groupId:$g,domain:$d,nodeId:$n,events:[{eventName:"x",firedAt:"2026-11-29T00:00:00Z"}]){groupId}}`, v(member.Node.ID)},
			"overwrite data":   {`mutation($g:ID!,$d:String!,$n:ID!){reportDataByNode(groupId:$g,domain:$d,nodeId:$n,data:[{key:"k",value:"v"}]){groupId}}`, v(member.Node.ID)},
			"host heartbeat":   {`mutation($g:ID!,$d:String!,$n:ID!){renewHeartbeat(groupId:$g,domain:$d,hostId:$n){groupId}}`, v(host.Node.ID)},
			"member heartbeat": {`mutation($g:ID!,$d:String!,$n:ID!){sendMemberHeartbeat(groupId:$g,domain:$d,nodeId:$n){groupId}}`, v(member.Node.ID)},
			"re-join as":       {`mutation($g:ID!,$d:String!,$n:ID!){joinGroup(groupId:$g,domain:$d,nodeId:$n){id}}`, v(member.Node.ID)},
			"re-create as host": {`mutation($d:String!,$n:ID!){createGroup(name:"x",hostId:$n,domain:$d,useWebSocket:true){id}}`,
				map[string]any{"d": dom, "n": host.Node.ID}},
		}
		for name, at := range attacks {
			if got := gqlErrorType(t, base, at.query, at.vars); got != "Unauthorized" {
				t.Errorf("open=%v: %s: errorType %q, want Unauthorized", open, name, got)
			}
		}
		// Nothing changed: both tokens still work, the group lives, no event was stored.
		req, _ := http.NewRequest("GET", base+"/api/v1/groups/"+gid, nil)
		req.Header.Set("Authorization", "Bearer "+member.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("open=%v: snapshot after the attacks: %v %v", open, resp.StatusCode, err)
		}
		resp.Body.Close()
		var hb struct{}
		if st := post(t, base+"/api/v1/groups/"+gid+"/heartbeat", host.Token, map[string]any{}, &hb); st != http.StatusOK {
			t.Errorf("open=%v: host token after the attacks: %d", open, st)
		}
		// A closed group is invisible to Mesh v2; an open one takes a Mesh v2 node as itself.
		joinErr := gqlErrorType(t, base, `mutation($g:ID!,$d:String!,$n:ID!){joinGroup(groupId:$g,domain:$d,nodeId:$n){id}}`, v("scratch-1"))
		listed := listGroups(t, base, dom)
		switch {
		case !open && (joinErr != "Unauthorized" || strings.Contains(listed, gid)):
			t.Errorf("closed group: Mesh v2 join gave %q, listing %s", joinErr, listed)
		case open && (joinErr != "" || !strings.Contains(listed, gid)):
			t.Errorf("open group: Mesh v2 join gave %q, listing %s", joinErr, listed)
		}
		if open {
			if got := gqlErrorType(t, base, `mutation($g:ID!,$d:String!,$n:ID!){fireEventsByNode(groupId:$g,domain:$d,nodeId:$n,events:[{eventName:"hi",firedAt:"2026-11-29T00:00:00Z"}]){groupId}}`, v("scratch-1")); got != "" {
				t.Errorf("a Mesh v2 node of an open group publishing as itself: %q", got)
			}
		}
	}
}

func listGroups(t *testing.T, base, domain string) string {
	t.Helper()
	var out struct {
		Data struct{ ListGroupsByDomain []struct{ ID string } }
	}
	post(t, base+"/graphql", "", map[string]any{"query": `query($d:String!){listGroupsByDomain(domain:$d){id}}`, "variables": map[string]any{"d": domain}}, &out)
	return fmt.Sprint(out.Data.ListGroupsByDomain)
}

// TestMeshV2GetsTheNativeLimits: /graphql goes through the same rules as the native API, so
// every limit holds there too, and refused input leaves the heap small.
func TestMeshV2GetsTheNativeLimits(t *testing.T) {
	t.Parallel()
	a := app.StartTest(t, func(c *config.Config) {
		c.MaxPayloadBytes, c.MaxEventsPerPublish, c.MaxDataValueBytes, c.MaxDataKeys = 1024, 50, 256, 4
		c.MaxNodesPerGroup, c.MaxGroupsPerDomain, c.PublishRate = 3, 2, 5
	})
	base := a.URL()
	gql := func(query string, vars map[string]any) string { return gqlErrorType(t, base, query, vars) }
	create := `mutation($d:String!,$n:ID!,$name:String!){createGroup(name:$name,hostId:$n,domain:$d,useWebSocket:true){id}}`
	var created struct {
		Data   struct{ CreateGroup struct{ ID string } }
		Errors []any
	}
	post(t, base+"/graphql", "", map[string]any{"query": create, "variables": map[string]any{"d": "lim", "n": "host-a", "name": "g"}}, &created)
	gid := created.Data.CreateGroup.ID
	if gid == "" {
		t.Fatalf("createGroup failed: %v", created.Errors)
	}
	v := func(extra map[string]any) map[string]any {
		out := map[string]any{"g": gid, "d": "lim", "n": "host-a"}
		for k, x := range extra {
			out[k] = x
		}
		return out
	}
	fire := `mutation($g:ID!,$d:String!,$n:ID!,$e:[EventInput!]!){fireEventsByNode(groupId:$g,domain:$d,nodeId:$n,events:$e){groupId}}`
	event := func(payload string) map[string]any {
		return map[string]any{"eventName": "e", "payload": payload, "firedAt": "2026-11-29T00:00:00.000Z"}
	}
	many := make([]map[string]any, 51)
	for i := range many {
		many[i] = event("")
	}
	flood := make([]map[string]any, 20000)
	for i := range flood {
		flood[i] = event("")
	}
	report := `mutation($g:ID!,$d:String!,$n:ID!,$k:[SensorDataInput!]!){reportDataByNode(groupId:$g,domain:$d,nodeId:$n,data:$k){groupId}}`
	kv := func(n, size int) []map[string]any {
		out := make([]map[string]any, n)
		for i := range out {
			out[i] = map[string]any{"key": fmt.Sprintf("k%d", i), "value": strings.Repeat("v", size)}
		}
		return out
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// A body larger than any call the limits allow (the /graphql body bound is sized from them:
	// here 50 events of 1 KiB) is refused before it is decoded, as too large; within it, the
	// rules refuse what passes their limits.
	for name, c := range map[string]struct {
		query, want string
		vars        map[string]any
	}{
		"payload over the limit": {fire, "ValidationError", v(map[string]any{"e": []any{event(strings.Repeat("p", 1025))}})},
		"3 MiB payload":          {fire, "PayloadTooLarge", v(map[string]any{"e": []any{event(strings.Repeat("p", 3<<20))}})},
		"too many events":        {fire, "ValidationError", v(map[string]any{"e": many})},
		"20,000 events":          {fire, "PayloadTooLarge", v(map[string]any{"e": flood})},
		"data value too long":    {report, "ValidationError", v(map[string]any{"k": kv(1, 257)})},
		"too many data keys":     {report, "ValidationError", v(map[string]any{"k": kv(5, 1)})},
	} {
		if got := gql(c.query, c.vars); got != c.want {
			t.Errorf("%s: errorType %q, want %s", name, got, c.want)
		}
	}
	// Nodes per group, groups per domain.
	join := `mutation($g:ID!,$d:String!,$n:ID!){joinGroup(groupId:$g,domain:$d,nodeId:$n){id}}`
	for i, want := range []string{"", "", "ValidationError"} {
		if got := gql(join, v(map[string]any{"n": fmt.Sprintf("m%d", i)})); got != want {
			t.Errorf("join %d: %q, want %q", i, got, want)
		}
	}
	for i, want := range []string{"", "ValidationError"} {
		if got := gql(create, map[string]any{"d": "lim", "n": fmt.Sprintf("host-%d", i), "name": "g"}); got != want {
			t.Errorf("create %d: %q, want %q", i, got, want)
		}
	}
	// The publish rate per node: a burst of two per second's worth, then refused.
	refused := 0
	for range 20 {
		if gql(fire, v(map[string]any{"e": []any{event("x")}})) != "" {
			refused++
		}
	}
	if refused == 0 {
		t.Error("20 quick publishes from one node were all accepted at a rate of 5/s")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 16<<20 {
		t.Errorf("refused input left the heap %d MiB larger", grew>>20)
	}
}
