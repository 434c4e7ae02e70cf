package server_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/config"
)

// teacherToken is the admin token of the revocation tests (long enough for any start check).
const teacherToken = "teacher-token-for-revocation-tests"

// TestRemovedNodeStreamsEnd (issue 22 row 10): a pupil reading its group from its own laptop
// (127.0.0.2) over each transport is removed by the teacher, or leaves from another tab. Its
// open stream delivers the items up to and including its own leave item, then ends with the
// reason (WebSocket: close 4003 with the reason; SSE: a gone event, then the end; long-poll:
// the waiting poll answers with the page ending at the leave and says gone, the next poll is
// refused 401), and nothing committed after the leave reaches it. A classmate's stream
// (127.0.0.3) in the same group goes on receiving.
func TestRemovedNodeStreamsEnd(t *testing.T) {
	a, c := newServer(t, func(cfg *config.Config) { unlimited(cfg); cfg.AdminToken = teacherToken })
	for _, tr := range allTransports {
		for _, how := range []string{"removed", "left"} {
			t.Run(tr+"/"+how, func(t *testing.T) {
				host := c.create("revoke")
				gid := host.Group.ID
				pupil := c.join(gid, "pupil")
				mate := c.join(gid, "mate")
				start := cur(a.Store.LastCursor())
				ps := openStream(t, a.URL(), tr, pupil, readerOpts{since: start, from: "127.0.0.2"})
				defer ps.close()
				ms := openStream(t, a.URL(), tr, mate, readerOpts{since: start, from: "127.0.0.3"})
				defer ms.close()

				c.publish(host, "before")
				for _, s := range []*stream{ps, ms} {
					if it := s.mustNext(t, 5*time.Second); it.Name != "before" {
						t.Fatalf("got %+v, want the event before the removal", it)
					}
				}

				if tr == trLP {
					// Remove the pupil while its next poll waits (a poll that arrives after
					// the removal is refused 401 instead, which the end of the test checks).
					eventually(t, 10*time.Second, "both polls waiting", func() bool { return a.Metrics.Totals().Connections["longpoll"] >= 2 })
				}
				token := teacherToken
				if how == "left" {
					token = pupil.Token // the pupil's other tab
				}
				if st, raw := c.call("DELETE", "/api/v1/groups/"+gid+"/nodes/"+pupil.Node.ID, token, nil, nil); st != http.StatusNoContent {
					t.Fatalf("remove: %d %s", st, raw)
				}
				c.publish(host, "after")

				// The pupil's stream: its own leave item, the reason, the end.
				it, err := ps.next(5 * time.Second)
				if err != nil || it.Kind != "leave" || it.Node != pupil.Node.ID || it.Reason != how {
					t.Fatalf("pupil got %+v %v, want its own leave (%s)", it, err, how)
				}
				it, err = ps.next(5 * time.Second)
				switch tr {
				case trWS:
					var ce websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != 4003 || ce.Reason != how {
						t.Fatalf("pupil's WebSocket after its leave: %+v %v, want close 4003 %q", it, err, how)
					}
				case trSSE, trLP:
					if err != nil || it.Kind != kindGone || it.Reason != how {
						t.Fatalf("pupil's %s after its leave: %+v %v, want gone %q", tr, it, err, how)
					}
					want := errEnded
					if tr == trLP {
						want = errUnauthorized // its next poll
					}
					if it, err = ps.next(5 * time.Second); !errors.Is(err, want) {
						t.Fatalf("pupil's %s after gone: %+v %v, want %v", tr, it, err, want)
					}
				}
				// Nothing more: the stream is over (its channel closed), "after" never came.
				if it, err := ps.next(5 * time.Second); !errors.Is(err, errEnded) {
					t.Fatalf("pupil's %s went on: %+v %v", tr, it, err)
				}

				// The classmate reads on: the pupil's leave, then the event after it.
				if it := ms.mustNext(t, 5*time.Second); it.Kind != "leave" || it.Node != pupil.Node.ID {
					t.Fatalf("classmate got %+v, want the pupil's leave", it)
				}
				if it := ms.mustNext(t, 5*time.Second); it.Name != "after" {
					t.Fatalf("classmate got %+v, want the event after the removal", it)
				}
				// The pupil's token opens no new stream either.
				if st, _, raw, err := pollOnceWith(t.Context(), httpFrom("127.0.0.2"), a.URL(), pupil, start, "0"); err != nil || st != http.StatusUnauthorized {
					t.Fatalf("removed pupil's poll: %d %s %v, want 401", st, raw, err)
				}
			})
		}
	}
}
