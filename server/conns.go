package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"meshbox/apierror"
	"meshbox/auth"
	"meshbox/live"
)

// The connection budget keeps the box usable when clients hoard connections (idle keep-alive,
// unfinished requests, thousands of streams): every connection the server holds costs a file
// descriptor and a slot, and one laptop must not take them from the class and the teacher.
//
// Every connection counts toward its client address from its accept until it closes, whatever
// it does meanwhile: waiting for its first request, idle between requests (keep-alive), in a
// request, or hijacked as a WebSocket or SSE stream (ConnState cannot see those close, so the
// count is kept here, on Close). Three rules decide who holds a slot:
//
//   - The per-address cap (--max-conns-per-ip). An address at its cap that opens another
//     connection trades its own oldest idle keep-alive connection for it (a browser just
//     reopens one); with none idle, the new connection goes on the reserve (below) and is
//     answered 429 too_many_connections, unless it carries the teacher's token.
//   - Fair shares under pressure. Once the budget (--max-conns) is nearly full, a connection
//     from a lighter address closes an idle connection (idle keep-alive, one that never sent
//     a request, one stuck in its request's headers) of the heaviest address that has one,
//     oldest first. Once the budget is full and no such connection is left, it closes the
//     oldest stream (WebSocket 1013, SSE busy event: live.Busy) of the heaviest address at
//     least as heavy as its own that holds at least a fair share (the budget over the
//     addresses holding connections). Requests in progress and long-polls are never cut:
//     they end by themselves.
//   - The reserve. Past the budget (no connection could be freed) or past the cap, a few more
//     connections (reserveConns, at most reservePerAddr per address) are accepted, but each
//     serves only what must always work: the probes (/healthz, /readyz, /metrics), the
//     dashboard's public page and its static files, and any request with the admin token — a
//     connection that carries it is the teacher's and is kept (up to teacherConns of them:
//     the dashboard's stream and its calls). Any other request gets 503 busy (429 past the
//     cap). A reserved connection serves one request and is closed, and all its deadlines are
//     clamped to reserveWindow from its accept, so hoarders cannot keep the reserve. Past
//     budget plus reserve, connections are closed as soon as they are accepted, so the
//     descriptors never run out.
//
// Behind a trusted proxy (--trust-proxy) every connection comes from the proxy, so the cap is
// not applied to TCP peers: the proxy is one peer carrying the whole class, and it pools its
// idle connections (which pressure still closes first). The per-address share is then the
// streams' (live.Manager counts them per forwarded address under the same cap), and the
// proxy's own per-client connection limit is the connection-level one.
//
// Health is served on the same listener, with priority, rather than on a second port: a
// monitor, a container health check and `meshbox healthcheck` keep using the one address.
const (
	reserveConns   = 32
	reservePerAddr = reserveConns / 8 // so a handful of hoarders cannot take the whole reserve
	teacherConns   = reserveConns / 2 // the rest stays for the probes
	reserveWindow  = 5 * time.Second
)

// terms are what a connection was accepted on.
type terms uint8

const (
	onBudget   terms = iota // a slot of the budget: served as usual
	pastBudget              // on the reserve: the budget is full
	pastCap                 // on the reserve: its address is at its cap
)

// connBudget counts the open connections, per client address, against the budget.
type connBudget struct {
	budget     int
	perAddr    int  // the per-address cap; 0 is none
	trustProxy bool // the TCP peer is a proxy: no cap per peer
	// evictStream closes the oldest stream of an address (live.Manager.Evict).
	evictStream func(addr string) bool
	log         *slog.Logger

	// open is every counted connection, read without the lock; seq orders connections'
	// state changes, so the one idle longest is closed first.
	open atomic.Int64
	seq  atomic.Uint64

	mu       sync.Mutex
	addrs    map[string]*addrConns
	onBudget int // connections on budget terms (may pass the budget while evicted ones close)
	reserved int // connections on the reserve
	teacher  int // reserved connections that carried the admin token
}

// addrConns are the connections of one client address.
type addrConns struct {
	conns    map[*budgetConn]struct{} // on budget terms
	reserved int
}

// connKey is the context key of a request's *budgetConn.
type connKey struct{}

// budgetListener accepts connections within the budget.
type budgetListener struct {
	net.Listener
	b *connBudget
}

func (l budgetListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if bc := l.b.admit(c); bc != nil {
			return bc, nil
		}
		c.Close()
	}
}

// budgetConn is one counted connection.
type budgetConn struct {
	net.Conn
	b     *connBudget
	addr  string
	terms terms
	until time.Time // a reserved connection's deadlines never pass this, unless it is the teacher's

	state   atomic.Int32  // its http.ConnState
	since   atomic.Uint64 // the budget's seq at its last state change
	serving atomic.Bool   // a request of it reached the handlers and has not finished
	teacher atomic.Bool   // reserved, and it carried the admin token: kept, deadlines free

	counted bool // guarded by b.mu: still counted
}

