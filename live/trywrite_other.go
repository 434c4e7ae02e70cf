//go:build !unix

package live

// tryFD takes nothing where descriptors are not Unix ones: every write is left to the
// waiting path.
func (f *frameBuf) tryFD(uintptr) bool { f.n = 0; return true }

// shutdownWrite does nothing where descriptors are not Unix ones: the lingering close only
// reads until the client's end.
func shutdownWrite(uintptr) {}
