package jetstream_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"meshbox/db"
	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/stream"
)

// BenchmarkAppend measures acknowledged appends of batches of n items (one group commit of n
// one-event publishes) on the JetStream log (in-process server, file store; R1, and R3 on a 3-node in-process cluster) and on the
// SQLite log, on this machine. items/s is what to compare.
//
//	go test -run '^$' -bench Append -benchtime 3s ./jetstream/
func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("jetstream/items=%d", n), func(b *testing.B) {
			c := natstest.Run(b)
			l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{})
			if err != nil {
				b.Fatal(err)
			}
			benchAppend(b, l, n)
		})
		b.Run(fmt.Sprintf("jetstream-r3/items=%d", n), func(b *testing.B) {
			c := natstest.RunCluster(b, 3)
			l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{Replicas: 3})
			if err != nil {
				b.Fatal(err)
			}
			benchAppend(b, l, n)
		})
		b.Run(fmt.Sprintf("sqlite/items=%d", n), func(b *testing.B) {
			l, err := db.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), db.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			benchAppend(b, l, n)
		})
	}
}

func benchAppend(b *testing.B, l stream.Log, n int) {
	if _, err := l.Load(context.Background()); err != nil {
		b.Fatal(err)
	}
	p := string(make([]byte, 64))
	b.ResetTimer()
	for b.Loop() {
		batch := &stream.Batch{Now: time.Now()}
		for i := range n {
			batch.Items = append(batch.Items, stream.Item{Kind: stream.KindEvent, Group: fmt.Sprint("g", i%8), Node: "n", Name: "e", Payload: &p})
		}
		if err := l.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "items/s")
}
