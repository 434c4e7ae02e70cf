package hub

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"meshbox/rules"
	"meshbox/rules/rulestest"
	"meshbox/stream"
)

// BenchmarkTailRead is a live reader's read: a few new items from the group's in-memory tail,
// the call every WebSocket, SSE and long-poll delivery makes.
func BenchmarkTailRead(b *testing.B) {
	st := rulestest.Open(b, "", rules.Options{})
	h := New(st, Options{})
	st.Start(rules.Hooks{OnCommit: h.Publish, Active: h.Active, OnPurge: h.Purged})
	ctx := context.Background()
	j, err := st.CreateGroup(ctx, rules.NewGroup{Domain: "test", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	sub := h.Subscribe(j.Group.ID, j.Node.ID, "ws")
	defer sub.Close()
	evs := make([]rules.EventIn, 100)
	for i := range evs {
		evs[i] = rules.EventIn{Name: "go"}
	}
	var last int64
	for range 10 {
		cs, err := st.Publish(ctx, j.Group.ID, j.Node.ID, evs)
		if err != nil {
			b.Fatal(err)
		}
		last = cs[len(cs)-1]
	}
	b.ReportAllocs()
	for b.Loop() {
		bt, err := sub.Read(ctx, last-3, 256)
		if err != nil || len(bt.Items) != 3 {
			b.Fatalf("read: %d items, %v", len(bt.Items), err)
		}
	}
}

// BenchmarkSubscribeClose is what every long-poll request costs the hub around its wait:
// opening and closing a reader, from many nodes of one group at once (each goroutine its own
// node, as a class polling).
func BenchmarkSubscribeClose(b *testing.B) {
	st := rulestest.Open(b, "", rules.Options{})
	h := New(st, Options{})
	st.Start(rules.Hooks{OnCommit: h.Publish, Active: h.Active, OnPurge: h.Purged})
	var next atomic.Int64
	b.SetParallelism(8)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		nid := "n" + strconv.FormatInt(next.Add(1), 10)
		for pb.Next() {
			h.Subscribe("g1", nid, "longpoll").Close()
		}
	})
}

// BenchmarkFanOutRead is one publish's batch read by every reader of a group, the way the
// server's flush workers read it (one read per reader, on as many goroutines as CPUs): 1,000
// readers, each its own node, read the same new items from the tail. An op is one reader's
// read. The sub-benchmarks differ in where a leave item lies: none in the tail; one in the
// tail before the batch; one inside the batch (another node's: every reader reads past it).
func BenchmarkFanOutRead(b *testing.B) {
	for _, where := range []string{"no-leave", "leave-in-tail", "leave-in-batch"} {
		b.Run(where, func(b *testing.B) {
			st := rulestest.Open(b, "", rules.Options{})
			h := New(st, Options{})
			st.Start(rules.Hooks{OnCommit: h.Publish, Active: h.Active, OnPurge: h.Purged})
			ctx := context.Background()
			host, err := st.CreateGroup(ctx, rules.NewGroup{Domain: "test", Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			gid := host.Group.ID
			m, err := st.Join(ctx, gid, rules.NewNode{Name: "member"})
			if err != nil {
				b.Fatal(err)
			}
			const readers = 1000
			subs := make([]*Sub, readers)
			for i := range subs {
				subs[i] = h.Subscribe(gid, "r"+strconv.Itoa(i), "ws")
				defer subs[i].Close()
			}
			publish := func(n int) int64 {
				evs := make([]rules.EventIn, n)
				for i := range evs {
					evs[i] = rules.EventIn{Name: "go"}
				}
				cs, err := st.Publish(ctx, gid, host.Node.ID, evs)
				if err != nil {
					b.Fatal(err)
				}
				return cs[len(cs)-1]
			}
			leave := func() {
				if err := st.Leave(ctx, gid, m.Node.ID, stream.ReasonRemoved); err != nil {
					b.Fatal(err)
				}
			}
			for range 5 {
				publish(100)
			}
			if where == "leave-in-tail" {
				leave()
			}
			since := publish(100)
			want := 10
			if where == "leave-in-batch" {
				publish(5)
				leave()
				publish(5)
				want = 11
			} else {
				publish(10)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1))
				for pb.Next() {
					bt, err := subs[i%readers].Read(ctx, since, 1000)
					if err != nil || len(bt.Items) != want || bt.Gone != "" {
						b.Fatalf("read: %d items, gone %q, %v", len(bt.Items), bt.Gone, err)
					}
					i++
				}
			})
		})
	}
}

// BenchmarkFanOutWake is the writer's side of a fan-out: one committed item handed to a group
// with 1,000 readers waiting for a call (as WebSocket and SSE pumps do), until every call ran.
// An op is one publish to all of them.
func BenchmarkFanOutWake(b *testing.B) {
	st := rulestest.Open(b, "", rules.Options{})
	h := New(st, Options{})
	const readers = 1000
	var pending sync.WaitGroup
	for i := range readers {
		sub := h.Subscribe("g1", "r"+strconv.Itoa(i), "ws")
		defer sub.Close()
		sub.Notify(pending.Done)
	}
	cursor := st.LastCursor()
	item := stream.Item{Kind: stream.KindEvent, Group: "g1", Node: "n", Name: "go", JSON: []byte(`{}`)}
	b.ReportAllocs()
	for b.Loop() {
		cursor++
		item.Cursor = cursor
		pending.Add(readers)
		h.Publish([]stream.Item{item})
		pending.Wait()
	}
}
