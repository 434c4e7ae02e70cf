package auth_test

import (
	"net/http/httptest"
	"testing"

	"meshbox/auth"
)

func TestTokenSpellings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		header, target, want string
	}{
		{"Bearer abc", "/", "abc"},
		{"bearer abc", "/", "abc"},
		{"BEARER  abc ", "/", "abc"},
		{"Basic abc", "/?token=q", ""}, // another scheme: no fallback to the query
		{"", "/?token=q", "q"},
		{"", "/", ""},
	} {
		r := httptest.NewRequest("GET", tc.target, nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		if got := auth.Token(r, nil); got != tc.want {
			t.Errorf("Token(%q, %q) = %q, want %q", tc.header, tc.target, got, tc.want)
		}
	}
}

func TestAdminMatch(t *testing.T) {
	t.Parallel()
	a := auth.NewAdmin("secret", nil)
	if !a.Match("secret") || a.Match("secre") || a.Match("secret2") || a.Match("") {
		t.Fatal("admin match is wrong")
	}
	if auth.NewAdmin("", nil).Match("") || auth.NewAdmin("", nil).Match("x") {
		t.Fatal("an unset admin token must match nothing")
	}
	r := httptest.NewRequest("GET", "/api/v1/admin/check?token=secret", nil)
	if ok, _ := a.CheckRequest(r, "192.0.2.1"); !ok {
		t.Fatal("?token= is not accepted")
	}
}

// TestOrigin: the address a browser used, as written back into pages: the Host header (lowercased)
// over plain HTTP; behind a trusted proxy its forwarded scheme and host (the first of each
// list); the forwarded headers ignored without --trust-proxy; an implausible host refused.
func TestOrigin(t *testing.T) {
	direct, proxied := auth.Clients{}, auth.Clients{TrustProxy: true}
	for _, c := range []struct {
		clients auth.Clients
		host    string
		headers map[string]string
		want    string
		ok      bool
	}{
		{direct, "192.168.1.20:8080", nil, "http://192.168.1.20:8080", true},
		{direct, "MeshBox.Local:8080", nil, "http://meshbox.local:8080", true},
		{direct, "[fe80::1]:8080", nil, "http://[fe80::1]:8080", true},
		{direct, "box", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example"}, "http://box", true},
		{proxied, "10.0.0.5:8080", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mesh.school.example, 10.0.0.1"}, "https://mesh.school.example", true},
		{proxied, "10.0.0.5:8080", map[string]string{"X-Forwarded-Proto": "javascript"}, "http://10.0.0.5:8080", true},
		{proxied, "10.0.0.5:8080", map[string]string{"X-Forwarded-Host": "a b"}, "", false},
		{direct, "a..b", nil, "", false},
		{direct, "box:0", nil, "", false},
		{direct, "box:65536", nil, "", false},
		{direct, "user@box", nil, "", false},
		{direct, "[fe80::1%eth0]:80", nil, "", false},
		{direct, "", nil, "", false},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = c.host
		for k, v := range c.headers {
			r.Header.Set(k, v)
		}
		got, ok := c.clients.Origin(r)
		if got != c.want || ok != c.ok {
			t.Errorf("Host %q %v (proxy %v): %q %v, want %q %v", c.host, c.headers, c.clients.TrustProxy, got, ok, c.want, c.ok)
		}
	}
}
