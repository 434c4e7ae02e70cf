package server_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"meshbox/config"
)

// openLongPolls is meshbox_connections_open{transport="longpoll"} of /metrics: the long-polls
// registered as waiting (package live registers a poll only once it waits).
func openLongPolls(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `meshbox_connections_open{transport="longpoll"} `); ok {
			return v
		}
	}
	return ""
}

// TestHugeWaitStillWaits (issue 22 row 12, long-poll): wait=1e10 asks for the longest wait
// there is. Its seconds once became a Duration before the --max-wait clamp and overflowed to a
// negative wait, so the poll answered at once with nothing and the client polled in a tight
// loop. Now the poll is registered as waiting and answers only when an item comes: the test
// publishes after it sees the poll waiting, and the answer holds that item. (--max-wait is
// ten minutes, so no slow machine can time the poll out first.)
func TestHugeWaitStillWaits(t *testing.T) {
	t.Parallel()
	a, c := newServer(t, func(cfg *config.Config) { unlimited(cfg); cfg.MaxWait = 10 * time.Minute })
	host := c.create("wait")
	reader := c.join(host.Group.ID, "reader")
	for _, wait := range []string{"1e10", "9223372037", "1e300"} {
		since := c.publish(host, "before-"+wait)[0]
		type answer struct {
			status int
			page   page
			raw    []byte
			err    error
		}
		done := make(chan answer, 1)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			st, p, raw, err := pollOnce(ctx, a.URL(), reader, cur(since), wait)
			done <- answer{st, p, raw, err}
		}()
		eventually(t, 10*time.Second, "the long-poll with wait="+wait+" never waited", func() bool {
			select {
			case got := <-done:
				cancel()
				t.Fatalf("wait=%s answered before anything was published: %d %s %v", wait, got.status, got.raw, got.err)
			default:
			}
			return openLongPolls(t, a.URL()) == "1"
		})
		want := c.publish(host, "after-"+wait)[0]
		got := <-done
		cancel()
		if got.err != nil || got.status != http.StatusOK || len(got.page.Items) != 1 || got.page.Items[0].Cursor != want {
			t.Fatalf("wait=%s: %d %s %v, want the item published while it waited (cursor %d)", wait, got.status, got.raw, got.err, want)
		}
		eventually(t, 10*time.Second, "the long-poll was not unregistered", func() bool { return openLongPolls(t, a.URL()) == "0" })
	}
}

// TestHugeLifetimeIsTheMaximum: maxConnectionTimeSeconds past the int64 range of nanoseconds
// is the longest lifetime there is, capped at --max-group-lifetime; it once wrapped, to a
// negative lifetime (400) or, for 18446744074, to 0.29 s: a group that ended at once.
func TestHugeLifetimeIsTheMaximum(t *testing.T) {
	t.Parallel()
	_, c := newServer(t, func(cfg *config.Config) { cfg.MaxGroupLifetime = 6 * time.Hour })
	for _, secs := range []string{"9223372037", "18446744074", "9223372036854775807"} {
		var j struct {
			Group struct{ ExpiresAt time.Time }
		}
		asked := time.Now()
		st, raw := c.call("POST", "/api/v1/groups", "", `{"name":"long","maxConnectionTimeSeconds":`+secs+`}`, &j)
		if st != http.StatusCreated {
			t.Fatalf("maxConnectionTimeSeconds %s: %d %s", secs, st, raw)
		}
		if j.Group.ExpiresAt.Before(asked.Add(5 * time.Hour)) {
			t.Fatalf("maxConnectionTimeSeconds %s: the group expires at %v, want about 6 h from now", secs, j.Group.ExpiresAt)
		}
	}
}
