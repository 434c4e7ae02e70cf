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
	// ErrClientShare reports that the client address already holds its fair share of what
	// the class shares (groups of a domain, members of a group, members in all): refused
	// until some of what it holds ends. It comes as a RateLimitError with a RetryAfter.
	ErrClientShare = errors.New("client address holds its share")
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
	// Kind, when set, is the more specific sentinel the error also matches (ErrClientShare).
	Kind error
}

func (e *RateLimitError) Error() string { return e.What }

// Unwrap makes a RateLimitError match ErrRateLimited, and its Kind.
func (e *RateLimitError) Unwrap() []error {
	if e.Kind != nil {
		return []error{e.Kind, ErrRateLimited}
	}
	return []error{ErrRateLimited}
}

// shareRetry is the Retry-After of a refused share: what a client holds ends by itself
// (members lapse, groups end), or when the client leaves or ends it.
const shareRetry = time.Minute

// shareExceeded is a request refused because its client holds its share.
func shareExceeded(format string, args ...any) error {
	return &RateLimitError{What: fmt.Sprintf(format, args...), RetryAfter: shareRetry, Kind: ErrClientShare}
}

func tooLarge(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrTooLarge)...)
}

func invalid(format string, args ...any) error {
	return fmt.Errorf(format+": %w", append(args, ErrInvalid)...)
}
