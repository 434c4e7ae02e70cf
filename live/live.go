// Package live manages the life of every long-lived connection meshbox holds: native
// WebSocket, SSE and long-poll streams, the Mesh v2 (AppSync) real-time socket and the
// dashboard stream. It registers each connection, charges it to its client address (one
// per-address cap for all of them), gives it a context that ends with the request or at
// shutdown, pings WebSocket peers and drops those whose writes stall, bounds every write, and
// ends connections with distinct close codes and reasons. The transports are thin adapters
// that only speak their protocol over it.
package live

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTooManyConns means the client address holds as many long-lived connections as it may.
var ErrTooManyConns = errors.New("too many open connections from this address")

// ErrShuttingDown means the server is shutting down and accepts no new connection.
var ErrShuttingDown = errors.New("meshbox is shutting down")

// Observer counts open connections per transport and records their round trips; package
// metrics implements it.
type Observer interface {
	ConnOpened(transport string)
	ConnClosed(transport string)
	ObserveRTT(transport string, d time.Duration)
}

type noopObserver struct{}

func (noopObserver) ConnOpened(string)                {}
func (noopObserver) ConnClosed(string)                {}
func (noopObserver) ObserveRTT(string, time.Duration) {}

// Link receives what the manager learns of one connection's link: round trips (measure
// names what was timed) and whether its socket stopped reading. A hub.Sub is one.
type Link interface {
	ObserveRTT(measure string, d time.Duration)
	Stalled(stalled bool)
}

// linkBox holds a Link for an atomic pointer.
type linkBox struct{ Link }

// Config holds the connection policy.
type Config struct {
	// MaxPerAddr bounds the long-lived connections of one client address; 0 is unlimited.
	MaxPerAddr int
	// PingInterval is how often WebSocket peers are pinged (a peer must answer within the next
	// interval) and SSE streams get their heartbeat. 0 means 20 s.
	PingInterval time.Duration
	// WriteTimeout bounds one write: a WebSocket or SSE write blocked for longer (and longer
	// than a ping interval) marks a slow client, which is dropped. 0 means 15 s.
	WriteTimeout time.Duration
	// Observer counts connections; nil counts nothing.
	Observer Observer
}

// Manager is the registry of long-lived connections. Its context is the server's: when it is
// cancelled (shutdown) every connection ends, WebSockets with 1012, and no new one opens.
type Manager struct {
	ctx context.Context
	cfg Config

	// Every long-poll opens and closes a connection, so nothing on that path takes a lock
	// all connections share: the per-address counts are atomic, and the connections (for
	// their shutdown) are spread over shards.
	perAddr sync.Map // client address → *addrCount
	shards  [connShards]connShard
	next    atomic.Uint32  // the shard of the next connection
	opened  atomic.Uint64  // connections opened so far: orders them, oldest first (Evict)
	active  sync.WaitGroup // every connection not yet closed

	mu      sync.Mutex
	watched map[watched]*Conn // hijacked connections: WebSockets and SSE streams
	frames  sync.Pool         // *frameBuf: where WebSocket frames and SSE chunks are built
}

// connShards is how many shards the registry of connections has.
const connShards = 32

// connShard holds some of the open connections and what each does at shutdown.
type connShard struct {
	mu     sync.Mutex
	closed bool // shutdown swept this shard: no connection registers here any more
	conns  map[*Conn]func()
}

// addrCount is the number of connections of one client address; -1 marks an entry being
// removed (its count reached zero), which a new connection replaces rather than revives.
type addrCount struct{ n atomic.Int64 }

// New returns a manager whose connections end when ctx is cancelled. Run must be called for
// WebSocket pings and stall checks.
func New(ctx context.Context, cfg Config) *Manager {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 20 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 15 * time.Second
	}
	if cfg.Observer == nil {
		cfg.Observer = noopObserver{}
	}
	m := &Manager{ctx: ctx, cfg: cfg, watched: map[watched]*Conn{}}
	for i := range m.shards {
		m.shards[i].conns = map[*Conn]func(){}
	}
	m.frames.New = func() any {
		f := &frameBuf{b: make([]byte, 0, 1024)}
		f.try = f.tryFD
		return f
	}
	context.AfterFunc(ctx, m.shutdown)
	return m
}

