package live

import (
	"sync"

	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// watched is a hijacked connection the manager's ticker looks after: a WebSocket (pinged each
// interval) or an SSE stream (sent its heartbeat). Either is dropped when a write stalls.
type watched interface {
	guard() *writeGuard
	tick(every time.Duration)
	Drop(why Reason)
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
	g.waiting.Add(1)
	g.wmu.Lock()
	g.waiting.Add(-1)
	defer g.wmu.Unlock()
	g.writeStart.Store(time.Now().UnixNano())
	err := w()
	g.writeStart.Store(0)
	if g.flagged.Load() && g.flagged.CompareAndSwap(true, false) {
		if l := c.link.Load(); l != nil {
			l.Stalled(false)
		}
	}
	return err
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
