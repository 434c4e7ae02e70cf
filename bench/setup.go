package bench

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// joinConcurrency bounds parallel join requests while setting up.
const joinConcurrency = 16

// newGroup creates a group in the run's domain and remembers it for cleanup.
func (b *bench) newGroup(ctx context.Context, i int) (member, error) {
	m, err := b.c.createGroup(ctx, b.cfg.domain, fmt.Sprintf("bench-%s-%d", b.run, i))
	if err != nil {
		return member{}, err
	}
	b.groups = append(b.groups, m)
	return m, nil
}

// joinNodes joins n nodes to group g, a few at a time.
func (b *bench) joinNodes(ctx context.Context, g member, n int, prefix string) ([]member, error) {
	out := make([]member, n)
	errs := make([]error, n)
	sem := make(chan struct{}, joinConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i], errs[i] = b.c.join(ctx, g.Group, fmt.Sprintf("%s-%d", prefix, i))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("node %d of %d: %w", i+1, n, err)
		}
	}
	return out, nil
}

// newReaders makes n readers of one group sharing node tokens, perNode
// streams per node, so many streams do not need many nodes.
func (b *bench) newReaders(nodes []member, n int, expected *atomic.Int64, stats *streamStats) []*reader {
	rs := make([]*reader, n)
	for i := range rs {
		rs[i] = &reader{run: b.run, m: nodes[i/b.cfg.perNode%len(nodes)], stats: stats, expected: expected, base: b.readBase(i)}
		if b.c.api == apiNtfy {
			rs[i].track.unordered = map[int64]struct{}{}
		}
	}
	return rs
}

// setReady sets the cursor every reader must reach before load starts:
// the highest cursor any member got at create/join.
func setReady(readers []*reader, members ...[]member) {
	var top int64
	for _, ms := range members {
		for _, m := range ms {
			top = max(top, m.Cursor)
		}
	}
	for _, r := range readers {
		r.ready = top
	}
}

// startReaders opens every reader's stream, at most cfg.dial at a time, and
// returns once all are connected and have caught up with the items that
// setup produced (see reader.ready), with how long that took. stop ends
// them and waits for their goroutines, after which their trackers may be
// read.
func (b *bench) startReaders(ctx context.Context, readers []*reader, transport string) (stop func(), took time.Duration, err error) {
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	sem := make(chan struct{}, b.cfg.dial)
	var up, ready atomic.Int64
	allReady := make(chan struct{})
	begin := time.Now()
	for _, r := range readers {
		r.onReady = func() {
			if ready.Add(1) == int64(len(readers)) {
				close(allReady)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-rctx.Done():
				return
			}
			var once sync.Once
			release := func() { once.Do(func() { <-sem }) }
			defer release()
			r.follow(rctx, b.c, transport, func() {
				release()
				up.Add(1)
			})
		}()
	}
	timeout := 30*time.Second + time.Duration(len(readers))*10*time.Millisecond
	select {
	case <-allReady:
		return stop, time.Since(begin), nil
	case <-ctx.Done():
		stop()
		return nil, 0, ctx.Err()
	case <-time.After(timeout):
		stop()
		errs := readers[0].stats.errors.snapshot()
		return nil, 0, fmt.Errorf("within %s only %d of %d readers connected and %d caught up (errors: %s)",
			timeout, up.Load(), len(readers), ready.Load(), tally(errs))
	}
}

// waitCaughtUp waits until every reader has every acked item of its group
// or the drain time has passed; it returns when that happened.
func (b *bench) waitCaughtUp(ctx context.Context, readers []*reader) time.Time {
	deadline := time.Now().Add(b.cfg.drain)
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	i := 0 // readers before i are done; done is monotonic
	for {
		for i < len(readers) && readers[i].done() {
			i++
		}
		now := time.Now()
		if i == len(readers) || now.After(deadline) {
			return now
		}
		select {
		case <-ctx.Done():
			return time.Now()
		case <-t.C:
		}
	}
}

// pace calls fn at rate per second for d, on schedule: if a call runs late
// the next ones catch up, so the offered load stays what was asked for.
func pace(ctx context.Context, rate float64, d time.Duration, fn func(i int)) {
	if rate <= 0 {
		return
	}
	start := time.Now()
	every(ctx, start, start.Add(d), time.Duration(float64(time.Second)/rate), 0, fn)
}

// serverSampler measures the server process when -pid is given, and
// fetches a CPU profile of it when -cpuprofile is given.
type serverSampler struct {
	pid     int
	self    procSample // the tool's own process, to show what the load generator took
	selfErr error
	first   procSample
	err     error
	profile chan error   // result of the profile download, if one runs
	others  []procLabel  // --pids
	oFirst  []procSample // their first samples
	oErr    []error
}

