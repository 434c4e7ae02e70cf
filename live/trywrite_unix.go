//go:build unix

package live

import "syscall"

// tryFD is what RawConn.Write calls for writeNow: one write of f.b that returns at once
// (the descriptor is non-blocking, as every descriptor of Go's network poller is). It is
// bound once per pooled buffer, so a try allocates nothing.
func (f *frameBuf) tryFD(fd uintptr) bool {
	for {
		n, err := syscall.Write(int(fd), f.b)
		switch err {
		case nil:
			f.n = n
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			f.n = 0 // the socket's buffer is full: nothing was taken
		default:
			f.err = err
		}
		return true // never wait for the socket: the caller decides
	}
}

// shutdownWrite ends the sending side of a connection (TCP FIN after what is queued), for
// RawConn.Control: the lingering close.
func shutdownWrite(fd uintptr) { _ = syscall.Shutdown(int(fd), syscall.SHUT_WR) }
