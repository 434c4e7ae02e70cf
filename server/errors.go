package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"meshbox/rules"
)

// apiError is an error with its HTTP answer already decided.
type apiError struct {
	status     int
	code       string
	msg        string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, msg: msg}
}

// errorStatus maps any error to its status, code and client message: the one place where
// sentinel errors meet HTTP. Unknown errors are 500 with a generic message.
func errorStatus(err error) (status int, code, msg string) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code, ae.msg
	case errors.Is(err, rules.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", err.Error()
	case errors.Is(err, rules.ErrRateLimited):
		return http.StatusTooManyRequests, "rate_limited", err.Error()
	case errors.Is(err, rules.ErrInvalid):
		return http.StatusBadRequest, "invalid", err.Error()
	case errors.Is(err, rules.ErrCursorAhead):
		return http.StatusBadRequest, "bad_cursor", err.Error()
	case errors.Is(err, rules.ErrUnauthorized):
		return http.StatusUnauthorized, "unauthorized", "missing or invalid token"
	case errors.Is(err, rules.ErrForbidden):
		return http.StatusForbidden, "forbidden", err.Error()
	case errors.Is(err, rules.ErrGroupNotFound):
		return http.StatusNotFound, "group_not_found", err.Error()
	case errors.Is(err, rules.ErrNodeNotFound):
		return http.StatusNotFound, "node_not_found", err.Error()
	case errors.Is(err, rules.ErrGroupEnded):
		return http.StatusGone, "group_ended", err.Error()
	case errors.Is(err, rules.ErrGroupFull):
		return http.StatusConflict, "group_full", err.Error()
	case errors.Is(err, rules.ErrDomainFull):
		return http.StatusConflict, "domain_full", err.Error()
	case errors.Is(err, rules.ErrConflict):
		return http.StatusConflict, "conflict", err.Error()
	case errors.Is(err, rules.ErrStorageFull):
		return http.StatusInsufficientStorage, "storage_full", "the server's storage is full: the oldest items are being purged to make room; retry shortly (reads still work)"
	case errors.Is(err, rules.ErrClosed):
		return http.StatusServiceUnavailable, "unavailable", "meshbox is shutting down"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "timeout", "the request took too long"
	}
	return http.StatusInternalServerError, "internal", "internal error"
}

// rejectReason names the metrics reason of a rejected request, or "" when it is not a rejection.
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

// writeError answers with the JSON error body. Errors of a client that went away are not
// answered; internal errors are logged once, here.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	status, code, msg := errorStatus(err)
	// A full log is reported once by the log when it fills and when it recovers, never per
	// request.
	if status >= 500 && status != http.StatusInsufficientStorage {
		s.log.LogAttrs(r.Context(), slog.LevelError, "request failed", slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.Any("err", err))
	}
	if reason := rejectReason(status); reason != "" {
		s.obs.ObserveRejected(reason)
	}
	if wait := retryAfter(err); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
	}
	writeJSON(w, status, map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// storageFullRetry is the Retry-After of a write refused for want of room. The first refused
// write wakes the purge, which makes room in one pass (well under a second on a Pi for a
// budget's worth of small items); a few seconds keeps refused clients from hammering meanwhile.
const storageFullRetry = 5 * time.Second

// retryAfter is how long a refused client should wait, when the error says.
func retryAfter(err error) time.Duration {
	var ae *apiError
	var rl *rules.RateLimitError
	switch {
	case errors.As(err, &ae):
		return ae.retryAfter
	case errors.As(err, &rl):
		return rl.RetryAfter
	case errors.Is(err, rules.ErrStorageFull):
		return storageFullRetry
	}
	return 0
}