// Context ends at shutdown.
func (m *Manager) Context() context.Context { return m.ctx }

// Conn is one registered long-lived connection. Close it when it ends.
type Conn struct {
	m         *Manager
	addr      string
	transport string
	ctx       context.Context
	cancel    context.CancelFunc
	shard     *connShard
	once      sync.Once
	link      atomic.Pointer[linkBox]
	seq       uint64      // when it opened, in the manager's order
	evicted   atomic.Bool // Evict chose it: it is closing
}

// SetLink has the connection's round trips and stalls reported to l (nil: to nobody).
func (c *Conn) SetLink(l Link) {
	if l == nil {
		c.link.Store(nil)
		return
	}
	c.link.Store(&linkBox{l})
}

// ObserveRTT records one round trip of the connection, timed as measure, for the metrics
// and the connection's Link.
func (c *Conn) ObserveRTT(measure string, d time.Duration) {
	c.m.ObserveRTT(c.transport, d)
	if b := c.link.Load(); b != nil {
		b.ObserveRTT(measure, d)
	}
}

// ObserveRTT records a round trip of transport measured outside a registered connection (a
// long-poll's gap between two requests).
func (m *Manager) ObserveRTT(transport string, d time.Duration) {
	m.cfg.Observer.ObserveRTT(transport, d)
}

// Open registers a connection of transport from client address addr (charged against the
// per-address cap; "" charges nothing, for connections that have reserved slots of their own).
// Its context ends with parent or at shutdown.
func (m *Manager) Open(parent context.Context, addr, transport string) (*Conn, error) {
	return m.open(parent, addr, transport, nil)
}

// open registers a connection; atShutdown (nil: cancel the context) runs when the server
// shuts down.
func (m *Manager) open(parent context.Context, addr, transport string, atShutdown func()) (*Conn, error) {
	if m.ctx.Err() != nil {
		return nil, ErrShuttingDown
	}
	if addr != "" && !m.charge(addr) {
		return nil, ErrTooManyConns
	}
	c := &Conn{m: m, addr: addr, transport: transport, shard: &m.shards[m.next.Add(1)%connShards], seq: m.opened.Add(1)}
	c.ctx, c.cancel = context.WithCancel(parent)
	if atShutdown == nil {
		atShutdown = c.cancel
	}
	c.shard.mu.Lock()
	if c.shard.closed {
		c.shard.mu.Unlock()
		c.cancel()
		if addr != "" {
			m.discharge(addr)
		}
		return nil, ErrShuttingDown
	}
	c.shard.conns[c] = atShutdown
	m.active.Add(1)
	c.shard.mu.Unlock()
	m.cfg.Observer.ConnOpened(transport)
	return c, nil
}

// shutdown runs every connection's shutdown action, each on its own goroutine (a WebSocket's
// waits for its upgrade to finish), and closes the registry to new connections.
func (m *Manager) shutdown() {
	for i := range m.shards {
		sh := &m.shards[i]
		sh.mu.Lock()
		sh.closed = true
		hooks := make([]func(), 0, len(sh.conns))
		for _, f := range sh.conns {
			hooks = append(hooks, f)
		}
		sh.mu.Unlock()
		for _, f := range hooks {
			go f()
		}
	}
}

// charge counts one more connection of addr, unless it has as many as it may.
func (m *Manager) charge(addr string) bool {
	for {
		v, ok := m.perAddr.Load(addr)
		if !ok {
			v, _ = m.perAddr.LoadOrStore(addr, new(addrCount))
		}
		a := v.(*addrCount)
		for {
			n := a.n.Load()
			if n < 0 {
				break // being removed: replace it
			}
			if m.cfg.MaxPerAddr > 0 && n >= int64(m.cfg.MaxPerAddr) {
				return false
			}
			if a.n.CompareAndSwap(n, n+1) {
				return true
			}
		}
		m.perAddr.CompareAndDelete(addr, a)
	}
}

// discharge counts one connection of addr less, and forgets an address with none.
func (m *Manager) discharge(addr string) {
	v, ok := m.perAddr.Load(addr)
	if !ok {
		return
	}
	a := v.(*addrCount)
	if a.n.Add(-1) == 0 && a.n.CompareAndSwap(0, -1) {
		m.perAddr.CompareAndDelete(addr, a)
	}
}

