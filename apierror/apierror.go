// Package apierror is where an error becomes an answer: every sentinel error of the rules, the
// connection layer and the HTTP layers maps here, once, to its HTTP status, the native API's
// error code, the Mesh v2 errorType and a message safe to show, and Write answers it as the
// native API's JSON error body. Every entrance (native API, dashboard, Mesh v2) asks here
// instead of keeping a map of its own, so the answers cannot drift apart.
package apierror

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"meshbox/live"
	"meshbox/ratelimit"
	"meshbox/rules"
)

// Mesh v2 errorTypes, as the AppSync service names them and the Smalruby client acts on them.
const (
	MeshGroupNotFound   = "GroupNotFound"
	MeshNodeNotFound    = "NodeNotFound"
	MeshUnauthorized    = "Unauthorized"
	MeshValidation      = "ValidationError"
	MeshInternal        = "InternalFailure"
	MeshUnauthenticated = "UnauthorizedException"
	MeshBusy            = "TooManyRequestsException"
	MeshStorageFull     = "StorageFull"
)

// Error is an error whose answer is decided where it happens (a malformed cursor, a refused
// rate): the entrances build it, Of reads it.
type Error struct {
	Status     int
	Code       string
	Msg        string
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Msg }

// New returns an Error with its status, code and message.
func New(status int, code, msg string) *Error { return &Error{Status: status, Code: code, Msg: msg} }

// Answer is how an error is answered.
type Answer struct {
	// Status is the HTTP status; Code the native API's error code.
	Status int
	Code   string
	// Message is safe to show the client; internal errors get a generic one.
	Message string
	// MeshType is the Mesh v2 errorType.
	MeshType string
	// RetryAfter, when positive, is sent as Retry-After.
	RetryAfter time.Duration
	// Reject is the metrics reason of a refused request, "" when it is not a refusal.
	Reject string
	// Internal errors are logged once, where they are answered.
	Internal bool
}

// StorageFullRetry is the Retry-After of a write refused for want of room. The first refused
// write wakes the purge, which makes room in one pass (well under a second on a Pi for a
// budget's worth of small items); a few seconds keeps refused clients from hammering meanwhile.
const StorageFullRetry = 5 * time.Second

// sentinel is one row of the map.
type sentinel struct {
	err      error
	status   int
	code     string
	meshType string
	// msg, when set, replaces the error's own text (which may say more than a client needs).
	msg string
}

// sentinels is the map itself, most specific first.
var sentinels = []sentinel{
	{rules.ErrTooLarge, http.StatusRequestEntityTooLarge, "too_large", MeshValidation, ""},
	// 429, not 403 or 409: the refusal is about what the caller's address already holds,
	// not about the group or domain (group_full, domain_full), and it lifts by itself as
	// that address's members lapse or its groups end (Retry-After); 403 would tell clients
	// never to retry. Mesh v2 gets ValidationError like group_full: not a type the Smalruby
	// client disconnects on, and the message says why.
	{rules.ErrClientShare, http.StatusTooManyRequests, "client_share_exceeded", MeshValidation, ""},
	{rules.ErrRateLimited, http.StatusTooManyRequests, "rate_limited", MeshValidation, ""},
	{rules.ErrInvalid, http.StatusBadRequest, "invalid", MeshValidation, ""},
	{rules.ErrCursorAhead, http.StatusBadRequest, "bad_cursor", MeshValidation, ""},
	{rules.ErrUnauthorized, http.StatusUnauthorized, "unauthorized", MeshUnauthorized, "missing or invalid token"},
	{rules.ErrForbidden, http.StatusForbidden, "forbidden", MeshUnauthorized, ""},
	{rules.ErrGroupNotFound, http.StatusNotFound, "group_not_found", MeshGroupNotFound, ""},
	{rules.ErrNodeNotFound, http.StatusNotFound, "node_not_found", MeshNodeNotFound, ""},
	{rules.ErrGroupEnded, http.StatusGone, "group_ended", MeshGroupNotFound, ""},
	{rules.ErrGroupFull, http.StatusConflict, "group_full", MeshValidation, ""},
	{rules.ErrDomainFull, http.StatusConflict, "domain_full", MeshValidation, ""},
	{rules.ErrConflict, http.StatusConflict, "conflict", MeshValidation, ""},
	{rules.ErrStorageFull, http.StatusInsufficientStorage, "storage_full", MeshStorageFull,
		"the server's storage is full: the oldest items are being purged to make room; retry shortly (reads still work)"},
	{rules.ErrClosed, http.StatusServiceUnavailable, "unavailable", MeshInternal, "meshbox is shutting down"},
	{live.ErrShuttingDown, http.StatusServiceUnavailable, "unavailable", MeshInternal, "meshbox is shutting down"},
	{live.ErrTooManyConns, http.StatusTooManyRequests, "too_many_connections", MeshBusy, ""},
	// A spent request budget, whatever the entrance (an HTTP request, a WebSocket message).
	{ratelimit.ErrLimited, http.StatusTooManyRequests, "rate_limited", MeshBusy, ""},
	{live.ErrNoHijack, http.StatusHTTPVersionNotSupported, "http_version_not_supported", MeshInternal,
		"event streams need HTTP/1.1: use WebSocket or long-poll, or have the proxy speak HTTP/1.1 to meshbox"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "timeout", MeshInternal, "the request took too long"},
}

