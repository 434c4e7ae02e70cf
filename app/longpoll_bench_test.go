//go:build unix

package app_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
	"meshbox/rules"
)

// benchPollers is how many long-poll readers wait on the one group: as many as a group may
// hold nodes, less the publisher.
const benchPollers = 200

// BenchmarkLongPoll is one long-poll cycle end to end in-process: a request arrives, waits for
// the group's next item, is answered, and the reader's next request follows. benchPollers
// readers (each its own node) wait on one group; a publisher appends one event at a time and
// waits until every reader has been answered before the next, so every answer carries one
// item and every reader waits between two (the shape of 50 items/s to a class). One op is one
// answer.
//
//   - http: over real HTTP keep-alive connections to a real meshbox on loopback; the figures
//     include the client's side of each request and net/http's on both sides.
//   - handler: the same requests handed to the server's handler directly (middleware, routing,
//     authentication, the hub, the answer), without sockets or net/http's connection work:
//     what meshbox's own code costs per cycle.
func BenchmarkLongPoll(b *testing.B) {
	b.Run("http", func(b *testing.B) {
		benchLongPoll(b, func(a *app.App) pollFunc {
			hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: benchPollers + 8}}
			b.Cleanup(hc.CloseIdleConnections)
			return func(req *http.Request) (int, []byte, error) {
				resp, err := hc.Do(req)
				if err != nil {
					return 0, nil, err
				}
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				return resp.StatusCode, body, err
			}
		})
	})
	b.Run("handler", func(b *testing.B) {
		benchLongPoll(b, func(a *app.App) pollFunc {
			h := a.Server.Handler()
			return func(req *http.Request) (int, []byte, error) {
				req.RemoteAddr = "127.0.0.1:40000"
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				return rec.Code, rec.Body.Bytes(), nil
			}
		})
	})
}

// pollFunc sends one long-poll request and returns the answer.
type pollFunc func(*http.Request) (status int, body []byte, err error)

func benchLongPoll(b *testing.B, client func(*app.App) pollFunc) {
	a := app.StartTest(b, func(c *config.Config) {
		c.PublishRate, c.NodeRate, c.GroupRate, c.IPRate, c.NodeByteRate = 0, 0, 0, 0, 0
	})
	ctx := context.Background()
	j, err := a.Store.CreateGroup(ctx, rules.NewGroup{Domain: "bench", Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	gid, host := j.Group.ID, j.Node.ID
	tokens := make([]string, benchPollers)
	for i := range tokens {
		m, err := a.Store.Join(ctx, gid, rules.NewNode{Name: "r" + strconv.Itoa(i)})
		if err != nil {
			b.Fatal(err)
		}
		tokens[i] = m.Token
	}
	poll := client(a)
	base := a.URL() + "/api/v1/groups/" + gid + "/events?wait=30&since="
	payload := "0123456789012345678901234567890123456789012345678901234567890123"
	events := []rules.EventIn{{Name: "go", Payload: &payload}}

	pctx, stop := context.WithCancel(ctx)
	answered := make(chan struct{}, benchPollers)
	var wg sync.WaitGroup
	start := a.Store.LastCursor()
	for _, tok := range tokens {
		wg.Go(func() {
			since := start
			for pctx.Err() == nil {
				req, _ := http.NewRequestWithContext(pctx, http.MethodGet, base+strconv.FormatInt(since, 10), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				status, body, err := poll(req)
				if pctx.Err() != nil {
					return
				}
				if err != nil || status != http.StatusOK {
					b.Errorf("poll: %d %s %v", status, body, err)
					return
				}
				next, ok := nextOf(body)
				if !ok {
					b.Errorf("poll: no next in %s", body)
					return
				}
				if next > since {
					since = next
					answered <- struct{}{}
				}
			}
		})
	}
	defer func() { stop(); wg.Wait() }()

	rounds := (b.N + benchPollers - 1) / benchPollers
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for range rounds {
		if _, err := a.Store.Publish(ctx, gid, host, events); err != nil {
			b.Fatal(err)
		}
		for range benchPollers {
			<-answered
		}
	}
	b.StopTimer()
	answers := float64(rounds * benchPollers)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/answers, "ns/answer")
	// The process's CPU time (server and clients) per answer: on a shared machine it varies
	// less than the wall time, which waits whenever another process has the cores.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Nanoseconds())/answers, "cpu-ns/answer")
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// nextOf finds the "next" cursor of a long-poll answer without decoding the items.
func nextOf(body []byte) (int64, bool) {
	i := bytes.LastIndex(body, []byte(`"next":`))
	if i < 0 {
		return 0, false
	}
	rest := body[i+len(`"next":`):]
	end := bytes.IndexByte(rest, ',')
	if end < 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:end]), 10, 64)
	return n, err == nil
}
