package server

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

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
	// "Now" is read before the node is known to be a member: a leave committed after the
	// check has a cursor above it, so the reader reads it and ends there (hub.Batch.Gone).
	// Read after the check, it could lie past a leave committed in between, and the removed
	// node would go on reading everything after its leave.
	// On a shared log an instance that does not follow the group yet catches up first, so
	// "now" is not its follower's last news of the stream, which may be long past.
	if err := s.store.SyncGroup(r.Context(), gid); err != nil {
		return reader{}, err
	}
	since := s.store.LastCursor()
	n, ok := chargedNode(r.Context(), gid, tok) // authenticated by limit a moment ago…
	var err error
	if ok {
		// …before since was read: check again (a map lookup and a hash, once per stream
		// or poll).
		_, _, err = s.store.AuthenticateReader(gid, tok)
	} else {
		n, _, err = s.store.AuthenticateReader(gid, tok)
	}
	if err != nil {
		return reader{}, err
	}
	raw := lastEventID
	if raw == "" {
		raw = q.Get("since")
	}
	if raw != "" {
		c, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || c < 0 {
			return reader{}, errorf(http.StatusBadRequest, "bad_cursor", "cursor must be a non-negative integer, not "+strconv.Quote(raw))
		}
		if c > since && s.store.Sync(r.Context()) == nil {
			// A cursor another instance of a shared log handed out may be ahead of what this
			// one applied: everything committed before now is applied after Sync (this
			// instance may follow other groups than the client's, so its watermark moves
			// only with the messages it follows).
			since = max(since, s.store.LastCursor())
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

// flushers run pumps' flushes on a few goroutines, one per CPU, that never wait for a client:
// a flush offers each write (live's Offer: as much as the client's socket takes at once), and
// one whose write is not taken whole moves, with the rest of that write, to a goroutine of its
// own (pump.flush). So a fan-out to 1,000 readers costs a queue append per reader rather than
// a goroutine hand-off each (a sixth of a delivery's CPU, measured), and a client that reads
// slowly or not at all holds only its own goroutine, never a worker.
type flushers struct {
	mu      sync.Mutex
	ready   sync.Cond // signalled when the queue gets work and a worker sleeps
	queue   []*pump
	asleep  int  // workers waiting on ready
	stopped bool // the server ended: workers drain the queue and leave
}

// flushBatch is how many pumps a worker takes from the queue at once: few enough that the
// workers share a wave, enough that the queue's lock is not taken per reader.
const flushBatch = 16

// start runs n workers until ctx ends.
func (f *flushers) start(ctx context.Context, n int) {
	f.ready.L = &f.mu
	for range n {
		go f.work()
	}
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.stopped = true
		f.ready.Broadcast()
		f.mu.Unlock()
	})
}

// run queues p's flush for a worker (after the server ended: runs it on a goroutine of its
// own, so a pump's stop never waits for a flush nobody runs).
func (f *flushers) run(p *pump) {
	f.mu.Lock()
	if f.stopped {
		f.mu.Unlock()
		go p.flush(false, nil)
		return
	}
	f.queue = append(f.queue, p)
	// One worker is woken per burst (a publish's wave of readers): it wakes another if there
	// is more than it takes. Waking one per reader would have both workers up for a wave of
	// ten, one of them for nothing (measured: 7 % more CPU per delivery at 100 groups of 10).
	if len(f.queue) == 1 && f.asleep > 0 {
		f.ready.Signal()
	}
	f.mu.Unlock()
}

// work flushes queued pumps until the server ends and the queue is empty.
func (f *flushers) work() {
	batch := make([]*pump, 0, flushBatch)
	for {
		f.mu.Lock()
		for len(f.queue) == 0 && !f.stopped {
			f.asleep++
			f.ready.Wait()
			f.asleep--
		}
		if len(f.queue) == 0 {
			f.mu.Unlock()
			return
		}
		n := min(len(f.queue), flushBatch)
		batch = append(batch[:0], f.queue[:n]...)
		left := copy(f.queue, f.queue[n:])
		clear(f.queue[left:])
		f.queue = f.queue[:left]
		if left > 0 && f.asleep > 0 {
			f.ready.Signal()
		}
		f.mu.Unlock()
		for i, p := range batch {
			batch[i] = nil
			p.flush(false, nil)
		}
		if left > 0 {
			// A worker never blocks, so it would keep its CPU through a whole wave of
			// deliveries (80 ms at 10,000 readers) until the scheduler preempts it: let
			// waiting requests and the writer run between batches.
			runtime.Gosched()
		}
	}
}

// outlet is a hijacked connection a pump writes to: a live.Socket or a live.Stream.
type outlet interface {
	Context() context.Context
	Close(why live.Reason)
	// Write sends b, waiting for the client as long as it takes (the ticker drops a stalled one).
	Write(b []byte) error
	// Offer sends what of b the client's socket takes at once; finish, when not nil, writes
	// the rest (waiting), and must run before anything else is written.
	Offer(b []byte) (finish func() error, err error)
}

