package server

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/auth"
	"meshbox/hub"
	"meshbox/live"
	"meshbox/rules"
	"meshbox/stream"
)

// What every native stream transport (long-poll.go, sse.go, websocket.go) shares: who reads
// from where, the encoding of items, and the loop over the hub. Their connections' life
// (registration, caps, shutdown, pings, close codes) is package live's.

// streamBatch bounds the items one frame or event burst carries; a reader that is behind gets
// them all in few frames.
const streamBatch = 1000

// reader is an authenticated reader of a group at a cursor.
type reader struct {
	node  rules.Node
	since int64
}

// openReader authenticates a reader and parses its cursor: lastEventID (SSE) wins over since;
// no cursor means "from now".
func (s *Server) openReader(r *http.Request, q url.Values, lastEventID string) (reader, error) {
	gid := chi.URLParam(r, "gid")
	tok := auth.Token(r, q)
	if tok == "" {
		return reader{}, errorf(http.StatusUnauthorized, "unauthorized", "missing token: send Authorization: Bearer TOKEN (or ?token=)")
	}
	n, ok := chargedNode(r.Context(), gid, tok) // authenticated by limit a moment ago
	if !ok {
		var err error
		if n, _, err = s.store.AuthenticateReader(gid, tok); err != nil {
			return reader{}, err
		}
	}
	raw := lastEventID
	if raw == "" {
		raw = q.Get("since")
	}
	since := s.store.LastCursor()
	if raw != "" {
		c, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || c < 0 {
			return reader{}, errorf(http.StatusBadRequest, "bad_cursor", "cursor must be a non-negative integer, not "+strconv.Quote(raw))
		}
		if c > since {
			return reader{}, errorf(http.StatusBadRequest, "bad_cursor", "cursor "+raw+" is ahead of the stream (a cursor from another meshbox?)")
		}
		since = c
	}
	return reader{node: n, since: since}, nil
}

// appendItems writes items as a JSON array of their stored encodings.
func appendItems(b []byte, items []stream.Item) []byte {
	b = append(b, '[')
	for i, it := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, it.JSON...)
	}
	return append(b, ']')
}

func itemsLen(items []stream.Item) int {
	n := 0
	for _, it := range items {
		n += len(it.JSON) + 1
	}
	return n
}

func (s *Server) delivered(transport string, items []stream.Item) {
	if len(items) > 0 {
		s.obs.ObserveDelivered(transport, len(items), items[0].At)
	}
}

// flushers runs pumps' flushes on goroutines that are kept after each one, so that a busy
// fan-out (1,000 readers of one group, every item) reuses goroutines whose stacks have already
// grown to a write's depth rather than starting (and growing) 1,000 new ones per item: that
// was a tenth of the server's CPU. A flush that blocks on a slow client holds only its own
// goroutine; another starts for the next job. Waiting workers cost no timer: reap retires
// idle ones, so none is left when nothing is delivered.
type flushers struct {
	jobs chan *pump      // unbuffered: a job goes to a worker already waiting for one; nil retires it
	idle atomic.Int64    // workers waiting for a job
	stop <-chan struct{} // the server's end: waiting workers leave
}

// flusherIdle is how often half of the waiting workers are retired.
const flusherIdle = time.Second

// run flushes p on a waiting worker, or on a new one.
func (f *flushers) run(p *pump) {
	select {
	case f.jobs <- p:
	default:
		go f.work(p)
	}
}

func (f *flushers) work(p *pump) {
	for p != nil {
		p.flush()
		f.idle.Add(1)
		select {
		case p = <-f.jobs:
		case <-f.stop:
			p = nil
		}
		f.idle.Add(-1)
	}
}

// reap retires half of the waiting workers every flusherIdle until stop: a pool that a burst
// grew shrinks back within seconds once deliveries calm down.
func (f *flushers) reap() {
	t := time.NewTicker(flusherIdle)
	defer t.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-t.C:
			for n := (f.idle.Load() + 1) / 2; n > 0; n-- {
				select {
				case f.jobs <- nil:
				default:
					n = 0 // none waiting any more
				}
			}
		}
	}
}

// outlet is a hijacked connection a pump writes to: a live.Socket or a live.Stream.
type outlet interface {
	Context() context.Context
	Close(why live.Reason)
}

