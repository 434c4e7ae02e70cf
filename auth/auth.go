// Package auth holds how meshbox reads a request's credentials and checks the admin token: one
// place, so every route (native API, dashboard, admin calls) accepts the same spellings and
// compares the same way.
package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/url"
	"strings"
)

// Token is the bearer token of a request: from `Authorization: Bearer TOKEN` (the scheme in any
// case, as RFC 9110 says auth schemes are case-insensitive), or from ?token= where a browser
// cannot set headers (EventSource, WebSocket, a link). q is the parsed query, or nil to parse
// it when needed. A header with another scheme yields "" rather than falling back to the query,
// so a request never carries two different credentials.
func Token(r *http.Request, q url.Values) string {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return ""
		}
		return strings.TrimSpace(tok)
	}
	if q == nil {
		if r.URL.RawQuery == "" {
			return ""
		}
		q = r.URL.Query()
	}
	return q.Get("token")
}

// Secret checks tokens against one secret: the admin token, or Mesh v2's API key. It is the one
// comparison of a presented credential with a configured one in meshbox.
type Secret struct {
	set  bool
	want [sha256.Size]byte
}

// NewSecret returns the check for secret; an empty secret matches nothing.
func NewSecret(secret string) *Secret {
	return &Secret{set: secret != "", want: sha256.Sum256([]byte(secret))}
}

// Set reports whether a secret is configured.
func (a *Secret) Set() bool { return a != nil && a.set }

// Match reports whether tok is the secret. Both sides are hashed first, so the comparison
// takes the same time whatever the lengths and wherever the first difference is.
func (a *Secret) Match(tok string) bool {
	if a == nil || !a.set || tok == "" {
		return false
	}
	// Every request with a token is checked against the admin token: hash a token of
	// ordinary length from a buffer on the stack rather than a converted copy on the heap.
	var got [sha256.Size]byte
	var buf [128]byte
	if len(tok) <= len(buf) {
		got = sha256.Sum256(buf[:copy(buf[:], tok)])
	} else {
		got = sha256.Sum256([]byte(tok))
	}
	return subtle.ConstantTimeCompare(got[:], a.want[:]) == 1
}

// Request reports whether r carries the secret as its bearer token (header or query).
func (a *Secret) Request(r *http.Request) bool { return a.Match(Token(r, nil)) }
