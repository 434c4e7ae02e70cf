package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/app"
	"meshbox/config"
	"meshbox/jetstream/natstest"
)

// TestRemovalOnOneInstanceEndsStreamsOnAnother (issue 22 row 10, shared log): the teacher
// removes a pupil through instance A while the pupil's WebSocket is open on instance B. The
// leave reaches B through the shared log and the hub like any item: B delivers it, then closes
// with 4003 "removed", and the pupil reads nothing after; a classmate on B reads on.
func TestRemovalOnOneInstanceEndsStreamsOnAnother(t *testing.T) {
	t.Parallel()
	nats := natstest.Run(t)
	const teacher = "teacher-token-for-the-shared-log"
	cfg := func(c *config.Config) {
		c.NATSURL, c.EventTTL, c.AdminToken = nats.URLs(), time.Hour, teacher
		c.PublishRate, c.IPRate, c.NodeRate, c.GroupRate = 0, 0, 0, 0
	}
	a, b := app.StartTest(t, cfg), app.StartTest(t, cfg)

	var host, pupil, mate joined
	if code := call(t, "POST", a.URL()+"/api/v1/groups", "", map[string]any{"name": "class"}, &host); code != 201 {
		t.Fatalf("create on A: %d", code)
	}
	gid := host.Group.ID
	for _, j := range []*joined{&pupil, &mate} {
		if code := call(t, "POST", a.URL()+"/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": "pupil"}, j); code != 201 {
			t.Fatalf("join on A: %d", code)
		}
	}
	waitFor(t, "B to know both members", func() bool {
		_, err1 := b.Store.Node(gid, nodeOf(pupil))
		_, err2 := b.Store.Node(gid, nodeOf(mate))
		return err1 == nil && err2 == nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dial := func(j joined) *websocket.Conn {
		u := "ws" + strings.TrimPrefix(b.URL(), "http") + "/api/v1/groups/" + gid + "/ws?token=" + j.Token
		c, _, err := websocket.Dial(ctx, u, nil)
		if err != nil {
			t.Fatalf("dial B: %v", err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	pws, mws := dial(pupil), dial(mate)
	// read returns the next item of a WebSocket, or the error that ended it. A frame may carry
	// several items (a busy instance batches what came together): the rest wait for the next
	// read.
	pending := map[*websocket.Conn][]item{}
	read := func(c *websocket.Conn) (item, error) {
		for len(pending[c]) == 0 {
			_, data, err := c.Read(ctx)
			if err != nil {
				return item{}, err
			}
			var f struct {
				Type  string
				Items []item
			}
			if json.Unmarshal(data, &f) == nil && f.Type == "items" {
				pending[c] = append(pending[c], f.Items...)
			}
		}
		it := pending[c][0]
		pending[c] = pending[c][1:]
		return it, nil
	}

	publish := func(name string) {
		if code := call(t, "POST", a.URL()+"/api/v1/groups/"+gid+"/events", host.Token, map[string]any{"events": []map[string]string{{"name": name}}}, nil); code != 200 {
			t.Fatalf("publish on A: %d", code)
		}
	}
	publish("before")
	for _, c := range []*websocket.Conn{pws, mws} {
		if it, err := read(c); err != nil || it.Name != "before" {
			t.Fatalf("got %+v %v, want the event before", it, err)
		}
	}
	req, _ := http.NewRequest("DELETE", a.URL()+"/api/v1/groups/"+gid+"/nodes/"+nodeOf(pupil), nil)
	req.Header.Set("Authorization", "Bearer "+teacher)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("remove on A: %v %v", resp, err)
	}
	resp.Body.Close()
	publish("after")

	if it, err := read(pws); err != nil || it.Kind != "leave" {
		t.Fatalf("pupil on B: %+v %v, want its leave", it, err)
	}
	var ce websocket.CloseError
	if it, err := read(pws); !errors.As(err, &ce) || ce.Code != 4003 || ce.Reason != "removed" {
		t.Fatalf("pupil on B after its leave: %+v %v, want close 4003 removed", it, err)
	}
	if it, err := read(mws); err != nil || it.Kind != "leave" {
		t.Fatalf("classmate on B: %+v %v, want the pupil's leave", it, err)
	}
	if it, err := read(mws); err != nil || it.Name != "after" {
		t.Fatalf("classmate on B: %+v %v, want the event after", it, err)
	}
}

// nodeOf is the node id of a joined node: its token is "<node>.<secret>".
func nodeOf(j joined) string { return j.Token[:strings.LastIndexByte(j.Token, '.')] }
