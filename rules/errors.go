package rules

import (
	"errors"
	"fmt"
	"time"

	"meshbox/stream"
)

// Sentinel errors of the group rules. Every entrance maps each to its own answer (an HTTP
// status, a Mesh v2 errorType) in one place.
var (
	ErrGroupNotFound = errors.New("group not found")
	ErrGroupEnded    = errors.New("group has ended")
	ErrNodeNotFound  = errors.New("node not found")
	ErrUnauthorized  = errors.New("invalid token")
	ErrForbidden     = errors.New("not allowed")
	ErrConflict      = errors.New("conflict")
	ErrGroupFull     = errors.New("group is full")
	ErrDomainFull    = errors.New("domain is full")
	ErrInvalid       = errors.New("invalid input")
	ErrTooLarge      = errors.New("too large")
	ErrRateLimited   = errors.New("rate limited")
	// ErrCursorAhead reports a cursor newer than anything committed: the client holds a
	// cursor of another server or database.
	ErrCursorAhead = errors.New("cursor is ahead of the stream")
	// ErrClosed is returned once meshbox is shutting down.
	ErrClosed = stream.ErrClosed
	// ErrStorageFull is returned by writes while the log is out of room (its size budget is
	// reached or its disk is full): nothing was stored, reads still work, and writes resume
	// by themselves once the purge has made room.
	ErrStorageFull = stream.ErrStorageFull
)

// EndedError is the error of a call on a group that has ended, saying why, so every entrance
// words it the same way whether or not the purge has marked the end yet (an expired group is
// "expired" before and after). It matches ErrGroupEnded.
type EndedError struct {
	Group string
	// Why is how the group ended: EndedExpired (its lifetime passed), EndedHostLost (its
	// host stopped sending heartbeats, not yet marked by the purge) or EndedDissolved (the host
	// or the teacher dissolved it).
	Why string
}

// How a group ended, in EndedError.Why.
const (
	EndedExpired   = "expired"
	EndedHostLost  = "host heartbeat expired"
	EndedDissolved = "dissolved"
)

func (e *EndedError) Error() string { return fmt.Sprintf("group %s %s", e.Group, e.Why) }

// Unwrap makes an EndedError match ErrGroupEnded.
func (e *EndedError) Unwrap() error { return ErrGroupEnded }

// RateLimitError is a request refused by a rate limit; RetryAfter says when one would pass.
type RateLimitError struct {
	What       string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string { return e.What }

// Unwrap makes a RateLimitError match ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

func tooLarge(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrTooLarge)...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
}
