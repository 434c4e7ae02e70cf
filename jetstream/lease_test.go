package jetstream_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
)

// One instance holds a lease at a time; it renews it, and another takes it once it lapsed.
func TestLeaseHasOneHolder(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	var mu sync.Mutex
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	name := uniqueName()
	open := func() *jetstream.Log {
		l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Stream: name, Subjects: name, Now: clock})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	a, b := open(), open()
	ctx := context.Background()
	lease := func(l *jetstream.Log, want bool, who string) {
		t.Helper()
		held, err := l.Lease(ctx, "purge", 10*time.Second)
		if err != nil || held != want {
			t.Fatalf("%s: held %v (%v), want %v", who, held, err, want)
		}
	}
	// Racing for a free lease: exactly one wins.
	var wins sync.WaitGroup
	got := make(chan bool, 2)
	for _, l := range []*jetstream.Log{a, b} {
		wins.Add(1)
		go func() {
			defer wins.Done()
			held, err := l.Lease(ctx, "purge", 10*time.Second)
			if err != nil {
				t.Error(err)
			}
			got <- held
		}()
	}
	wins.Wait()
	close(got)
	n := 0
	for held := range got {
		if held {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d instances hold the lease, want 1", n)
	}
	holder, other := a, b
	if held, _ := a.Lease(ctx, "purge", 10*time.Second); !held {
		holder, other = b, a
	}
	lease(holder, true, "holder renewing")
	lease(other, false, "the other while it is held")
	mu.Lock()
	now = now.Add(11 * time.Second) // the holder stopped renewing
	mu.Unlock()
	lease(other, true, "the other once it lapsed")
	lease(holder, false, "the old holder")
}
