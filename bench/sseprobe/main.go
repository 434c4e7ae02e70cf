// Command sseprobe is an outside SSE reader for checking `meshbox bench`: N readers follow
// one group's /stream with plain net/http, bufio.Scanner lines and encoding/json (none of
// the bench's own parser or client), while one publisher posts --rate events/s stamped with
// the send time; it prints the publish→receive latency of every delivery and any loss,
// duplicate or reordering. It speaks meshbox's native API, so it drives the no-storage
// floor (bench/floor) the same way.
//
//	go run ./bench/sseprobe --url http://127.0.0.1:8083 --readers 1000 --rate 50 --duration 10s
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080", "server base URL")
	readers := flag.Int("readers", 1000, "SSE readers")
	perNode := flag.Int("streams-per-node", 50, "streams per node token")
	rate := flag.Float64("rate", 50, "events published per second")
	duration := flag.Duration("duration", 10*time.Second, "how long to publish")
	open := flag.Bool("open-loop", false, "publish every event on schedule in its own goroutine, whether or not earlier acks came back (as meshbox bench does); default: the next publish waits for the previous ack")
	flag.Parse()
	if err := run(*url, *readers, *perNode, *rate, *duration, *open); err != nil {
		fmt.Fprintln(os.Stderr, "sseprobe:", err)
		os.Exit(1)
	}
}

type joined struct {
	Group  struct{ ID string } `json:"group"`
	Token  string              `json:"token"`
	Cursor int64               `json:"cursor"`
}

func post(c *http.Client, u, token string, body any, out any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, u, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %d %s", u, resp.StatusCode, rb)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

// follower is one reader's tally.
type follower struct {
	got, dup, disorder int64
	last               int64
	lat                []time.Duration
}

func run(base string, n, perNode int, rate float64, d time.Duration, open bool) error {
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: n + 16, DisableCompression: true}}
	var host joined
	if err := post(c, base+"/api/v1/groups", "", map[string]any{"name": "probe-" + strconv.FormatInt(time.Now().UnixNano(), 36), "nodeName": "host"}, &host); err != nil {
		return err
	}
	gid := host.Group.ID
	tokens := []string{host.Token}
	top := host.Cursor
	for len(tokens)*perNode < n {
		var j joined
		if err := post(c, base+"/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": fmt.Sprint("r", len(tokens))}, &j); err != nil {
			return err
		}
		tokens, top = append(tokens, j.Token), max(top, j.Cursor)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fs := make([]*follower, n)
	var wg sync.WaitGroup
	var connected atomic.Int64
	for i := range fs {
		f := &follower{last: top}
		fs[i] = f
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/api/v1/groups/%s/stream?since=%d", base, gid, top), nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tokens[i/perNode])
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("reader %d: %w", i, err)
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("reader %d: status %d", i, resp.StatusCode)
		}
		connected.Add(1)
		wg.Go(func() {
			defer resp.Body.Close()
			sc := bufio.NewScanner(resp.Body)
			var it struct {
				Cursor  int64  `json:"cursor"`
				Payload string `json:"payload"`
			}
			for sc.Scan() {
				line := sc.Bytes()
				data, ok := bytes.CutPrefix(line, []byte("data: "))
				if !ok {
					continue
				}
				now := time.Now()
				it.Payload = ""
				if json.Unmarshal(data, &it) != nil {
					continue
				}
				sent, ok := strings.CutPrefix(it.Payload, "probe:")
				if !ok {
					continue // a ping or a join
				}
				ns, _ := strconv.ParseInt(sent[:strings.IndexByte(sent, ':')], 10, 64)
				switch {
				case it.Cursor == f.last:
					f.dup++
				case it.Cursor < f.last:
					f.disorder++
				default:
					f.got++
					f.last = it.Cursor
					f.lat = append(f.lat, now.Sub(time.Unix(0, ns)))
				}
			}
		})
	}
	time.Sleep(time.Second) // readers settle (a probe, not a test: its figures are the point)
	pad := strings.Repeat("x", 32)
	var published atomic.Int64
	var pubs sync.WaitGroup
	var pubErr atomic.Value
	start := time.Now()
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		if due.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(due))
		pub := func() {
			ev := map[string]any{"events": []map[string]string{{"name": "probe", "payload": "probe:" + strconv.FormatInt(time.Now().UnixNano(), 10) + ":" + pad}}}
			if err := post(c, base+"/api/v1/groups/"+gid+"/events", host.Token, ev, nil); err != nil {
				pubErr.Store(err)
				return
			}
			published.Add(1)
		}
		if open {
			pubs.Go(pub)
		} else {
			pub()
		}
		if err, _ := pubErr.Load().(error); err != nil {
			return err
		}
	}
	pubs.Wait()
	time.Sleep(2 * time.Second) // drain
	cancel()
	wg.Wait()
	var all []time.Duration
	var got, dup, dis int64
	for _, f := range fs {
		all = append(all, f.lat...)
		got, dup, dis = got+f.got, dup+f.dup, dis+f.disorder
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000
	}
	fmt.Printf("readers %d published %d delivered %d of %d dup %d disorder %d p50 %.2f ms p90 %.2f ms p99 %.2f ms max %.2f ms\n",
		connected.Load(), published.Load(), got, published.Load()*int64(n), dup, dis, q(.5), q(.9), q(.99), q(1))
	req, _ := http.NewRequest(http.MethodDelete, base+"/api/v1/groups/"+gid, nil)
	req.Header.Set("Authorization", "Bearer "+host.Token)
	if resp, err := c.Do(req); err == nil {
		resp.Body.Close()
	}
	return nil
}