// Context ends with the connection's parent, at shutdown, or when the connection closes.
func (c *Conn) Context() context.Context { return c.ctx }

// ShuttingDown reports whether the server is shutting down (rather than the peer gone).
func (c *Conn) ShuttingDown() bool { return c.m.ctx.Err() != nil }

// Close unregisters the connection and frees its address slot; it is idempotent.
func (c *Conn) Close() {
	c.once.Do(func() {
		c.shard.mu.Lock()
		delete(c.shard.conns, c)
		c.shard.mu.Unlock()
		c.cancel()
		c.m.cfg.Observer.ConnClosed(c.transport)
		if c.addr != "" {
			c.m.discharge(c.addr)
		}
		c.m.active.Done()
	})
}

// Wait blocks until every connection has closed (they close at shutdown), or ctx ends.
func (m *Manager) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() { m.active.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		// Both may be ready at once: select picks at random, so look at done again.
		select {
		case <-done:
			return nil
		default:
			return fmt.Errorf("long-lived connections still open: %w", ctx.Err())
		}
	}
}

// Evict closes the oldest WebSocket or SSE stream charged to client address addr with Busy
// and reports whether there was one. The connection budget (server/conns.go) calls it when
// the server is full and addr holds more than its share, to make room for a connection from a
// lighter address. Streams charged to nobody (the teacher's dashboard) are never chosen, and
// neither are long-polls: they end within their wait by themselves. The close runs on a
// goroutine of its own, which ends within the close's write deadline (a second) whatever the
// client does, so the caller (the accept loop) never waits for a client.
func (m *Manager) Evict(addr string) bool {
	if addr == "" {
		return false
	}
	var victim watched
	var oldest *Conn
	m.mu.Lock()
	for w, c := range m.watched {
		if c.addr != addr || c.evicted.Load() {
			continue
		}
		if oldest == nil || c.seq < oldest.seq {
			victim, oldest = w, c
		}
	}
	if oldest != nil {
		oldest.evicted.Store(true)
	}
	m.mu.Unlock()
	if oldest == nil {
		return false
	}
	go victim.Close(Busy)
	return true
}

// watch has the ticker look after w, a hijacked connection registered as c.
func (m *Manager) watch(w watched, c *Conn) {
	m.mu.Lock()
	m.watched[w] = c
	m.mu.Unlock()
}

// unwatch forgets w.
func (m *Manager) unwatch(w watched) {
	m.mu.Lock()
	delete(m.watched, w)
	m.mu.Unlock()
}

// watchedConn is one entry of the ticker's snapshot.
type watchedConn struct {
	w watched
	c *Conn
}

func (m *Manager) snapshot() []watchedConn {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]watchedConn, 0, len(m.watched))
	for w, c := range m.watched {
		out = append(out, watchedConn{w, c})
	}
	return out
}

// Run looks after every hijacked connection from one goroutine until ctx ends: each interval
// it pings WebSocket peers, sends SSE streams their heartbeat, and drops connections that do
// not answer or whose writes stall. A dead peer is gone within two intervals. A write blocked
// for half an interval (or half the write timeout) at a check flags the connection's Link as
// stalled, which the dashboard shows; the write's end clears it. A stalled connection is
// dropped once its write has been blocked for an interval (or the write timeout) and it was
// flagged at an earlier check: within three intervals. Each ping is timed until its pong: that
// is the connection's round trip.
func (m *Manager) Run(ctx context.Context) {
	t := time.NewTicker(m.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m.check(now)
		}
	}
}

// check is one visit of Run's to every connection, at now.
func (m *Manager) check(now time.Time) {
	every := m.cfg.PingInterval
	flagAfter := min(every, m.cfg.WriteTimeout) / 2
	for _, e := range m.snapshot() {
		g := e.w.guard()
		if g.stalled(now, flagAfter) {
			// A stalled connection is shown stalled (its Link flagged) for at least one
			// interval before it is dropped, whatever the phase of its stall against the
			// ticker; meanwhile it gets no ping or heartbeat, which could not be written
			// anyway (and an unanswered ping would drop it unflagged).
			if g.flagged.Load() && g.stalled(now, max(every, m.cfg.WriteTimeout)) {
				e.w.Drop(Slow)
			} else {
				g.flagStalled(e.c)
			}
			continue
		}
		e.w.tick(every)
	}
}
