package bench

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// maxInflight bounds the paced publishes awaiting their ack. Paced
// publishes are sent on schedule without waiting for the previous ack, so a
// slow server shows up as latency instead of silently lowering the offered
// rate; the bound only keeps a stalled server from piling up goroutines.
const maxInflight = 256

// inflight runs functions concurrently, at most n at once.
type inflight struct {
	sem chan struct{}
	wg  sync.WaitGroup
}

// newInflight allows n concurrent calls.
func newInflight(n int) *inflight { return &inflight{sem: make(chan struct{}, n)} }

// Go runs fn in a goroutine, first waiting for a free slot.
func (f *inflight) Go(fn func()) {
	f.sem <- struct{}{}
	f.wg.Go(func() {
		defer func() { <-f.sem }()
		fn()
	})
}

// Wait waits for every call to return.
func (f *inflight) Wait() { f.wg.Wait() }

// publisher publishes stamped events and tallies acks.
type publisher struct {
	b      *bench
	acked  *atomic.Int64 // items acknowledged, the readers' expectation
	ack    *histogram
	errors *errorTally
}

// publish sends n stamped events as m and waits for the ack.
func (p *publisher) publish(ctx context.Context, m member, n int) error {
	sent := time.Now()
	ev := make([]event, n)
	payload := stamp(p.b.run, sent, p.b.cfg.payload)
	for i := range ev {
		ev[i] = event{Name: "bench", Payload: payload}
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cursors, err := p.b.c.publish(rctx, m, ev)
	if err != nil {
		if ctx.Err() == nil {
			p.errors.add(err)
		}
		return err
	}
	p.ack.Record(time.Since(sent))
	p.acked.Add(int64(len(cursors)))
	return nil
}

// setData sets a stamped data value as m and waits for the ack.
func (p *publisher) setData(ctx context.Context, m member) error {
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := p.b.c.putData(rctx, m, map[string]string{"bench": stamp(p.b.run, sent, 0)}); err != nil {
		if ctx.Err() == nil {
			p.errors.add(err)
		}
		return err
	}
	p.ack.Record(time.Since(sent))
	p.acked.Add(1)
	return nil
}

// fillPublish puts a publisher's tallies into res.
func (p *publisher) fillPublish(res *Result, elapsed time.Duration) {
	res.Published = p.acked.Load()
	res.Seconds = round3(elapsed.Seconds())
	res.PublishRate = math.Round(float64(res.Published) / elapsed.Seconds())
	res.PublishErrors = p.errors.snapshot()
	res.AckLatency = p.ack.Summary()
}

// fanout: -groups groups (default one) sharing -readers evenly, each
// with one publisher at -rate events/s, so every reader gets rate items/s
// whatever the number of groups.
func (b *bench) fanout(ctx context.Context) (*Result, error) {
	ngroups := b.cfg.groups
	if ngroups > b.cfg.readers {
		return nil, fmt.Errorf("fanout: %d groups for %d readers", ngroups, b.cfg.readers)
	}
	stats := &streamStats{}
	ack, errs := &histogram{}, &errorTally{}
	groups := make([]member, ngroups)
	pubs := make([]*publisher, ngroups)
	var readers []*reader
	for gi := range ngroups {
		g, err := b.newGroup(ctx, gi)
		if err != nil {
			return nil, err
		}
		n := b.cfg.readers/ngroups + btoi(gi < b.cfg.readers%ngroups)
		nodes, err := b.joinNodes(ctx, g, ceilDiv(n, b.cfg.perNode), fmt.Sprintf("g%d-reader", gi))
		if err != nil {
			return nil, err
		}
		acked := &atomic.Int64{}
		rs := b.newReaders(nodes, n, acked, stats)
		setReady(rs, nodes, []member{g})
		readers = append(readers, rs...)
		groups[gi] = g
		pubs[gi] = &publisher{b: b, acked: acked, ack: ack, errors: errs}
	}
	var base procSample // the server before the readers connected, for memory per connection
	if b.cfg.pid > 0 {
		base, _ = sampleProc(b.cfg.pid)
	}
	liveBefore, liveOK := b.c.liveMemory(ctx)
	stop, ready, err := b.startReaders(ctx, readers, b.cfg.transport)
	if err != nil {
		return nil, err
	}
	defer stop()
	sleep(ctx, b.cfg.warmup)
	liveAfter, liveOK2 := b.c.liveMemory(ctx)

	srv := b.startSampling(ctx)
	start := time.Now()
	fl := newInflight(maxInflight)
	pace(ctx, b.cfg.rate*float64(ngroups), b.cfg.duration, func(i int) {
		gi := i % ngroups
		fl.Go(func() { _ = pubs[gi].publish(ctx, groups[gi], 1) })
	})
	fl.Wait()
	published := time.Since(start)
	end := b.waitCaughtUp(ctx, readers)
	stop()

	res := &Result{Transport: b.cfg.transport, Groups: ngroups, Readers: len(readers), Publishers: ngroups, ReadySeconds: round3(ready.Seconds())}
	var total atomic.Int64
	for _, p := range pubs {
		total.Add(p.acked.Load())
	}
	(&publisher{acked: &total, ack: ack, errors: errs}).fillPublish(res, published)
	collect(res, readers, stats)
	res.DeliveryRate = math.Round(float64(res.Delivered) / end.Sub(start).Seconds())
	srv.finish(res, 0)
	if liveOK && liveOK2 {
		res.LivePerConn = float64(liveAfter-liveBefore) / float64(len(readers))
	}
	if p := res.ServerProcess; p != nil && base.rss > 0 {
		p.RSSPerConn = float64(p.RSSAfter-base.rss) / float64(len(readers))
	}
	return res, ctx.Err()
}

// btoi is 1 for true.
func btoi(v bool) int {
	if v {
		return 1
	}
	return 0
}

// publishLoad: C publishers, each its own node, publishing as fast as acks
// come back; no readers. With several --write-urls the publishers are spread
// over them (publisher i on the i-th in turn), each instance's on a group
// created through it: a cluster's acknowledged rate from the same closed loop.
func (b *bench) publishLoad(ctx context.Context) (*Result, error) {
	urls := b.cfg.writeURLs
	type side struct {
		b     *bench
		nodes []member
	}
	var sides []side
	total := 0
	for i, u := range urls {
		n := b.cfg.publishers/len(urls) + btoi(i < b.cfg.publishers%len(urls))
		if n == 0 {
			continue
		}
		c := b.c
		if len(urls) > 1 {
			var err error
			if c, err = newClient(u, b.cfg.api, 2*n+64); err != nil {
				return nil, err
			}
			defer c.close()
		}
		g, err := b.newGroupOn(ctx, c, i)
		if err != nil {
			return nil, err
		}
		wb := &bench{cfg: b.cfg, c: c, run: b.run}
		nodes, err := wb.joinNodes(ctx, g, n, fmt.Sprintf("w%d-publisher", i))
		if err != nil {
			return nil, err
		}
		sides = append(sides, side{wb, nodes})
		total += n
	}
	var acked atomic.Int64
	p := &publisher{b: b, acked: &acked, ack: &histogram{}, errors: &errorTally{}}
	srv := b.startSampling(ctx)
	start := time.Now()
	var wg sync.WaitGroup
	for _, sd := range sides {
		wg.Go(func() {
			sp := *p
			sp.b = sd.b
			sd.b.flood(ctx, sd.nodes, &sp, func() bool { return true })
		})
	}
	wg.Wait()
	res := &Result{Groups: len(sides), Publishers: total}
	p.fillPublish(res, time.Since(start))
	srv.finish(res, 0)
	return res, ctx.Err()
}

// flood runs one goroutine per node publishing batches back to back for
// the configured duration, while may() allows. A publish in flight at the
// end is awaited rather than cancelled: cancelling could lose the ack of an
// item the server committed, which readers would then report as unexpected.
func (b *bench) flood(ctx context.Context, nodes []member, p *publisher, may func() bool) {
	fctx, cancel := context.WithTimeout(ctx, b.cfg.duration)
	defer cancel()
	var wg sync.WaitGroup
	for _, m := range nodes {
		wg.Go(func() {
			for fctx.Err() == nil {
				if !may() {
					sleep(fctx, 200*time.Microsecond)
					continue
				}
				if err := p.publish(ctx, m, b.cfg.batch); err != nil && fctx.Err() == nil {
					sleep(fctx, retryAfter(err))
				}
			}
		})
	}
	wg.Wait()
}

// saturate: N readers while publishers publish as fast as acks allow, kept
// at most cfg.window items ahead of the slowest reader so the run measures
// the delivery rate the server sustains rather than an ever-growing backlog.
func (b *bench) saturate(ctx context.Context) (*Result, error) {
	g, err := b.newGroup(ctx, 0)
	if err != nil {
		return nil, err
	}
	nodes, err := b.joinNodes(ctx, g, ceilDiv(b.cfg.readers, b.cfg.perNode), "reader")
	if err != nil {
		return nil, err
	}
	pubs, err := b.joinNodes(ctx, g, b.cfg.publishers, "publisher")
	if err != nil {
		return nil, err
	}
	var acked atomic.Int64
	stats := &streamStats{}
	readers := b.newReaders(nodes, b.cfg.readers, &acked, stats)
	setReady(readers, nodes, pubs, []member{g})
	stop, ready, err := b.startReaders(ctx, readers, b.cfg.transport)
	if err != nil {
		return nil, err
	}
	defer stop()
	sleep(ctx, b.cfg.warmup)

	// A watcher keeps the slowest reader's count, so publishers need not
	// scan every reader before each publish.
	var slowest atomic.Int64
	wctx, wcancel := context.WithCancel(ctx)
	var wwg sync.WaitGroup
	wwg.Go(func() {
		for wctx.Err() == nil {
			low := int64(math.MaxInt64)
			for _, r := range readers {
				low = min(low, r.track.matched.Load())
			}
			slowest.Store(low)
			sleep(wctx, time.Millisecond)
		}
	})
	p := &publisher{b: b, acked: &acked, ack: &histogram{}, errors: &errorTally{}}
	srv := b.startSampling(ctx)
	start := time.Now()
	window := int64(b.cfg.window)
	b.flood(ctx, pubs, p, func() bool { return acked.Load()-slowest.Load() < window })
	published := time.Since(start)
	end := b.waitCaughtUp(ctx, readers)
	wcancel()
	wwg.Wait()
	stop()

	res := &Result{Transport: b.cfg.transport, Groups: 1, Readers: len(readers), Publishers: len(pubs), ReadySeconds: round3(ready.Seconds())}
	p.fillPublish(res, published)
	collect(res, readers, stats)
	res.DeliveryRate = math.Round(float64(res.Delivered) / end.Sub(start).Seconds())
	srv.finish(res, 0)
	return res, ctx.Err()
}

// classroom: G groups of N nodes, every node subscribed, each group with a
// steady trickle of data updates and event batches from its nodes.
func (b *bench) classroom(ctx context.Context) (*Result, error) {
	type class struct {
		members []member
		acked   atomic.Int64
	}
	classes := make([]*class, b.cfg.groups)
	stats := &streamStats{}
	var readers []*reader
	for i := range classes {
		g, err := b.newGroup(ctx, i)
		if err != nil {
			return nil, err
		}
		nodes, err := b.joinNodes(ctx, g, b.cfg.nodes-1, fmt.Sprintf("g%d-node", i))
		if err != nil {
			return nil, err
		}
		cl := &class{members: append([]member{g}, nodes...)}
		classes[i] = cl
		readers = append(readers, b.classReaders(cl.members, &cl.acked, stats, b.readBase)...)
	}
	stop, ready, err := b.startReaders(ctx, readers, b.cfg.transport)
	if err != nil {
		return nil, err
	}
	defer stop()
	sleep(ctx, b.cfg.warmup)

	ack, perrs := &histogram{}, &errorTally{}
	srv := b.startSampling(ctx)
	start := time.Now()
	var wg sync.WaitGroup
	fl := newInflight(maxInflight)
	for _, cl := range classes {
		p := &publisher{b: b, acked: &cl.acked, ack: ack, errors: perrs}
		n := len(cl.members)
		wg.Go(func() {
			pace(ctx, b.cfg.dataRate, b.cfg.duration, func(i int) {
				fl.Go(func() { _ = p.setData(ctx, cl.members[i%n]) })
			})
		})
		wg.Go(func() {
			// A different stride than the data updates, so event senders
			// are not always the nodes that just set data.
			pace(ctx, b.cfg.eventRate, b.cfg.duration, func(i int) {
				fl.Go(func() { _ = p.publish(ctx, cl.members[(i*7+3)%n], b.cfg.eventBatch) })
			})
		})
	}
	wg.Wait()
	fl.Wait()
	published := time.Since(start)
	end := b.waitCaughtUp(ctx, readers)
	res := &Result{Transport: b.cfg.transport, Groups: len(classes), Readers: len(readers), Publishers: len(readers), ReadySeconds: round3(ready.Seconds())}
	srv.finish(res, 0) // before the readers close, so the window holds only the load
	stop()

	var total int64
	for _, cl := range classes {
		total += cl.acked.Load()
	}
	loadResult(res, total, start, published, end, ack, perrs, readers, stats)
	return res, ctx.Err()
}

// loadResult fills the report of a run whose publishers started at start, published for
// published and had acked items acknowledged, and whose readers caught up at caught: rates,
// acknowledgement latencies and what the readers got.
func loadResult(res *Result, acked int64, start time.Time, published time.Duration, caught time.Time, ack *histogram, perrs *errorTally, readers []*reader, stats *streamStats) {
	res.Published = acked
	res.Seconds = round3(published.Seconds())
	res.PublishRate = math.Round(float64(acked) / published.Seconds())
	res.PublishErrors = perrs.snapshot()
	res.AckLatency = ack.Summary()
	collect(res, readers, stats)
	res.DeliveryRate = math.Round(float64(res.Delivered) / caught.Sub(start).Seconds())
}

// idle: open N WebSocket connections that only answer pings, hold them,
// and report the server's memory growth per connection.
func (b *bench) idle(ctx context.Context) (*Result, error) {
	res := &Result{Transport: b.cfg.transport}
	if lim, err := raiseFileLimit(); err != nil {
		res.Notes = append(res.Notes, err.Error())
	} else if lim < uint64(b.cfg.readers)+256 {
		res.Notes = append(res.Notes, fmt.Sprintf("open-file limit %d is below %d connections; raise it (ulimit -n)", lim, b.cfg.readers))
	}
	if lo, hi, err := portRange(); err == nil && hi-lo+1 < b.cfg.readers {
		res.Notes = append(res.Notes, fmt.Sprintf("ephemeral port range %d-%d has fewer ports than %d connections", lo, hi, b.cfg.readers))
	}

	// Enough nodes for perNode connections each, at most cfg.nodes per group.
	need := ceilDiv(b.cfg.readers, b.cfg.perNode)
	var members []member
	for gi := 0; len(members) < need; gi++ {
		g, err := b.newGroup(ctx, gi)
		if err != nil {
			return nil, err
		}
		members = append(members, g)
		more := min(need-len(members), b.cfg.nodes-1)
		if more > 0 {
			nodes, err := b.joinNodes(ctx, g, more, fmt.Sprintf("g%d-idle", gi))
			if err != nil {
				return nil, err
			}
			members = append(members, nodes...)
		}
		res.Groups++
	}
	sleep(ctx, time.Second) // let the joins settle before the baseline
	liveBefore, liveOK := b.c.liveMemory(ctx)
	srv := b.startSampling(ctx)

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := &errorTally{}
	conns := make([]io.Closer, b.cfg.readers)
	sem := make(chan struct{}, b.cfg.dial)
	var wg, readWG sync.WaitGroup
	start := time.Now()
	for i := range conns {
		m := members[i/b.cfg.perNode]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			dctx, dcancel := context.WithTimeout(cctx, 30*time.Second)
			defer dcancel()
			c, err := b.openIdle(dctx, cctx, m, &readWG)
			if err != nil {
				errs.add(err)
				return
			}
			conns[i] = c
		})
	}
	wg.Wait()
	res.ConnectSeconds = round3(time.Since(start).Seconds())
	open := 0
	for _, c := range conns {
		if c != nil {
			open++
		}
	}
	res.Connections, res.Readers = open, open
	res.ReaderErrors = errs.snapshot()
	sleep(ctx, b.cfg.duration)
	res.Seconds = round3(b.cfg.duration.Seconds())
	srv.finish(res, open)
	if liveAfter, ok := b.c.liveMemory(ctx); ok && liveOK && open > 0 {
		res.LivePerConn = float64(liveAfter-liveBefore) / float64(open)
	}
	cancel()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	readWG.Wait()
	if open < b.cfg.readers {
		return res, fmt.Errorf("only %d of %d connections opened (%s)", open, b.cfg.readers, tally(res.ReaderErrors))
	}
	return res, ctx.Err()
}

