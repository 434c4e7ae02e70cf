package db

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// BenchmarkIngest compares group-commit ingest through the writer with bare batched insert
// loops on the same kind of database, in one run: one prepared single-row insert per item, and
// 64-row inserts (what the writer itself does). Each sub-benchmark reports items/s; the target
// is ≥ 100,000 items/s and at least half of the bare loop.
func BenchmarkIngest(b *testing.B) {
	payload := "{\"x\":1,\"y\":2,\"costume\":\"cat-a\"}"
	b.Run("bare-insert-loop", func(b *testing.B) {
		s := benchStore(b)
		ctx := context.Background()
		const batch = 1000
		b.ResetTimer()
		start := time.Now()
		cursor := s.lastCursor
		for i := 0; i < b.N; i += batch {
			if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				b.Fatal(err)
			}
			for j := 0; j < batch && i+j < b.N; j++ {
				cursor++
				body := encodeItem(Item{Cursor: cursor, Kind: KindEvent, Node: "n1", Name: "move", Payload: &payload, At: time.Now()})
				if _, err := s.stmts.insertItems[len(insertSizes)-1].ExecContext(ctx, cursor, "g1", time.Now().UnixMilli(), body); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := s.wconn.ExecContext(ctx, "COMMIT"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
	})
	b.Run("bare-insert-loop-64-rows-per-statement", func(b *testing.B) {
		s := benchStore(b)
		ctx := context.Background()
		const batch, rows = 1024, 64
		args := make([]any, 0, 4*rows)
		b.ResetTimer()
		start := time.Now()
		cursor := s.lastCursor
		for i := 0; i < b.N; i += batch {
			if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
				b.Fatal(err)
			}
			for j := 0; j < batch; j += rows {
				args = args[:0]
				for k := 0; k < rows; k++ {
					cursor++
					body := encodeItem(Item{Cursor: cursor, Kind: KindEvent, Node: "n1", Name: "move", Payload: &payload, At: time.Now()})
					args = append(args, cursor, "g1", time.Now().UnixMilli(), body)
				}
				if _, err := s.stmts.insertItems[0].ExecContext(ctx, args...); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := s.wconn.ExecContext(ctx, "COMMIT"); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(cursor-s.lastCursor)/time.Since(start).Seconds(), "items/s")
	})
	for _, perOp := range []int{1, 10} {
		b.Run(fmt.Sprintf("group-commit/64-writers/%d-events-per-publish", perOp), func(b *testing.B) {
			s := benchStore(b)
			s.Start(Hooks{})
			ctx := context.Background()
			j, err := s.CreateGroup(ctx, NewGroup{Domain: "d", Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			events := make([]EventIn, perOp)
			for i := range events {
				events[i] = EventIn{Name: "move", Payload: &payload}
			}
			const writers = 64
			ops := b.N/perOp + 1
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < ops; i += writers {
						if _, err := s.Publish(ctx, j.Group.ID, j.Node.ID, events); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(ops*perOp)/time.Since(start).Seconds(), "items/s")
		})
	}
}

func benchStore(b *testing.B) *Store {
	b.Helper()
	s, err := Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkOpenMillionItems measures start-up: opening (and loading the state of) a database
// that holds a million retained items. Target: ≤ 300 ms.
func BenchmarkOpenMillionItems(b *testing.B) {
	path := filepath.Join(b.TempDir(), "big.db")
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	payload := "{\"x\":1}"
	var cursor int64
	for batch := 0; batch < 1000; batch++ {
		if _, err := s.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			b.Fatal(err)
		}
		for j := 0; j < 1000; j++ {
			cursor++
			body := encodeItem(Item{Cursor: cursor, Kind: KindEvent, Node: "n1", Name: "move", Payload: &payload, At: time.Now()})
			if _, err := s.stmts.insertItems[len(insertSizes)-1].ExecContext(ctx, cursor, fmt.Sprintf("g%d", j%40), time.Now().UnixMilli(), body); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := s.wconn.ExecContext(ctx, "COMMIT"); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		s, err := Open(ctx, path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if s.LastCursor() != cursor {
			b.Fatalf("last cursor %d, want %d", s.LastCursor(), cursor)
		}
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/open")
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}