// peerIP is the connection's client address as the budget counts it.
func peerIP(c net.Conn) string {
	if tcp, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// admit decides the terms of a new connection, closing another to make room when fairness
// asks for it; nil means refused (past budget plus reserve).
func (b *connBudget) admit(c net.Conn) *budgetConn {
	bc := &budgetConn{Conn: c, b: b, addr: peerIP(c)}
	bc.state.Store(int32(http.StateNew))
	bc.since.Store(b.seq.Add(1))
	var idle *budgetConn // to close, once the lock is released
	b.mu.Lock()
	a := b.addrs[bc.addr]
	if a == nil {
		a = &addrConns{conns: map[*budgetConn]struct{}{}}
		b.addrs[bc.addr] = a
	}
	n := len(a.conns)
	bc.terms = onBudget
	switch {
	case b.perAddr > 0 && !b.trustProxy && n >= b.perAddr:
		// At its cap: its own connection that did its work makes way for this one.
		if idle = a.oldestIdle(true); idle == nil {
			bc.terms = pastCap
		}
	case b.onBudget >= b.budget+reserveConns:
		// So many evicted connections are still closing that nothing more goes on budget.
		bc.terms = pastBudget
	case b.onBudget >= b.budget-b.slack():
		// Under pressure: a lighter address's connection costs the heaviest an idle one.
		// When the budget is full, a new connection needs that slot (or a stream's).
		full := b.onBudget >= b.budget
		if idle = b.idleVictim(bc.addr, n, full); idle == nil && full {
			if !b.evictStreamFor(bc.addr, n) {
				bc.terms = pastBudget
			}
		}
	}
	if idle != nil {
		b.forgetLocked(idle)
	}
	if bc.terms != onBudget && (b.reserved >= reserveConns || a.reserved >= reservePerAddr) {
		// No connection was closed for this one (idle is nil off budget terms).
		if len(a.conns) == 0 && a.reserved == 0 {
			delete(b.addrs, bc.addr)
		}
		b.mu.Unlock()
		return nil
	}
	b.addrs[bc.addr] = a // again: closing its own idle connection may have dropped the entry
	if bc.terms == onBudget {
		a.conns[bc] = struct{}{}
		b.onBudget++
	} else {
		a.reserved++
		b.reserved++
		bc.until = time.Now().Add(reserveWindow)
		_ = c.SetDeadline(bc.until)
	}
	bc.counted = true
	b.open.Add(1)
	b.mu.Unlock()
	if idle != nil {
		b.log.Debug("closed an idle connection to make room", "addr", idle.addr, "for", bc.addr)
		idle.Conn.Close() // its server goroutine sees the read fail and ends
	}
	return bc
}

// slack is how far below the budget pressure starts: idle connections of heavy addresses are
// closed a little before the budget is full, so a burst of new connections still finds room.
func (b *connBudget) slack() int { return max(b.budget/16, 1) }

// oldestIdle is the address's connection idle longest that may be closed for a connection of
// the same address (own) or of another. Its own connection is closed only once it served a
// request (it is idle between requests): one that has not sent its first request yet may be
// the browser's next one, and trading it for this one would gain nothing.
func (a *addrConns) oldestIdle(own bool) *budgetConn {
	var best *budgetConn
	for c := range a.conns {
		if c.idle(own) && (best == nil || c.since.Load() < best.since.Load()) {
			best = c
		}
	}
	return best
}

// idle reports whether the connection holds its slot while doing nothing.
func (c *budgetConn) idle(own bool) bool {
	switch http.ConnState(c.state.Load()) {
	case http.StateIdle:
		return true
	case http.StateNew:
		return !own // no request yet: a slowloris, or a browser's spare
	case http.StateActive:
		return !own && !c.serving.Load() // still sending its headers
	}
	return false
}

// idleVictim picks an idle connection of the heaviest address that has one and is heavier
// than addr (holding n), or, when the budget is full, at least as heavy (addr itself
// included: its own idle one makes way).
func (b *connBudget) idleVictim(addr string, n int, full bool) *budgetConn {
	var best *budgetConn
	bestN := -1
	for x, a := range b.addrs {
		m := len(a.conns)
		if m <= bestN || m < n || (m == n && !full) || (x == addr && !full) {
			continue
		}
		if c := a.oldestIdle(x == addr); c != nil {
			best, bestN = c, m
		}
	}
	return best
}

// evictStreamFor closes the oldest stream of the heaviest other address that holds at least
// as many connections as addr (holding n) and at least a fair share of the budget, and
// reports whether one was found. The stream closes on its own goroutine: until it has, the
// new connection is on budget beside it.
func (b *connBudget) evictStreamFor(addr string, n int) bool {
	if b.evictStream == nil {
		return false
	}
	// The addresses holding connections, addr among them (admit made its entry).
	fair := b.budget / max(len(b.addrs), 1)
	type candidate struct {
		addr string
		n    int
	}
	var cs []candidate
	for x, a := range b.addrs {
		if m := len(a.conns); x != addr && m >= n && m >= fair {
			cs = append(cs, candidate{x, m})
		}
	}
	slices.SortFunc(cs, func(p, q candidate) int { return cmp.Compare(q.n, p.n) })
	for _, c := range cs {
		if b.evictStream(c.addr) {
			b.log.Debug("closed a stream to make room", "addr", c.addr, "conns", c.n, "fair", fair, "for", addr)
			return true
		}
	}
	return false
}

// forgetLocked stops counting c; b.mu is held.
func (b *connBudget) forgetLocked(c *budgetConn) {
	if !c.counted {
		return
	}
	c.counted = false
	a := b.addrs[c.addr]
	if c.terms == onBudget {
		delete(a.conns, c)
		b.onBudget--
	} else {
		a.reserved--
		b.reserved--
		if c.teacher.Load() {
			b.teacher--
		}
	}
	if len(a.conns) == 0 && a.reserved == 0 {
		delete(b.addrs, c.addr)
	}
	b.open.Add(-1)
}

// promote makes a reserved connection that carried the admin token the teacher's: it is kept
// and its deadlines are its own again, so the dashboard's stream stays open. It reports false
// when the teacher already holds teacherConns of the reserve.
func (b *connBudget) promote(c *budgetConn) bool {
	if c.teacher.Load() {
		return true
	}
	b.mu.Lock()
	ok := c.counted && b.teacher < teacherConns
	if ok {
		b.teacher++
		c.teacher.Store(true)
	}
	b.mu.Unlock()
	if ok {
		// The server set its deadlines for this request through clamp; they are lifted now
		// and set afresh (unclamped) for the next.
		_ = c.Conn.SetDeadline(time.Time{})
	}
	return ok
}

func (c *budgetConn) Close() error {
	c.b.mu.Lock()
	c.b.forgetLocked(c)
	c.b.mu.Unlock()
	return c.Conn.Close()
}

// SyscallConn hands out the network connection's descriptor: the hijacked connections of
// WebSocket and SSE streams write to it without waiting (live's Offer).
func (c *budgetConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return sc.SyscallConn()
}

func (c *budgetConn) clamp(t time.Time) time.Time {
	if c.terms != onBudget && !c.teacher.Load() && (t.IsZero() || t.After(c.until)) {
		return c.until
	}
	return t
}

func (c *budgetConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.clamp(t)) }
func (c *budgetConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.clamp(t))
}
func (c *budgetConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.clamp(t))
}

