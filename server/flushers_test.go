package server

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// TestFlushersStopWithTheServer: the flush workers live until the server's context ends, and
// then leave (none is left behind by a stopped server).
func TestFlushersStopWithTheServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base := runtime.NumGoroutine()
	f := &flushers{}
	f.start(ctx, 4)
	waitFor(t, "four workers waiting", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.asleep == 4
	})
	cancel()
	waitFor(t, "the workers to leave", func() bool { return runtime.NumGoroutine() <= base })
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