// pump delivers a subscription to a hijacked connection without a goroutine of its own while
// idle: the hub calls wake on new items, which queues a flush for the flushers; it sends
// everything pending after the cursor in as few writes as it can, then ends.
type pump struct {
	s         *Server
	sub       *hub.Sub
	out       outlet
	transport string
	// write sends one batch (items, or a reset) with send; buf is a pooled buffer to build it
	// in, to be returned (grown) for the next batch.
	write func(buf []byte, b hub.Batch) ([]byte, error)

	since   int64        // owned by the goroutine that holds running, like mayWait and rest
	mayWait bool         // the flush runs on a goroutine of its own: writes may wait
	rest    func() error // on a worker: finishes a write the client's socket did not take whole
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

// wrote records that everything through since was written and releases an answer waiting for
// it. It runs after each batch the client's socket took whole, not only once the pump caught
// up: on a busy group an answer waits for the items before it, not for a pause.
func (p *pump) wrote() {
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

// flush sends everything pending. On a worker (mayWait false) it never waits for the client:
// when a write is not taken whole, or a batch needs more than one write or ends the
// connection (a reset, the group's end), the flush moves to a goroutine of its own, which
// first runs finish (the rest of that write) and may then wait on every write.
func (p *pump) flush(mayWait bool, finish func() error) {
	moved := false
	defer func() {
		// A panic here would take the process down (the recoverer guards handlers, not the
		// goroutines that outlive them): it ends this connection instead. running stays
		// set, so no flush starts again on it.
		if v := recover(); v != nil {
			p.s.log.Error("panic delivering to a connection", "transport", p.transport, "panic", v)
			p.out.Close(live.Internal)
		}
		if !moved {
			p.flushes.Done()
		}
	}()
	p.mayWait = mayWait
	if finish != nil {
		if err := finish(); err != nil {
			p.failed(err)
			return
		}
		p.wrote()
	}
	for {
		p.pending.Store(false)
		end, rest, err := p.sendPending()
		if rest != nil {
			moved = true
			go p.flush(true, rest)
			return
		}
		if err != nil || end != (live.Reason{}) {
			if err == nil {
				p.out.Close(end)
			} else {
				p.failed(err)
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

// failed ends the connection after a write or read failed (unless it already ended).
func (p *pump) failed(err error) {
	if p.out.Context().Err() == nil {
		p.s.log.Debug("stream flush", "transport", p.transport, "err", err)
		p.out.Close(live.Internal)
	}
}

// errTwoOffers is a batch written in two parts on a worker: the second would wait for the
// first's rest on the same goroutine.
var errTwoOffers = errors.New("pump: a second write before the first was taken whole")

// send writes one message or event burst of a batch: on a goroutine of the flush's own as
// long as it takes, on a worker as far as the client's socket takes it at once (the rest is
// left in p.rest for the flush to move).
func (p *pump) send(b []byte) error {
	if p.mayWait {
		return p.out.Write(b)
	}
	if p.rest != nil {
		return errTwoOffers
	}
	rest, err := p.out.Offer(b)
	p.rest = rest
	return err
}

// noRest moves a flush to a goroutine of its own before anything of the batch was written.
func noRest() error { return nil }

// sendPending sends everything after the cursor; end, when set, is why the connection ends
// now that its last items were sent: the group ended (its dissolve item) or the reader's node
// left it (its own leave item: nothing after it is ever sent). On a worker it stops at the
// first batch that is not for a worker (see flush) and returns what is left of it as rest.
func (p *pump) sendPending() (end live.Reason, rest func() error, err error) {
	bp := p.s.frames.Get().(*[]byte)
	buf := (*bp)[:0]
	defer func() { *bp = buf[:0]; p.s.frames.Put(bp) }()
	for {
		b, err := p.sub.Read(p.out.Context(), p.since, streamBatch)
		if err != nil {
			return live.Reason{}, nil, err
		}
		if len(b.Items) == 0 && !b.Truncated && b.Gone == "" {
			p.since = b.Next
			p.wrote()
			return live.Reason{}, nil, nil
		}
		if !p.mayWait && (b.Truncated || b.Ended || b.Gone != "") {
			return live.Reason{}, noRest, nil
		}
		if len(b.Items) > 0 || b.Truncated {
			if buf, err = p.write(buf[:0], b); err != nil {
				p.rest = nil // an error is final: nothing is left to finish
				return live.Reason{}, nil, err
			}
		}
		p.s.delivered(p.transport, b.Items)
		p.since = b.Next
		switch {
		case b.Gone != "":
			return live.NodeGone(b.Gone), nil, nil
		case b.Ended:
			return live.Ended, nil, nil
		}
		if p.rest != nil {
			p.s.obs.ObserveSlowWrite(p.transport)
			rest, p.rest = p.rest, nil
			return live.Reason{}, rest, nil
		}
		p.wrote()
	}
}
