package app_test

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"meshbox/config"
)

// clientFrom is an HTTP client whose connections come from ip (Linux routes all of 127/8 to
// lo): the flooder and its classmate are different machines of one classroom.
func clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}}}
}

// TestFloodCostsTheFloodersGroup: one node (from 127.0.0.2) publishes large events as fast as
// its limits let it, several times the size budget in all, next to a classmate in another
// group (from 127.0.0.3) publishing small events. Under pressure the purge takes from the group
// holding the most: every classmate publish is acknowledged, and every classmate item (all
// within their TTL) is still readable, with no truncation; the flooder's oldest items went.
func TestFloodCostsTheFloodersGroup(t *testing.T) {
	b := startDiskBox(t, t.TempDir(), func(c *config.Config) {
		c.MaxDBSize = 4 << 20
		c.NodeByteRate = 1 << 20 // a burst of 16 MiB: the flood is bounded by the budget, not the rate
		c.PublishRate = 100      // the default: the flooder publishes at its limits
	})
	flooder, classmate := b.create("flood"), b.create("classmate")
	flooder.client, classmate.client = clientFrom("127.0.0.2"), clientFrom("127.0.0.3")
	acked := map[string][]int64{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(done)
		body := events(8, 8<<10)
		for range 200 { // 200 × 64 KiB: 12.5 MiB, three times the budget
			status, code, _ := b.publish(flooder, body)
			if status != http.StatusOK && status != http.StatusTooManyRequests && status != http.StatusInsufficientStorage {
				t.Errorf("flooder's publish: %d %s", status, code)
				return
			}
		}
	}()
	refused := 0
	small := events(1, 100)
	publishClassmate := func() {
		status, code, cursors := b.publish(classmate, small)
		if status != http.StatusOK {
			refused++
			t.Errorf("classmate's publish during the flood: %d %s", status, code)
			return
		}
		acked[classmate.group] = append(acked[classmate.group], cursors...)
	}
	for flooding := true; flooding; {
		select {
		case <-done:
			flooding = false
		default:
		}
		publishClassmate()
		// A lesson's pace (well inside the publish rate), not a synchronisation.
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	publishClassmate()
	t.Logf("classmate: %d publishes acknowledged, %d refused", len(acked[classmate.group]), refused)
	// Every classmate item is readable from the start: nothing of its group was purged.
	b.checkKept([]member{classmate}, acked)
	if _, truncated := b.readFrom(classmate, 0); truncated {
		t.Errorf("the classmate's reader from the start was told items were purged")
	}
	if _, truncated := b.readFrom(flooder, 0); !truncated {
		t.Errorf("three budgets of flood and none of the flooder's items purged")
	}
}
