package rules_test

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/rules"
)

func BenchmarkZZEngineJetStream(b *testing.B) {
	for _, reps := range []int{1, 3} {
		for _, writers := range []int{1, 32} {
			b.Run(fmt.Sprintf("R%d/writers=%d", reps, writers), func(b *testing.B) {
				var c *natstest.Cluster
				if reps == 1 {
					c = natstest.Run(b)
				} else {
					c = natstest.RunCluster(b, 3)
				}
				l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Replicas: reps})
				if err != nil {
					b.Fatal(err)
				}
				e, err := rules.New(context.Background(), l, rules.Options{})
				if err != nil {
					b.Fatal(err)
				}
				e.Start(rules.Hooks{})
				defer e.Close()
				ctx := context.Background()
				j, err := e.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "bench"})
				if err != nil {
					b.Fatal(err)
				}
				p := "{\"x\":1}"
				ev := []rules.EventIn{{Name: "move", Payload: &p}}
				var mu sync.Mutex
				var lat []time.Duration
				b.ResetTimer()
				start := time.Now()
				var wg sync.WaitGroup
				for w := range writers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := w; i < b.N; i += writers {
							t0 := time.Now()
							if _, err := e.Publish(ctx, j.Group.ID, j.Node.ID, ev); err != nil {
								b.Error(err)
								return
							}
							d := time.Since(t0)
							mu.Lock()
							lat = append(lat, d)
							mu.Unlock()
						}
					}()
				}
				wg.Wait()
				el := time.Since(start)
				sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
				b.ReportMetric(float64(b.N)/el.Seconds(), "items/s")
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			})
		}
	}
}
