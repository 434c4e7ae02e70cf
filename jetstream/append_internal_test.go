package jetstream

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"

	"meshbox/jetstream/natstest"
)

func openTest(t *testing.T) *Log {
	t.Helper()
	c := natstest.Run(t)
	l, err := Open(context.Background(), c.Connect(), Options{})
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
	if _, err := l.publish(context.Background(), msgs, "atomic"); err == nil {
		t.Fatal("a batch with a failed expectation was stored")
	}
	if n := streamMsgs(t, l); n != 0 {
		t.Fatalf("stream holds %d messages of a refused batch", n)
	}
}