// Listen wraps ln so that it accepts connections within the server's connection budget; the
// http.Server must also use ConnContext and ConnState.
func (s *Server) Listen(ln net.Listener) net.Listener {
	return budgetListener{Listener: ln, b: s.conns}
}

// ConnContext is the http.Server's ConnContext: it lets requests know their connection.
func (s *Server) ConnContext(ctx context.Context, c net.Conn) context.Context {
	if bc, ok := c.(*budgetConn); ok {
		return context.WithValue(ctx, connKey{}, bc)
	}
	return ctx
}

// ConnState is the http.Server's ConnState: it tells the budget which connections are idle,
// the ones closed first under pressure.
func (s *Server) ConnState(c net.Conn, st http.ConnState) {
	bc, ok := c.(*budgetConn)
	if !ok {
		return
	}
	if st == http.StateIdle {
		bc.serving.Store(false)
	}
	bc.since.Store(s.conns.seq.Add(1))
	bc.state.Store(int32(st))
}

// OpenConns is the number of connections counted against the budget.
func (s *Server) OpenConns() int { return int(s.conns.open.Load()) }

// ConnsFrom is how many connections client address addr holds on budget terms, and how many
// of them are idle between requests.
func (s *Server) ConnsFrom(addr string) (open, idle int) {
	s.conns.mu.Lock()
	defer s.conns.mu.Unlock()
	a := s.conns.addrs[addr]
	if a == nil {
		return 0, 0
	}
	for c := range a.conns {
		if http.ConnState(c.state.Load()) == http.StateIdle {
			idle++
		}
	}
	return len(a.conns), idle
}

// isDashboardPage reports whether r asks for the dashboard's page or one of its static files:
// public, cheap (embedded, with ETags) and what a teacher's browser needs before it can send
// the admin token at all.
func isDashboardPage(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	return p == "/" || p == "/favicon.svg" || strings.HasPrefix(p, "/assets/")
}

// priority serves a reserved connection's probe, dashboard page or teacher's request and
// refuses anything else on it.
func (s *Server) priority(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bc, _ := r.Context().Value(connKey{}).(*budgetConn)
		if bc == nil {
			next.ServeHTTP(w, r)
			return
		}
		bc.serving.Store(true) // no longer a connection stuck in its headers
		if bc.terms == onBudget {
			next.ServeHTTP(w, r)
			return
		}
		if s.admin.Match(auth.Token(r, nil)) && s.conns.promote(bc) {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close") // one request, then the reserve is free again
		if isProbe(r.URL.Path) || isDashboardPage(r) {
			next.ServeHTTP(w, r)
			return
		}
		if bc.terms == pastCap {
			s.writeError(w, r, live.ErrTooManyConns)
			return
		}
		s.writeError(w, r, &apierror.Error{Status: http.StatusServiceUnavailable, Code: "busy",
			Msg: "the server is at its connection limit; retry shortly", RetryAfter: 5 * time.Second})
	})
}
