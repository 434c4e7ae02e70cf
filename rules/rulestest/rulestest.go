// Package rulestest opens the group rules over a real SQLite log in a test's temporary
// directory, the way package app does, for the tests of the packages above the rules.
package rulestest

import (
	"context"
	"path/filepath"
	"testing"

	"meshbox/db"
	"meshbox/rules"
)

// Open opens the SQLite log at path (a new file in t.TempDir() when empty) and the rules over
// it, not yet started. Both are closed when the test ends.
func Open(t testing.TB, path string, opts rules.Options) *rules.Engine {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "meshbox.db")
	}
	lg, err := db.Open(context.Background(), path, db.Options{Now: opts.Now})
	if err != nil {
		t.Fatal(err)
	}
	e, err := rules.New(context.Background(), lg, opts)
	if err != nil {
		lg.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
		if err := lg.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}
