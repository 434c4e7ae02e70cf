package jetstream

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"meshbox/jetstream/natstest"
	"meshbox/stream"
)

func openTest(t *testing.T) *Log {
	t.Helper()
	return openTestOn(t, natstest.Run(t), 1)
}

func openTestOn(t *testing.T, c *natstest.Cluster, replicas int) *Log {
	t.Helper()
	l, err := Open(context.Background(), c.Connect(), Options{Replicas: replicas})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

func batchOf(l *Log, n int) []*nats.Msg {
	var msgs []*nats.Msg
	for range n {
		m := nats.NewMsg(l.subj.items("g"))
		m.Data = []byte(`,"kind":"event","at":"2026-11-30T08:00:00.000Z"}`)
		msgs = append(msgs, m)
	}
	return msgs
}

func streamMsgs(t *testing.T, l *Log) uint64 {
	t.Helper()
	info, err := l.st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// A retried batch whose first attempt was stored (its ack lost) is not stored again, and the
// retry learns where the first attempt went.
func TestRetryIsIdempotent(t *testing.T) {
	t.Parallel()
	l := openTest(t)
	for _, n := range []int{1, 5} {
		first, err := l.publish(context.Background(), batchOf(l, n), "same"+string(rune('0'+n)))
		if err != nil {
			t.Fatal(err)
		}
		before := streamMsgs(t, l)
		again, err := l.publish(context.Background(), batchOf(l, n), "same"+string(rune('0'+n)))
		if err != nil {
			t.Fatalf("retry of %d: %v", n, err)
		}
		if again != first || streamMsgs(t, l) != before {
			t.Fatalf("retry of %d messages: stored at %d (first at %d), stream %d messages (was %d)", n, again, first, streamMsgs(t, l), before)
		}
	}
}

// A batch one of whose messages the server refuses stores nothing of it.
func TestBatchIsAtomic(t *testing.T) {
	t.Parallel()
	l := openTest(t)
	msgs := batchOf(l, 5)
	msgs[3].Header.Set("Nats-Expected-Last-Subject-Sequence", "999")
	msgs[3].Subject = l.subj.items("other")
	before := streamMsgs(t, l) // the layout mark
	if _, err := l.publish(context.Background(), msgs, "atomic"); err == nil {
		t.Fatal("a batch with a failed expectation was stored")
	}
	if n := streamMsgs(t, l); n != before {
		t.Fatalf("stream holds %d messages of a refused batch", n-before)
	}
}

// A conditional batch whose first attempt was stored but whose answer was lost is not a
// conflict on the retry, although its own messages moved the sequences the retry expects:
// the retry learns where the first attempt went and the stream is unchanged. A batch whose
// expectation another writer broke stays a conflict. One server checks a single message's
// expectation before its id, a cluster the id first; an atomic batch checks the id first on
// both: every order is covered.
func TestRetryOfConditionalBatchAfterLostAnswer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		cluster  func(t *testing.T) *natstest.Cluster
		replicas int
	}{
		{"one server", func(t *testing.T) *natstest.Cluster { return natstest.Run(t) }, 1},
		{"cluster", func(t *testing.T) *natstest.Cluster { return natstest.RunCluster(t, 3) }, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			l := openTestOn(t, tc.cluster(t), tc.replicas)
			ctx := context.Background()
			at := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
			// conditional builds the messages of a batch that creates group gid in domain d
			// (with items), conditional on the group and the domain as Append does: each
			// attempt is built afresh, with the same expectations.
			conditional := func(gid string, items int) []*nats.Msg {
				t.Helper()
				m, err := l.changeMsg(stream.Change{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: gid, Domain: "d-" + gid, CreatedAt: at}})
				if err != nil {
					t.Fatal(err)
				}
				msgs := []*nats.Msg{m}
				b := &stream.Batch{Groups: []string{gid}}
				if items > 0 {
					b.Domains = []string{"d-" + gid}
					for range items {
						it := nats.NewMsg(l.subj.items(gid))
						it.Data = []byte(`,"kind":"event","at":"2026-11-30T08:00:00.000Z"}`)
						msgs = append(msgs, it)
					}
				}
				if msgs, err = l.guard(b, msgs, items); err != nil {
					t.Fatal(err)
				}
				return msgs
			}
			for _, n := range []int{0, 3} { // a single message; an atomic batch of 2+n
				gid := "lost" + string(rune('0'+n))
				first, err := l.publish(ctx, conditional(gid, n), gid)
				if err != nil {
					t.Fatal(err)
				}
				before := streamMsgs(t, l)
				again, err := l.publishAgain(ctx, conditional(gid, n), gid, true)
				if err != nil {
					t.Fatalf("retry of a stored batch of %d messages: %v", len(conditional(gid, n)), err)
				}
				if again != first || streamMsgs(t, l) != before {
					t.Fatalf("retry of a stored batch: stored at %d (first at %d), stream %d messages (was %d)", again, first, streamMsgs(t, l), before)
				}
			}
			for _, n := range []int{0, 3} {
				gid := "moved" + string(rune('0'+n))
				msgs := conditional(gid, n) // built before another writer moves the group
				other := nats.NewMsg(l.subj.group(gid))
				other.Data = []byte(`{"id":"` + gid + `"}`)
				if _, err := l.publish(ctx, []*nats.Msg{other}, "other-"+gid); err != nil {
					t.Fatal(err)
				}
				before := streamMsgs(t, l)
				if _, err := l.publishAgain(ctx, msgs, gid, true); !errors.Is(err, stream.ErrConflict) {
					t.Fatalf("retry of a batch another writer overtook: %v, want a conflict", err)
				}
				if streamMsgs(t, l) != before {
					t.Fatalf("a conflicting batch was stored: %d messages, was %d", streamMsgs(t, l), before)
				}
			}
		})
	}
}
