//go:build unix

package server

import "syscall"

// openFileLimit is the process's limit on open files (Go raises the soft limit to the hard one
// at start-up), or 0 when unknown.
func openFileLimit() int64 {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil || l.Cur > 1<<30 {
		return 0
	}
	return int64(l.Cur)
}
