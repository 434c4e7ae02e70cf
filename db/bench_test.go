package db

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"meshbox/stream"
)

const benchPayload = `{"x":1,"y":2,"costume":"cat-a"}`

func benchLog(b *testing.B, path string) *Log {
	b.Helper()
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.db")
	}
	l, err := Open(context.Background(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	return l
}

func benchItems(n int, gid string) []stream.Item {
	payload := benchPayload
	items := make([]stream.Item, n)
	for i := range items {
		items[i] = stream.Item{Kind: stream.KindEvent, Group: gid, Node: "n1", Name: "move", Payload: &payload}
	}
	return items
}

// BenchmarkIngest compares appending through the log with bare insert loops on the same kind of
// database, in one run. The rules' writer commits whatever queued while the last batch was
// being written (group commit), so the append runs use batches of the sizes it sees under load.
// The bare loops do what an append does minus the log: encode each item, insert it with a
// prepared statement (one row, or 64 rows, per statement), commit per batch. Each reports
// items/s; the target is at least half the bare 64-row loop at the same batch size.
func BenchmarkIngest(b *testing.B) {
	ctx := context.Background()
	for _, batch := range []int{64, 1000} {
		b.Run(fmt.Sprintf("append/batch-%d", batch), func(b *testing.B) {
			l := benchLog(b, "")
			if err := l.Append(ctx, &stream.Batch{Now: time.Now(), Changes: []stream.Change{{Kind: stream.PutGroup, Group: stream.GroupRecord{ID: "g1"}}}}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			for done := 0; done < b.N; done += batch {
				if err := l.Append(ctx, &stream.Batch{Now: time.Now(), Items: benchItems(min(batch, b.N-done), "g1")}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
		})
	}
	for _, rows := range []int{1, 64} {
		b.Run(fmt.Sprintf("bare-insert/batch-1000/%d-rows-per-statement", rows), func(b *testing.B) {
			l := benchLog(b, "")
			b.ResetTimer()
			start := time.Now()
			bareInsert(b, l, b.N, 1000, rows, func(int) string { return "g1" })
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
		})
	}
}

// bareInsert inserts n encoded items, batch per transaction and rows (1 or 64) per prepared
// statement, straight on the writer connection.
func bareInsert(b *testing.B, l *Log, n, batch, rows int, group func(i int) string) {
	b.Helper()
	ctx := context.Background()
	stmt := l.stmts.insertItems[len(insertSizes)-1]
	if rows == insertSizes[0] {
		stmt = l.stmts.insertItems[0]
	} else if rows != 1 {
		b.Fatalf("no prepared insert of %d rows", rows)
	}
	payload := benchPayload
	args := make([]any, 0, 4*rows)
	cursor := l.next
	for done := 0; done < n; {
		if _, err := l.stmts.begin.ExecContext(ctx); err != nil {
			b.Fatal(err)
		}
		// Whole statements only: a batch may end a few items past n.
		for inBatch := 0; inBatch < batch && done < n; inBatch += rows {
			args = args[:0]
			for range rows {
				cursor++
				now := time.Now()
				body := stream.EncodeItem(stream.Item{Cursor: cursor, Kind: stream.KindEvent, Node: "n1", Name: "move", Payload: &payload, At: now})
				args = append(args, cursor, group(done), now.UnixMilli(), body)
				done++
			}
			if _, err := stmt.ExecContext(ctx, args...); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := l.stmts.commit.ExecContext(ctx); err != nil {
			b.Fatal(err)
		}
	}
	l.next = cursor
}

// BenchmarkOpenMillionItems measures start-up: Open and Load of a database that holds a million
// retained items in 40 groups (ten of them ended, with their nodes). Target: ≤ 300 ms.
func BenchmarkOpenMillionItems(b *testing.B) {
	ctx := context.Background()
	path := filepath.Join(b.TempDir(), "big.db")
	l := benchLog(b, path)
	const groups, items = 40, 1_000_000
	now := time.Now()
	var changes []stream.Change
	for g := range groups {
		gr := stream.GroupRecord{ID: fmt.Sprintf("g%d", g), Domain: "d", Name: "class", Host: "n1", CreatedAt: now, ExpiresAt: now.Add(time.Hour), HostSeenAt: now}
		if g%4 == 0 {
			gr.EndedAt, gr.EndReason = now, stream.ReasonHost
		}
		changes = append(changes, stream.Change{Kind: stream.PutGroup, Group: gr})
		for n := range 5 {
			changes = append(changes, stream.Change{Kind: stream.PutNode, Node: stream.NodeRecord{Group: gr.ID, ID: fmt.Sprintf("n%d", n), Name: "node",
				TokenHash: []byte("0123456789abcdef0123456789abcdef"), JoinedAt: now, LastSeen: now, ExpiresAt: now.Add(time.Minute), Data: map[string]string{"k": "v"}}})
		}
	}
	if err := l.Append(ctx, &stream.Batch{Now: now, Changes: changes}); err != nil {
		b.Fatal(err)
	}
	bareInsert(b, l, items, 10_000, 64, func(i int) string { return fmt.Sprintf("g%d", i%groups) })
	want := l.next
	if err := l.Close(); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		l, err := Open(ctx, path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		st, err := l.Load(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.Watermark != want || len(st.Groups) != groups || len(st.Nodes) != 5*groups {
			b.Fatalf("loaded watermark %d, %d groups, %d nodes; want %d, %d, %d", st.Watermark, len(st.Groups), len(st.Nodes), want, groups, 5*groups)
		}
		total += time.Since(start)
		b.StopTimer()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/open")
}
