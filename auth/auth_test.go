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