// pump delivers a subscription to a hijacked connection without a goroutine of its own while
// idle: the hub calls wake on new items, which starts a short-lived goroutine that sends
// everything pending after the cursor in as few writes as it can, then ends.
type pump struct {
	s         *Server
	sub       *hub.Sub
	out       outlet
	transport string
	// write sends one batch (items, or a reset); buf is a pooled buffer to build it in, to be
	// returned (grown) for the next batch.
	write func(buf []byte, b hub.Batch) ([]byte, error)

	since   int64        // owned by the goroutine that holds running
	at      atomic.Int64 // since, as the last flush left it: everything through it was written
	waiter  atomic.Pointer[waiter]
	running atomic.Bool // a flush goroutine runs
	pending atomic.Bool // items arrived since the flush last looked
	flushes sync.WaitGroup
	// mu orders starting a flush against stop: once ended is set, none starts, so waiting
	// for flushes is final.
	mu    sync.Mutex
	ended bool
}

// waiter is an answer waiting for the pump to have written everything through a cursor.
type waiter struct {
	through int64
	ch      chan struct{}
}

// reached waits until the pump has written everything of the group through cursor through, so
// an answer sent after it never overtakes an item committed before it (a client told "ack 7"
// or "group ended" has had the items up to then). It reports false when the connection ended
// first. One goroutine (the connection's reader) calls it.
func (p *pump) reached(ctx context.Context, through int64) bool {
	if p.at.Load() >= through {
		return true
	}
	w := &waiter{through: through, ch: make(chan struct{})}
	p.waiter.Store(w)
	// A flush that stored at after the check above but before the waiter was set would not
	// have seen it: look again, and take the waiter back unless a flush already did.
	if p.at.Load() >= through && p.waiter.CompareAndSwap(w, nil) {
		return true
	}
	select {
	case <-w.ch:
		return true
	case <-ctx.Done():
		return false
	}
}

// caughtUp records that everything through since was written and releases an answer waiting
// for it.
func (p *pump) caughtUp() {
	p.at.Store(p.since)
	if w := p.waiter.Load(); w != nil && p.since >= w.through && p.waiter.CompareAndSwap(w, nil) {
		close(w.ch)
	}
}

// start has the hub wake the pump and sends the backlog after the cursor.
func (p *pump) start(since int64) {
	p.since = since
	p.sub.Notify(p.wake)
	p.wake()
}

// stop ends the subscription and waits for a flush in progress; none starts after it.
func (p *pump) stop() {
	p.sub.Close()
	p.mu.Lock()
	p.ended = true
	p.mu.Unlock()
	p.flushes.Wait()
}

// wake makes sure a flush runs; it never blocks (the hub calls it while publishing).
func (p *pump) wake() {
	p.pending.Store(true)
	if !p.running.CompareAndSwap(false, true) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	p.flushes.Add(1)
	p.s.flushers.run(p)
}

func (p *pump) flush() {
	defer p.flushes.Done()
	// A panic here would take the process down (the recoverer guards handlers, not the
	// goroutines that outlive them): it ends this connection instead. running stays set, so
	// no flush starts again on it.
	defer func() {
		if v := recover(); v != nil {
			p.s.log.Error("panic delivering to a connection", "transport", p.transport, "panic", v)
			p.out.Close(live.Internal)
		}
	}()
	for {
		p.pending.Store(false)
		done, err := p.sendPending()
		if err != nil || done {
			switch {
			case done:
				p.out.Close(live.Ended)
			case p.out.Context().Err() == nil:
				p.s.log.Debug("stream flush", "transport", p.transport, "err", err)
				p.out.Close(live.Internal)
			}
			return // running stays set: no flush starts again
		}
		p.running.Store(false)
		// Items that arrived after the last read but before running was cleared would
		// otherwise wait for the next wake.
		if !p.pending.Load() || !p.running.CompareAndSwap(false, true) {
			return
		}
	}
}

// sendPending sends everything after the cursor; done reports the group's end was sent.
func (p *pump) sendPending() (done bool, err error) {
	bp := p.s.frames.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0]; p.s.frames.Put(bp) }()
	for {
		b, err := p.sub.Read(p.out.Context(), p.since, streamBatch)
		if err != nil {
			return false, err
		}
		if len(b.Items) == 0 && !b.Truncated {
			p.since = b.Next
			p.caughtUp()
			return false, nil
		}
		if buf, err = p.write(buf[:0], b); err != nil {
			return false, err
		}
		p.s.delivered(p.transport, b.Items)
		p.since = b.Next
		if b.Ended {
			return true, nil
		}
	}
}
