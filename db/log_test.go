package db

import (
	"context"
	"path/filepath"
	"testing"

	"meshbox/stream"
	"meshbox/stream/logtest"
)

// failingLog is the SQLite log with the suite's failure injection: the next commit fails
// after the batch is written, through the log's commit hook.
type failingLog struct{ *Log }

// FailNextCommit makes the next Append roll back with err.
func (l failingLog) FailNextCommit(err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.commitHook = func() error {
		l.commitHook = nil // runs under wmu, in Append
		return err
	}
}

func openTestLog(t testing.TB, path string, opts Options) *Log {
	t.Helper()
	l, err := Open(context.Background(), path, opts)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	return l
}

func TestLogConformance(t *testing.T) {
	t.Parallel()
	logtest.Run(t, func(t *testing.T, dir string) stream.Log {
		return failingLog{openTestLog(t, filepath.Join(dir, "meshbox.db"), Options{})}
	})
}
