package meshv2

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzGraphQLBody posts arbitrary bodies: every answer is a 2xx or 4xx JSON response, never a
// panic or a 5xx.
func FuzzGraphQLBody(f *testing.F) {
	f.Add([]byte(`{"query":"mutation { createDomain }"}`))
	f.Add([]byte(`{"query":"query($d: String!) { listGroupsByDomain(domain: $d) { id } }","variables":{"d":"x"}}`))
	f.Add([]byte(`{"query":"{ getEventsSince(groupId: \"g\", domain: \"d\", since: \"-1\") { name } }"}`))
	f.Add([]byte(`{"query":"subscription { onMessageInGroup(groupId: \"g\", domain: \"d\") { groupId } }"}`))
	f.Add([]byte(`{"query": 5}`))
	f.Add([]byte(`[]`))
	h, err := New(Config{}, newFakeBackend(), nil)
	if err != nil {
		f.Fatal(err)
	}
	handler := h.GraphQL()
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body)
		}
		if ct := rec.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Fatalf("content type %q", ct)
		}
	})
}

// FuzzHeaderAPIKey feeds arbitrary header query parameters to the real-time key decoder.
func FuzzHeaderAPIKey(f *testing.F) {
	f.Add("eyJob3N0IjoieCIsIngtYXBpLWtleSI6ImsifQ==")
	f.Add("%%%")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		_ = headerAPIKey(s)
	})
}
