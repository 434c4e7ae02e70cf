package apierror

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestRefusalsAreNotErrorsInTheLog: a 503 meshbox chose (busy: no connection or decoding
// budget left) is answered with its Retry-After, but logged at debug level only, so
// a flood of them does not fill the log; an unexpected failure is logged as an error.
func TestRefusalsAreNotErrorsInTheLog(t *testing.T) {
	var logs bytes.Buffer
	wr := Writer{Log: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	for range 100 {
		w := httptest.NewRecorder()
		wr.Write(w, httptest.NewRequest("POST", "/graphql", nil), &Error{Status: http.StatusServiceUnavailable, Code: "busy", Msg: "busy", RetryAfter: 1e9})
		if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" {
			t.Fatalf("busy answered %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
		}
	}
	if logs.Len() != 0 {
		t.Errorf("100 busy refusals logged at info or above:\n%s", logs.String())
	}
	w := httptest.NewRecorder()
	wr.Write(w, httptest.NewRequest("GET", "/x", nil), errors.New("disk on fire"))
	if w.Code != http.StatusInternalServerError || !strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("an unexpected failure: %d, log %q", w.Code, logs.String())
	}
}
