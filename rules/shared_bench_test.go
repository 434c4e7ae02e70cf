package rules_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"meshbox/db"
	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/rules"
	"meshbox/stream"
)

// BenchmarkPublishOverLogs is the write path below HTTP on each log: 32 closed-loop writers
// publishing one event per request through the rules, on the SQLite log and on the JetStream
// log (an in-process server, R1, and a 3-node in-process cluster, R3), spread over `groups`
// groups. It reports acknowledged items/s and the acknowledgement's p50 and p99: what one
// instance writes into each log, the figures to compare between them in one run.
//
//	go test -run '^$' -bench PublishOverLogs -benchtime 6000x ./rules/
func BenchmarkPublishOverLogs(b *testing.B) {
	logs := []struct {
		name string
		open func(b *testing.B) stream.Log
	}{
		{"sqlite", func(b *testing.B) stream.Log {
			l, err := db.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), db.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			return l
		}},
		{"jetstream-r1", func(b *testing.B) stream.Log {
			l, err := jetstream.Open(context.Background(), natstest.Run(b).Connect(), jetstream.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
		{"jetstream-r3", func(b *testing.B) stream.Log {
			l, err := jetstream.Open(context.Background(), natstest.RunCluster(b, 3).Connect(), jetstream.Options{Replicas: 3})
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
	}
	for _, lg := range logs {
		for _, groups := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/groups=%d", lg.name, groups), func(b *testing.B) {
				e, err := rules.New(context.Background(), lg.open(b), rules.Options{})
				if err != nil {
					b.Fatal(err)
				}
				e.Start(rules.Hooks{})
				b.Cleanup(func() { e.Close() })
				benchPublish(b, e, groups, 32, 1)
			})
		}
	}
}

// benchPublish has writers closed-loop writers publish perOp events per request to groups new
// groups of e, b.N events in all, and reports items/s and the acknowledgement's p50 and p99.
func benchPublish(b *testing.B, e *rules.Engine, groups, writers, perOp int) {
	ctx := context.Background()
	var joined []rules.Joined
	for i := range groups {
		j, err := e.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: fmt.Sprint("class", i)})
		if err != nil {
			b.Fatal(err)
		}
		joined = append(joined, j)
	}
	p := `{"x":1,"y":2,"costume":"cat-a"}`
	events := make([]rules.EventIn, perOp)
	for i := range events {
		events[i] = rules.EventIn{Name: "move", Payload: &p}
	}
	ops := b.N/perOp + 1
	lat := make([][]time.Duration, writers)
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := joined[w%groups]
			for i := w; i < ops; i += writers {
				t0 := time.Now()
				if _, err := e.Publish(ctx, j.Group.ID, j.Node.ID, events); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	b.ReportMetric(float64(len(all)*perOp)/elapsed.Seconds(), "items/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(0, "ns/op")
}
