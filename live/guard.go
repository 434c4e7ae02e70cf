package live

import (
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// watched is a hijacked connection the manager's ticker looks after: a WebSocket (pinged each
// interval) or an SSE stream (sent its heartbeat). Either is dropped when a write stalls.
type watched interface {
	guard() *writeGuard
	tick(every time.Duration)
	Drop(why Reason)
	// Close ends the connection telling the client why (a close frame, an SSE goodbye).
	Close(why Reason)
}

// writeGuard serialises a hijacked connection's writes and times the one in progress, so the
// manager's ticker can flag a connection whose peer stopped reading and then drop it. A
// write arms no timer of its own: one ticker checks every connection.
type writeGuard struct {
	// wmu serialises writes. writeStart is when the write holding wmu began (unix nanos, 0
	// when none): set and cleared under wmu, so a concurrent writer (an ack beside a flush)
	// waits for the lock and cannot clear the start of a stalled write.
	wmu        sync.Mutex
	writeStart atomic.Int64
	waiting    atomic.Int32 // writers waiting for wmu (tests observe it)
	// flagged is set while the connection's Link is told it stalled; the write's end clears it.
	flagged atomic.Bool
}

func (g *writeGuard) guard() *writeGuard { return g }

// write runs one write of c's under the guard.
func (g *writeGuard) write(c *Conn, w func() error) error {
	g.lockWrite()
	defer g.unlockWrite(c)
	return w()
}

// lockWrite takes the guard for a write and starts timing it.
func (g *writeGuard) lockWrite() {
	g.waiting.Add(1)
	g.wmu.Lock()
	g.waiting.Add(-1)
	g.writeStart.Store(time.Now().UnixNano())
}

// unlockWrite stops timing the write, clears a stall it was flagged for, and releases the guard.
func (g *writeGuard) unlockWrite(c *Conn) {
	g.writeStart.Store(0)
	if g.flagged.Load() && g.flagged.CompareAndSwap(true, false) {
		if l := c.link.Load(); l != nil {
			l.Stalled(false)
		}
	}
	g.wmu.Unlock()
}

// tryLockWrite takes the guard for a write if no other write holds it.
func (g *writeGuard) tryLockWrite() bool {
	if !g.wmu.TryLock() {
		return false
	}
	g.writeStart.Store(time.Now().UnixNano())
	return true
}

// offer writes f.b (a pooled buffer it takes over) as far as the connection's socket buffer
// takes it at once, waiting neither for the peer nor for another write in progress. When all
// of it went out, finish is nil. Otherwise finish writes the rest (or all of it, after the
// write in progress), waiting as write does; the caller runs it on a goroutine that may wait,
// and nothing else is written on c until it returns. closed (nil: never) refuses the write
// once true: a WebSocket after its close frame.
func (g *writeGuard) offer(c *Conn, nc net.Conn, raw syscall.RawConn, f *frameBuf, closed *atomic.Bool) (finish func() error, err error) {
	if !g.tryLockWrite() {
		return func() error {
			g.lockWrite()
			defer c.m.putFrame(f)
			defer g.unlockWrite(c)
			if closed != nil && closed.Load() {
				return errClosing
			}
			_, err := nc.Write(f.b)
			return err
		}, nil
	}
	n := 0
	if closed != nil && closed.Load() {
		err = errClosing
	} else {
		n, err = f.writeNow(raw)
	}
	if err != nil || n == len(f.b) {
		g.unlockWrite(c)
		c.m.putFrame(f)
		return nil, err
	}
	// The guard stays taken: the ticker times the rest of this write from its first try.
	return func() error {
		defer c.m.putFrame(f)
		defer g.unlockWrite(c)
		_, err := nc.Write(f.b[n:])
		return err
	}, nil
}

// flagStalled tells c's Link that its writes block (called by the ticker).
func (g *writeGuard) flagStalled(c *Conn) {
	if g.flagged.CompareAndSwap(false, true) {
		if l := c.link.Load(); l != nil {
			l.Stalled(true)
		}
		// The write may have ended between the check and the flag: look again.
		if g.writeStart.Load() == 0 && g.flagged.CompareAndSwap(true, false) {
			if l := c.link.Load(); l != nil {
				l.Stalled(false)
			}
		}
	}
}

// stalled reports a write that has been blocked for longer than d.
func (g *writeGuard) stalled(now time.Time, d time.Duration) bool {
	start := g.writeStart.Load()
	return start != 0 && now.Sub(time.Unix(0, start)) > d
}

// ending is how a hijacked connection ends: once, for a Reason that is kept.
type ending struct {
	once   sync.Once
	reason atomic.Pointer[Reason]
}

// end runs f once, the first time the connection ends, and records why.
func (e *ending) end(why Reason, f func()) {
	e.once.Do(func() {
		e.reason.Store(&why)
		f()
	})
}

// Reason is why the connection ended, once it has; the zero Reason before.
func (e *ending) Reason() Reason {
	if r := e.reason.Load(); r != nil {
		return *r
	}
	return Reason{}
}

// frameBuf is a pooled buffer a write is built in: header and payload go out in one syscall,
// and an idle connection holds none. It is the io.Writer gobwas/ws writes a frame header to,
// with the scratch space that needs, so a delivery allocates nothing.
type frameBuf struct {
	b   []byte
	hdr [ws.MaxHeaderSize]byte
	// A try to write b without waiting (writeNow): its callback, bound once, and its outcome.
	try func(fd uintptr) bool
	n   int
	err error
}

// rawOf returns nc's descriptor, or nil when it has none a write can be tried on.
func rawOf(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return raw
}

// writeNow writes what of f.b the connection's socket takes at once (raw nil: nothing) and
// returns how much that was.
func (f *frameBuf) writeNow(raw syscall.RawConn) (int, error) {
	if raw == nil {
		return 0, nil
	}
	f.n, f.err = 0, nil
	if err := raw.Write(f.try); err != nil {
		return 0, err
	}
	return f.n, f.err
}

// Write appends p.
func (f *frameBuf) Write(p []byte) (int, error) {
	f.b = append(f.b, p...)
	return len(p), nil
}

// frame takes a buffer from the pool, emptied; give it back with putFrame.
func (m *Manager) frame() *frameBuf {
	f := m.frames.Get().(*frameBuf)
	f.b = f.b[:0]
	return f
}

func (m *Manager) putFrame(f *frameBuf) { m.frames.Put(f) }
