package server

import (
	"errors"
	"math"
	"net/http"
	"testing"
	"time"

	"meshbox/apierror"
)

// TestParseWait: a long-poll's wait is clamped to the maximum before it becomes a Duration,
// so a wait past the int64 range of nanoseconds (wait=1e10 is 1e19 ns) waits the maximum
// instead of wrapping to a negative wait that answers at once; what is no number of seconds
// is a 400. Issue 22 row 12.
func TestParseWait(t *testing.T) {
	const max = 30 * time.Second
	for _, c := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"0.25", 250 * time.Millisecond},
		{"29.5", 29500 * time.Millisecond},
		{"30", max},
		{"31", max},
		{"9223372036", max}, // the last whole second inside the range
		{"9223372037", max}, // the first outside it
		{"1e10", max},
		{"1e308", max},
	} {
		got, err := parseWait(c.in, max)
		if err != nil || got != c.want {
			t.Errorf("wait=%q: %v %v, want %v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"-1", "-0.5", "NaN", "Inf", "+Inf", "-Inf", "1e400", "soon", "0x"} {
		_, err := parseWait(in, max)
		var ae *apierror.Error
		if !errors.As(err, &ae) || ae.Status != http.StatusBadRequest {
			t.Errorf("wait=%q: %v, want 400", in, err)
		}
	}
	if got, err := parseWait("1e10", 0); got != 0 || err != nil {
		t.Errorf("wait=1e10 with no maximum: %v %v, want no wait", got, err)
	}
}

// TestLifetimeOf: a group lifetime asked for in seconds is capped before it becomes a
// Duration; 18446744074 s times a second wraps to 0.29 s, a group that would end at once.
func TestLifetimeOf(t *testing.T) {
	const max = 6 * time.Hour
	for _, c := range []struct {
		secs int64
		max  time.Duration
		want time.Duration
	}{
		{0, max, 0},
		{60, max, time.Minute},
		{21600, max, max},
		{21601, max, max},
		{9223372037, max, max},
		{18446744074, max, max},
		{math.MaxInt64, max, max},
		{18446744074, 0, math.MaxInt64}, // no maximum here: the rules' own caps it
		{60, 0, time.Minute},
	} {
		if got := lifetimeOf(c.secs, c.max); got != c.want {
			t.Errorf("lifetimeOf(%d, %v) = %v, want %v", c.secs, c.max, got, c.want)
		}
	}
}
