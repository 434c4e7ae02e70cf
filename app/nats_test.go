package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
	"meshbox/jetstream/natstest"
)

func call(t *testing.T, method, url, token string, body, out any) int {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		raw, _ := json.Marshal(body)
		rd = bytes.NewReader(raw)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

type joined struct {
	Group struct {
		ID     string `json:"id"`
		Domain string `json:"domain"`
	} `json:"group"`
	Token string `json:"token"`
}

type poll struct {
	Items []struct {
		Cursor int64  `json:"cursor"`
		Kind   string `json:"kind"`
		Name   string `json:"name"`
	} `json:"items"`
	Next int64 `json:"next"`
}

// With a NATS URL, meshbox keeps its groups in JetStream: what one process wrote, a process
// started after it over the same stream serves, with cursors that go on.
func TestMeshboxOnJetStream(t *testing.T) {
	t.Parallel()
	nats := natstest.Run(t)
	onNATS := func(c *config.Config) { c.NATSURL = nats.URLs(); c.EventTTL = time.Hour }

	a := app.StartTest(t, onNATS)
	var host joined
	if code := call(t, "POST", a.URL()+"/api/v1/groups", "", map[string]any{"name": "class"}, &host); code != 201 {
		t.Fatalf("create: %d", code)
	}
	var ack struct {
		Cursors []int64 `json:"cursors"`
	}
	events := map[string]any{"events": []map[string]string{{"name": "a"}, {"name": "b"}}}
	if code := call(t, "POST", fmt.Sprintf("%s/api/v1/groups/%s/events", a.URL(), host.Group.ID), host.Token, events, &ack); code != 200 || len(ack.Cursors) != 2 {
		t.Fatalf("publish: %d %+v", code, ack)
	}
	var got poll
	call(t, "GET", fmt.Sprintf("%s/api/v1/groups/%s/events?since=0", a.URL(), host.Group.ID), host.Token, nil, &got)
	if len(got.Items) < 2 || got.Items[len(got.Items)-1].Name != "b" {
		t.Fatalf("poll: %+v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	// Another process over the same stream (its own SQLite path is never opened).
	b := app.StartTest(t, onNATS)
	var again poll
	if code := call(t, "GET", fmt.Sprintf("%s/api/v1/groups/%s/events?since=0", b.URL(), host.Group.ID), host.Token, nil, &again); code != 200 || len(again.Items) != len(got.Items) {
		t.Fatalf("after restart: %d %+v", code, again)
	}
	var member joined
	if code := call(t, "POST", fmt.Sprintf("%s/api/v1/groups/%s/nodes", b.URL(), host.Group.ID), "", map[string]any{"name": "pupil"}, &member); code != 201 {
		t.Fatalf("join after restart: %d", code)
	}
	if code := call(t, "POST", fmt.Sprintf("%s/api/v1/groups/%s/events", b.URL(), host.Group.ID), member.Token, map[string]any{"events": []map[string]string{{"name": "c"}}}, &ack); code != 200 || ack.Cursors[0] <= got.Items[len(got.Items)-1].Cursor {
		t.Fatalf("publish after restart: %d %+v", code, ack)
	}
}
