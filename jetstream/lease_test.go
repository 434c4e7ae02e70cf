package jetstream_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
)

// Lease TTLs: long enough that a lease never lapses between two steps of a test, and the
// shortest the server keeps, for a lease a test lets lapse.
const (
	longLease  = 10 * time.Second
	shortLease = time.Second
)

func openLeaser(t *testing.T, c *natstest.Cluster, name string, now func() time.Time) *jetstream.Log {
	t.Helper()
	l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Stream: name, Subjects: name, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func lease(t *testing.T, l *jetstream.Log, ttl time.Duration, want bool, who string) {
	t.Helper()
	held, err := l.Lease(context.Background(), "purge", ttl)
	if err != nil || held != want {
		t.Fatalf("%s: held %v (%v), want %v", who, held, err, want)
	}
}

// leaseOnceLapsed asks for the lease until l holds it: once the server removed the lease
// another instance let lapse.
func leaseOnceLapsed(t *testing.T, l *jetstream.Log, who string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		held, err := l.Lease(context.Background(), "purge", longLease)
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if held {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the lease never lapsed", who)
		}
		<-tick.C
	}
}

// One instance holds a lease at a time; it renews it, and another takes it once it lapsed.
func TestLeaseHasOneHolder(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	name := uniqueName()
	a, b := openLeaser(t, c, name, nil), openLeaser(t, c, name, nil)
	// Racing for a free lease: exactly one wins.
	var wins sync.WaitGroup
	got := make(chan bool, 2)
	for _, l := range []*jetstream.Log{a, b} {
		wins.Add(1)
		go func() {
			defer wins.Done()
			held, err := l.Lease(context.Background(), "purge", longLease)
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
	if held, _ := a.Lease(context.Background(), "purge", longLease); !held {
		holder, other = b, a
	}
	lease(t, holder, longLease, true, "holder renewing")
	lease(t, other, longLease, false, "the other while it is held")
	lease(t, holder, shortLease, true, "holder renewing a last time") // then it stops
	leaseOnceLapsed(t, other, "the other once it lapsed")
	lease(t, holder, longLease, false, "the old holder")
}

// Instances whose clocks disagree by far more than the lease's TTL never both hold it, and
// neither waits for its own clock to pass a time the other wrote: the server judges when a
// lease lapsed.
func TestLeaseIgnoresInstanceClocks(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	name := uniqueName()
	behind := openLeaser(t, c, name, func() time.Time { return time.Now().Add(-time.Hour) })
	ahead := openLeaser(t, c, name, func() time.Time { return time.Now().Add(time.Hour) })

	lease(t, behind, longLease, true, "the instance whose clock is behind, taking it")
	lease(t, ahead, longLease, false, "the instance whose clock is ahead, while it is held")
	lease(t, behind, longLease, true, "the holder renewing")
	lease(t, ahead, longLease, false, "the instance ahead, while it is renewed")
	lease(t, behind, shortLease, true, "the holder renewing a last time")
	leaseOnceLapsed(t, ahead, "the instance ahead, once it lapsed")
	lease(t, behind, longLease, false, "the instance behind, while the one ahead holds it")
	lease(t, ahead, shortLease, true, "the instance ahead renewing a last time")
	leaseOnceLapsed(t, behind, "the instance behind, once it lapsed")
	lease(t, ahead, longLease, false, "the instance ahead, while the one behind holds it")
}

// A stream created before leases had a TTL is updated to allow them, and a lease an older
// meshbox wrote there (no TTL, its end as a time) is honoured until that time.
func TestLeaseOnStreamFromBeforeTTLs(t *testing.T) {
	t.Parallel()
	c := natstest.Run(t)
	name := uniqueName()
	nc := c.Connect()
	j, err := js.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := j.CreateStream(ctx, js.StreamConfig{
		Name: name, Subjects: []string{name + ".>"}, Storage: js.FileStorage,
		Duplicates: 2 * time.Minute, AllowDirect: true, AllowRollup: true, AllowAtomicPublish: true,
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 30, 8, 0, 0, 0, time.UTC)
	old := nats.NewMsg(name + ".l.purge")
	old.Header.Set("Nats-Rollup", "sub")
	old.Data = []byte("olderInstance " + strconv.FormatInt(now.Add(time.Minute).UnixMilli(), 10))
	if _, err := j.PublishMsg(ctx, old); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	l := openLeaser(t, c, name, clock)
	lease(t, l, longLease, false, "while the older instance's lease runs")
	mu.Lock()
	now = now.Add(2 * time.Minute)
	mu.Unlock()
	lease(t, l, longLease, true, "once the older instance's lease ended")
	st, err := j.Stream(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !st.CachedInfo().Config.AllowMsgTTL {
		t.Fatal("the stream was not updated to allow message TTLs")
	}
	m, err := st.GetLastMsgForSubject(ctx, name+".l.purge")
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Nats-TTL") == "" {
		t.Fatalf("the lease taken over has no TTL: %v", m.Header)
	}
}
