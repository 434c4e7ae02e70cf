package meshv2e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"meshbox/app"
)

func post(t *testing.T, url, token string, body any, out any) int {
	t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", "any")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode answer of %s: %v", url, err)
	}
	return resp.StatusCode
}

// TestNativeAndMeshV2ClientsShareOneStream puts a native node and a Mesh v2 node in one group:
// each sees the other's events and data, in one order.
func TestNativeAndMeshV2ClientsShareOneStream(t *testing.T) {
	t.Parallel()
	a := app.StartTest(t, nil)
	gql := func(query string, vars map[string]any) map[string]any {
		var out struct {
			Data   map[string]any
			Errors []any
		}
		post(t, a.URL()+"/graphql", "", map[string]any{"query": query, "variables": vars}, &out)
		if len(out.Errors) > 0 {
			t.Fatalf("graphql errors: %v", out.Errors)
		}
		return out.Data
	}
	created := gql(`mutation($d:String!){createGroup(name:"host-1",hostId:"host-1",domain:$d,useWebSocket:false){id domain}}`, map[string]any{"d": "school"})["createGroup"].(map[string]any)
	gid := created["id"].(string)

	var native struct {
		Token  string
		Cursor int64
		Node   struct{ ID string }
	}
	if st := post(t, a.URL()+"/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": "browser"}, &native); st != 201 {
		t.Fatalf("native join: %d", st)
	}
	var pub struct{ Cursors []int64 }
	post(t, a.URL()+"/api/v1/groups/"+gid+"/events", native.Token, map[string]any{"events": []map[string]any{{"name": "from-native", "payload": "1"}}}, &pub)

	evs := gql(`query($g:ID!,$d:String!,$s:String!){getEventsSince(groupId:$g,domain:$d,since:$s){name firedByNodeId payload cursor}}`,
		map[string]any{"g": gid, "d": "school", "s": fmt.Sprint(native.Cursor)})["getEventsSince"].([]any)
	if len(evs) != 1 || evs[0].(map[string]any)["name"] != "from-native" || evs[0].(map[string]any)["firedByNodeId"] != native.Node.ID {
		t.Fatalf("mesh v2 client sees %v", evs)
	}

	gql(`mutation($g:ID!,$d:String!){fireEventsByNode(groupId:$g,domain:$d,nodeId:"host-1",events:[{eventName:"from-mesh",payload:"2",firedAt:"2026-11-23T08:00:00.000Z"}]){groupId}}`, map[string]any{"g": gid, "d": "school"})
	gql(`mutation($g:ID!,$d:String!){reportDataByNode(groupId:$g,domain:$d,nodeId:"host-1",data:[{key:"score",value:"7"}]){groupId}}`, map[string]any{"g": gid, "d": "school"})

	req, _ := http.NewRequest("GET", fmt.Sprintf("%s/api/v1/groups/%s/events?since=%d", a.URL(), gid, pub.Cursors[0]), nil)
	req.Header.Set("Authorization", "Bearer "+native.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct {
		Items []struct {
			Kind, Node, Name string
			Data             map[string]string
		}
	}
	json.NewDecoder(resp.Body).Decode(&p)
	if len(p.Items) != 2 || p.Items[0].Kind != "event" || p.Items[0].Name != "from-mesh" || p.Items[0].Node != "host-1" ||
		p.Items[1].Kind != "data" || p.Items[1].Data["score"] != "7" {
		t.Fatalf("native client sees %+v", p.Items)
	}
}
