package server_test

import (
	"net/http"
	"net/url"
	"testing"
)

// FuzzRequests throws arbitrary bodies and query values at the write and read endpoints of a
// real meshbox: every answer must be a 2xx or a 4xx, never a 5xx, and the server must stay up.
func FuzzRequests(f *testing.F) {
	for _, seed := range []string{
		`{"events":[{"name":"go","payload":"x"}]}`, `{"data":{"k":"v"}}`, `{"name":"g"}`, `{`, `[]`, `null`,
		`{"events":[{"name":"","payload":null}]}`, `{"events":[{"name":"\u0000"}]}`, `{"data":{"":""}}`,
		"\xff\xfe", `{"events":[{"name":"a","payload":1e999}]}`, `{"name":"x","domain":"` + "\u00e9" + `"}`,
	} {
		f.Add(seed, "5")
	}
	_, c := newServer(f, nil)
	g := c.create("fuzz")
	paths := []struct{ method, path string }{
		{"POST", "/api/v1/groups/" + g.Group.ID + "/events"},
		{"PUT", "/api/v1/groups/" + g.Group.ID + "/data"},
		{"POST", "/api/v1/groups"},
		{"POST", "/api/v1/groups/" + g.Group.ID + "/nodes"},
	}
	f.Fuzz(func(t *testing.T, body, since string) {
		c := &client{t: t, base: c.base}
		for _, p := range paths {
			st, raw := c.call(p.method, p.path, g.Token, []byte(body), nil)
			if st >= 500 {
				t.Fatalf("%s %s with %q: %d %s", p.method, p.path, body, st, raw)
			}
		}
		st, raw := c.call("GET", "/api/v1/groups/"+g.Group.ID+"/events?since="+url.QueryEscape(since)+"&limit="+url.QueryEscape(since), g.Token, nil, nil)
		if st >= 500 {
			t.Fatalf("poll since %q: %d %s", since, st, raw)
		}
		if st, _ := c.call("GET", "/healthz", "", nil, nil); st != http.StatusOK {
			t.Fatalf("server unhealthy after %q", body)
		}
	})
}
