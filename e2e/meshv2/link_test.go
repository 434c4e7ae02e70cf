package meshv2e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
	"meshbox/hub"
	"meshbox/netdelay"
)

// TestRealtimeLinkFollowsInjectedDelay: a Mesh v2 host whose GraphQL calls and real-time
// socket cross a proxy adding 200 ms each way, as an editor on a slow link would. The group
// snapshot (read with the admin token) times its socket's pings: at least the injected round
// trip, measured on the real-time transport.
func TestRealtimeLinkFollowsInjectedDelay(t *testing.T) {
	t.Parallel()
	const delay = 200 * time.Millisecond
	const adminToken = "teacher-secret-17"
	a := app.StartTest(t, func(c *config.Config) {
		c.AdminToken = adminToken
		c.PingInterval = time.Second // a few pings soon
	})
	slow := "http://" + netdelay.Start(t, strings.TrimPrefix(a.URL(), "http://"), delay)

	var created struct {
		Data struct {
			CreateGroup struct{ ID, Domain string }
		}
		Errors []any
	}
	post(t, slow+"/graphql", "", map[string]any{
		"query":     `mutation($d:String!){createGroup(name:"slow-host",hostId:"slow-host",domain:$d,useWebSocket:true){id domain}}`,
		"variables": map[string]any{"d": "school"},
	}, &created)
	if len(created.Errors) > 0 || created.Data.CreateGroup.ID == "" {
		t.Fatalf("createGroup: %+v", created)
	}
	gid := created.Data.CreateGroup.ID

	// The real-time socket, as the aws-appsync client opens it, through the proxy.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	enc := base64.StdEncoding.EncodeToString
	u := "ws" + strings.TrimPrefix(slow, "http") + "/graphql/realtime?header=" + enc([]byte(`{"host":"h","x-api-key":"any"}`)) + "&payload=" + enc([]byte("{}"))
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{Subprotocols: []string{"graphql-ws"}})
	if err != nil {
		t.Fatalf("dial real-time: %v", err)
	}
	defer ws.CloseNow()
	send := func(v any) {
		b, _ := json.Marshal(v)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	send(map[string]string{"type": "connection_init"})
	sub, _ := json.Marshal(map[string]any{
		"query":     `subscription($groupId: ID!, $domain: String!) { onMessageInGroup(groupId: $groupId, domain: $domain) { groupId } }`,
		"variables": map[string]string{"groupId": gid, "domain": created.Data.CreateGroup.Domain},
	})
	send(map[string]any{"id": "1", "type": "start", "payload": map[string]any{
		"data": string(sub), "extensions": map[string]any{"authorization": map[string]string{"x-api-key": "any", "host": "h"}},
	}})
	started := make(chan struct{})
	go func() { // read, so pings are answered
		once := false
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			var m struct{ Type string }
			if json.Unmarshal(b, &m) == nil && m.Type == "start_ack" && !once {
				once = true
				close(started)
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the subscription was not acknowledged")
	}

	var l hub.Link
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var snap struct {
			Links map[string]hub.Link `json:"links"`
		}
		getJSON(t, a.URL()+"/api/v1/groups/"+gid, adminToken, &snap)
		if l = snap.Links["slow-host"]; l.Samples >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no three round trips of the real-time socket in the snapshot: %+v", snap.Links)
		}
	}
	if l.Transport != "graphql_ws" || l.Measure != "ping" {
		t.Errorf("the host's link is measured as %s/%s, want graphql_ws/ping", l.Transport, l.Measure)
	}
	if min := float64(2 * delay / time.Millisecond); l.MedianMS < min || l.WorstMS < l.MedianMS {
		t.Errorf("the host's link %+v, want a median of at least the injected %v ms", l, min)
	}
}

func getJSON(t *testing.T, url, token string, out any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("decode %s: %v", url, err)
	}
}
