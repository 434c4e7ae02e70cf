package server

import (
	"context"
	"errors"
	"meshbox/apierror"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The connection budget keeps the box observable when clients hoard connections (slow
// bodies, idle sockets, thousands of streams): every connection the server holds costs a file
// descriptor, and once the process runs out of them nothing can be accepted any more, not even
// a health probe.
//
// The budget counts every open connection, WebSocket and other hijacked ones included (they
// are counted until closed, which ConnState cannot see). Up to the budget, connections are
// served as usual. Past it, a reserve of a few more is accepted, but each reserved connection
// serves only /healthz, /readyz and /metrics; anything else gets 503 with Retry-After. A
// reserved connection serves one request and is closed, and all its deadlines are clamped to
// reserveWindow from its accept, so hoarders cannot keep the reserve: to hold it they would
// have to reconnect continuously, and a probe lands between them. Past budget plus reserve,
// connections are closed as soon as they are accepted, so the descriptors never run out.
// Health is served on the same listener, with priority, rather than on a second port: a
// monitor, a container health check and `meshbox healthcheck` keep using the one address.
const (
	reserveConns  = 32
	reserveWindow = 5 * time.Second
)

// connBudget counts the open connections against the budget.
type connBudget struct {
	budget int64
	open   atomic.Int64
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
		n := l.b.open.Add(1)
		if n > l.b.budget+reserveConns {
			l.b.open.Add(-1)
			c.Close()
			continue
		}
		bc := &budgetConn{Conn: c, b: l.b}
		if n > l.b.budget {
			bc.reserved = true
			bc.until = time.Now().Add(reserveWindow)
			_ = c.SetDeadline(bc.until)
		}
		return bc, nil
	}
}

// budgetConn is one counted connection.
type budgetConn struct {
	net.Conn
	b        *connBudget
	reserved bool
	until    time.Time // a reserved connection's deadlines never pass this
	once     sync.Once
}

func (c *budgetConn) Close() error {
	c.once.Do(func() { c.b.open.Add(-1) })
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
	if c.reserved && (t.IsZero() || t.After(c.until)) {
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
// http.Server must also use ConnContext.
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

// OpenConns is the number of connections counted against the budget.
func (s *Server) OpenConns() int { return int(s.conns.open.Load()) }

// priority serves a reserved connection's probe and refuses anything else on it.
func (s *Server) priority(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bc, _ := r.Context().Value(connKey{}).(*budgetConn)
		if bc == nil || !bc.reserved {
			next.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Connection", "close") // one request, then the reserve is free again
		if isProbe(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		s.writeError(w, r, &apierror.Error{Status: http.StatusServiceUnavailable, Code: "busy",
			Msg: "the server is at its connection limit; retry shortly", RetryAfter: 5 * time.Second})
	})
}