// openIdle opens one idle stream of m over the configured transport (no
// since: a fresh idle client starts from now, so this measures holding
// connections, not catching up on history). It reads and discards in a
// goroutine counted in readers until live ends or the stream fails, so
// pings are answered and the client stays well behaved.
func (b *bench) openIdle(dial, live context.Context, m member, readers *sync.WaitGroup) (io.Closer, error) {
	if b.cfg.transport == transportSSE {
		u := b.c.base + "/api/v1/groups/" + url.PathEscape(m.Group) + "/stream"
		if b.c.api == apiNtfy {
			u = b.c.ntfyStreamURL(m, "sse")
		}
		req, err := http.NewRequestWithContext(live, http.MethodGet, u, nil)
		if err != nil {
			return nil, fmt.Errorf("build request: %w", err)
		}
		req.Header.Set("Accept", "text/event-stream")
		if m.Token != "" {
			req.Header.Set("Authorization", "Bearer "+m.Token)
		}
		resp, err := b.c.http.Do(req)
		if err != nil {
			return nil, fmt.Errorf("sse connect: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("sse connect: status %d", resp.StatusCode)
		}
		readers.Go(func() { _, _ = io.Copy(io.Discard, resp.Body) })
		return resp.Body, nil
	}
	u := "ws" + trimHTTP(b.c.base+"/api/v1/groups/"+url.PathEscape(m.Group)+"/ws")
	if b.c.api == apiNtfy {
		u = "ws" + trimHTTP(b.c.ntfyStreamURL(m, "ws"))
	}
	h := http.Header{}
	if m.Token != "" {
		h.Set("Authorization", "Bearer "+m.Token)
	}
	c, _, err := websocket.Dial(dial, u, &websocket.DialOptions{HTTPClient: b.c.http, HTTPHeader: h})
	if err != nil {
		return nil, fmt.Errorf("websocket dial: %w", err)
	}
	c.SetReadLimit(64 << 20)
	readers.Go(func() {
		for {
			if _, _, err := c.Read(live); err != nil {
				return
			}
		}
	})
	return closeNow{c}, nil
}

// closeNow closes a WebSocket without the closing handshake.
type closeNow struct{ c *websocket.Conn }

// Close drops the connection.
func (c closeNow) Close() error { return c.c.CloseNow() }

// trimHTTP drops the leading "http" so "ws" can be prefixed ("https" → "wss").
func trimHTTP(u string) string { return u[len("http"):] }

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