// Of maps any error to its answer. Unknown errors are 500 (InternalFailure) with a generic
// message.
func Of(err error) Answer {
	var a Answer
	var ae *Error
	if errors.As(err, &ae) {
		a = Answer{Status: ae.Status, Code: ae.Code, Message: ae.Msg, MeshType: meshTypeOf(ae.Status), RetryAfter: ae.RetryAfter}
	} else {
		a = Answer{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", MeshType: MeshInternal, Internal: true}
		for _, s := range sentinels {
			if errors.Is(err, s.err) {
				a = Answer{Status: s.status, Code: s.code, Message: err.Error(), MeshType: s.meshType}
				if s.msg != "" {
					a.Message = s.msg
				}
				break
			}
		}
	}
	var rl *rules.RateLimitError
	var budget *ratelimit.LimitError
	switch {
	case a.RetryAfter > 0:
	case errors.As(err, &rl):
		a.RetryAfter = rl.RetryAfter
	case errors.As(err, &budget):
		a.RetryAfter = budget.RetryAfter
	case errors.Is(err, rules.ErrStorageFull):
		a.RetryAfter = StorageFullRetry
	case errors.Is(err, live.ErrTooManyConns):
		a.RetryAfter = 5 * time.Second
	}
	a.Reject = rejectReason(a.Status)
	return a
}

// meshTypeOf is the Mesh v2 errorType of an answer decided by status alone.
func meshTypeOf(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return MeshBusy
	case status == http.StatusUnauthorized:
		return MeshUnauthenticated
	case status == http.StatusNotFound:
		return MeshGroupNotFound
	case status >= 500:
		return MeshInternal
	}
	return MeshValidation
}

// rejectReason names the metrics reason of a refused request, or "" when it is not a refusal.
func rejectReason(status int) string {
	switch status {
	case http.StatusRequestEntityTooLarge:
		return "too_large"
	case http.StatusTooManyRequests:
		return "rate_limited"
	case http.StatusUnauthorized, http.StatusForbidden:
		return "unauthorized"
	case http.StatusBadRequest:
		return "bad_request"
	case http.StatusConflict:
		return "limit"
	case http.StatusInsufficientStorage:
		return "storage_full"
	}
	return ""
}

// Writer answers errors as the native API's JSON body, logging internal ones once and
// counting refusals.
type Writer struct {
	Log *slog.Logger
	// Rejected counts a refused request by reason; nil counts nothing.
	Rejected func(reason string)
}

// Write answers err. Errors of a client that went away are not answered.
func (wr Writer) Write(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	a := Of(err)
	// A full log is reported once by the log when it fills and when it recovers, never per
	// request.
	if a.Status >= 500 && a.Status != http.StatusInsufficientStorage && wr.Log != nil {
		level := slog.LevelError
		var decided *Error
		if a.Status == http.StatusServiceUnavailable && errors.As(err, &decided) {
			// A refusal meshbox chose to protect the class (no connection or decoding budget
			// left): the rejected-requests metric counts it, and a flood must not fill the log
			// (a Raspberry Pi's SD card) with one line per refused request.
			level = slog.LevelDebug
		}
		wr.Log.LogAttrs(r.Context(), level, "request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	if a.Reject != "" && wr.Rejected != nil {
		wr.Rejected(a.Reject)
	}
	if a.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter.Seconds()+0.999)))
	}
	WriteJSON(w, a.Status, map[string]any{"error": map[string]string{"code": a.Code, "message": a.Message}})
}

// WriteJSON marshals before writing, so a marshal error never leaves half a body.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"internal error"}}`)
	}
	WriteRaw(w, status, append(b, '\n'))
}

// WriteRaw writes a JSON body already encoded.
func WriteRaw(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b)
}