// startSampling takes the first sample and starts the profile download,
// which covers the load phase (cfg.duration).
func (b *bench) startSampling(ctx context.Context) *serverSampler {
	s := &serverSampler{pid: b.cfg.pid}
	s.self, s.selfErr = sampleProc(os.Getpid())
	if s.pid > 0 {
		s.first, s.err = sampleProc(s.pid)
	}
	s.others = b.cfg.pids
	for _, p := range s.others {
		first, err := sampleProc(p.pid)
		s.oFirst, s.oErr = append(s.oFirst, first), append(s.oErr, err)
	}
	if b.cfg.cpuprofile != "" {
		s.profile = make(chan error, 1)
		secs := max(1, int(b.cfg.duration.Round(time.Second)/time.Second))
		go func() {
			s.profile <- b.c.download(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), b.cfg.cpuprofile)
		}()
	}
	return s
}

// finish takes the second sample and fills res.ServerProcess; perConn,
// when positive, divides the RSS growth by that many connections.
func (s *serverSampler) finish(res *Result, perConn int) {
	if s.profile != nil {
		if err := <-s.profile; err != nil {
			res.Notes = append(res.Notes, "cpu profile: "+err.Error())
		} else {
			res.Notes = append(res.Notes, "server cpu profile written")
		}
	}
	if self, err := sampleProc(os.Getpid()); err == nil && s.selfErr == nil {
		if wall := self.at.Sub(s.self.at).Seconds(); wall > 0 {
			res.ToolCPUCores = round3((self.cpu - s.self.cpu).Seconds() / wall)
		}
	}
	for i, p := range s.others {
		last, err := sampleProc(p.pid)
		if err = firstErr(s.oErr[i], err); err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("process %s: %v", p.name, err))
			continue
		}
		u := usage(p.pid, s.oFirst[i], last, perConn)
		u.Name = p.name
		res.Processes = append(res.Processes, *u)
	}
	if s.pid <= 0 {
		return
	}
	last, err := sampleProc(s.pid)
	if s.err != nil || err != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("server process %d: %v", s.pid, firstErr(s.err, err)))
		return
	}
	res.ServerProcess = usage(s.pid, s.first, last, perConn)
}

// usage is a process's use between two samples; perConn, when positive, divides the RSS
// growth by that many connections.
func usage(pid int, first, last procSample, perConn int) *ProcUsage {
	wall := last.at.Sub(first.at).Seconds()
	cpu := (last.cpu - first.cpu).Seconds()
	u := &ProcUsage{PID: pid, CPUSeconds: cpu, WallSeconds: round3(wall), RSSBefore: first.rss, RSSAfter: last.rss}
	if wall > 0 {
		u.CPUCores = round3(cpu / wall)
	}
	if perConn > 0 {
		u.RSSPerConn = float64(last.rss-first.rss) / float64(perConn)
	}
	return u
}

// firstErr returns the first non-nil error.
func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// round3 rounds to three decimals for readable JSON.
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

// collect sums the readers' trackers into res; call after the readers stopped.
func collect(res *Result, readers []*reader, stats *streamStats) {
	for _, r := range readers {
		got, want := r.track.matched.Load(), r.expected.Load()
		res.Expected += want
		res.Delivered += got
		if got < want {
			res.Missing += want - got
		} else {
			res.Unexpected += got - want
		}
		res.Duplicate += r.track.duplicate.Load()
		res.OutOfOrder += r.track.outOfOrder.Load()
	}
	res.Resets = stats.resets.Load()
	res.Frames = stats.frames.Load()
	res.Reconnects = stats.reconnects.Load()
	res.ReaderErrors = stats.errors.snapshot()
	res.Latency = stats.latency.Summary()
}

// ceilDiv divides rounding up.
func ceilDiv(a, b int) int { return (a + b - 1) / b }

// readBase is the server reader i reads from: with -read-urls, the readers are spread over
// them in turn (several meshbox instances sharing groups through NATS); otherwise the -url.
func (b *bench) readBase(i int) string {
	if len(b.cfg.readURLs) == 0 {
		return ""
	}
	return b.cfg.readURLs[i%len(b.cfg.readURLs)]
}

// classReaders makes one reader per member of a class, the j-th reading from base(j), every
// one expecting the class's acknowledged items, all ready once the class's members are.
func (b *bench) classReaders(members []member, acked *atomic.Int64, stats *streamStats, base func(j int) string) []*reader {
	rs := make([]*reader, len(members))
	for j, m := range members {
		rs[j] = &reader{run: b.run, m: m, stats: stats, expected: acked, base: base(j)}
	}
	setReady(rs, members)
	return rs
}
