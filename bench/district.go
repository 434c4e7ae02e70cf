package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// district: --classes classes of --nodes pupils (the host and its members), each pupil one
// stream reader and one writer at a Smalruby lesson's rates: a burst of --burst-min to
// --burst-max broadcasts (one event per request, sent one after another as a script's
// broadcast blocks run) every --burst-interval, and one variable (a data update) every
// --data-interval. Pupils' schedules are spread evenly over the interval, so the load is
// steady rather than one spike every few seconds; a class writes to one instance of
// --write-urls and reads from one of --read-urls (class c to the c-th, in turn), as a class
// sits in one school served by one box.
func (b *bench) district(ctx context.Context) (*Result, error) {
	type class struct {
		members []member
		writer  *client
		acked   atomic.Int64
	}
	writers := make([]*client, len(b.cfg.writeURLs))
	perWriter := b.cfg.nodes * ceilDiv(b.cfg.groups, len(writers))
	for i, u := range b.cfg.writeURLs {
		c, err := newClient(u, b.cfg.api, 2*perWriter+64)
		if err != nil {
			return nil, err
		}
		defer c.close()
		writers[i] = c
	}
	classes := make([]*class, b.cfg.groups)
	stats := &streamStats{}
	var readers []*reader
	for i := range classes {
		cl := &class{writer: writers[i%len(writers)]}
		g, err := b.newGroupOn(ctx, cl.writer, i)
		if err != nil {
			return nil, err
		}
		wb := &bench{cfg: b.cfg, c: cl.writer, run: b.run}
		nodes, err := wb.joinNodes(ctx, g, b.cfg.nodes-1, fmt.Sprintf("c%d-pupil", i))
		if err != nil {
			return nil, err
		}
		cl.members = append([]member{g}, nodes...)
		classes[i] = cl
		base := b.cfg.writeURLs[i%len(b.cfg.writeURLs)]
		if len(b.cfg.readURLs) > 0 {
			base = b.cfg.readURLs[i%len(b.cfg.readURLs)]
		}
		readers = append(readers, b.classReaders(cl.members, &cl.acked, stats, func(int) string { return base })...)
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
	end := start.Add(b.cfg.duration)
	pupils := len(classes) * b.cfg.nodes
	var wg sync.WaitGroup
	k := 0 // the pupil's place in the district, which spreads its schedule
	for ci, cl := range classes {
		p := &publisher{b: &bench{cfg: b.cfg, c: cl.writer, run: b.run}, acked: &cl.acked, ack: ack, errors: perrs}
		for _, m := range cl.members {
			phase := float64(k) / float64(pupils)
			rng := rand.New(rand.NewPCG(uint64(ci), uint64(k)))
			wg.Go(func() {
				every(ctx, start, end, b.cfg.dataInterval, phase, func(int) { _ = p.setData(ctx, m) })
			})
			wg.Go(func() {
				every(ctx, start, end, b.cfg.burstInterval, phase, func(int) {
					n := b.cfg.burstMin + rng.IntN(b.cfg.burstMax-b.cfg.burstMin+1)
					for range n {
						if p.publish(ctx, m, 1) != nil {
							return // the rest of a failed burst is dropped, as a client would
						}
					}
				})
			})
			k++
		}
	}
	wg.Wait()
	published := time.Since(start)
	caught := b.waitCaughtUp(ctx, readers)
	res := &Result{Transport: b.cfg.transport, Groups: len(classes), Readers: len(readers), Publishers: pupils, ReadySeconds: round3(ready.Seconds())}
	srv.finish(res, 0) // before the readers close, so the window holds only the load
	stop()

	var total int64
	for _, cl := range classes {
		total += cl.acked.Load()
	}
	loadResult(res, total, start, published, caught, ack, perrs, readers, stats)
	return res, ctx.Err()
}

// every calls fn(i) at start + (phase + i) × interval for i = 0, 1, … while that is before end;
// a call that runs late is followed at once by the next one due, so a caller keeps its rate
// unless the server holds it back for longer than an interval.
func every(ctx context.Context, start, end time.Time, interval time.Duration, phase float64, fn func(i int)) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for i := 0; ; i++ {
		due := start.Add(time.Duration((phase + float64(i)) * float64(interval)))
		if !due.Before(end) {
			return
		}
		if wait := time.Until(due); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			return
		}
		fn(i)
	}
}

// newGroupOn creates a group through c (one instance of several) and remembers it, with the
// instance that dissolves it, for cleanup.
func (b *bench) newGroupOn(ctx context.Context, c *client, i int) (member, error) {
	m, err := c.createGroup(ctx, b.cfg.domain, fmt.Sprintf("bench-%s-%d", b.run, i))
	if err != nil {
		return member{}, err
	}
	b.groups = append(b.groups, m)
	if b.owners == nil {
		b.owners = map[string]*client{}
	}
	b.owners[m.Group] = c
	return m, nil
}

// procLabel is one process given with --pids: its id and the name the report gives it.
type procLabel struct {
	name string
	pid  int
}

// parsePIDs reads --pids: comma-separated process ids, each optionally named (name=pid);
// an unnamed one is named after its command (/proc/PID/comm).
func parsePIDs(v string) ([]procLabel, error) {
	var out []procLabel
	for _, f := range strings.Split(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		name, num, named := strings.Cut(f, "=")
		if !named {
			num = name
		}
		pid, err := strconv.Atoi(num)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("bench: --pids: %q is not a process id", f)
		}
		if !named {
			name = procName(pid)
		}
		out = append(out, procLabel{name: name, pid: pid})
	}
	return out, nil
}

// procName is the command name of pid, or "pid N" when it cannot be read.
func procName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "pid " + strconv.Itoa(pid)
	}
	return strings.TrimSpace(string(b)) + " " + strconv.Itoa(pid)
}
