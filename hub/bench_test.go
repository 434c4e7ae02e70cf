package hub

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"meshbox/rules"
	"meshbox/rules/rulestest"
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
