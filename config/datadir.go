package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckDatabaseDir makes sure the database file can be created and written before SQLite tries
// (whose own error, "unable to open database file (14)", names neither the directory nor the
// user). It returns an error that says which user cannot write where, and how to fix it. A
// missing directory is created, as SQLite would need it.
func CheckDatabaseDir(dbPath string) error {
	dir := filepath.Dir(dbPath)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return unwritable(dir, err)
	}
	if f, err := os.OpenFile(dbPath, os.O_RDWR, 0); err == nil {
		f.Close()
	} else if !errors.Is(err, fs.ErrNotExist) {
		return unwritable(dbPath, err)
	}
	// SQLite also creates the -wal and -shm files beside the database, so the directory itself
	// must be writable, not only an existing file.
	f, err := os.CreateTemp(dir, ".meshbox-write-check-*")
	if err != nil {
		return unwritable(dir, err)
	}
	name := f.Name()
	f.Close()
	if err := os.Remove(name); err != nil {
		return unwritable(dir, err)
	}
	return nil
}

// unwritable explains a database location this process cannot write.
func unwritable(path string, err error) error {
	return fmt.Errorf("database location %s is not writable by this process (uid %d, gid %d): %w\n"+
		"  fix: make it writable for that user, for example `chown %d:%d <the host directory>` for a bind mount,\n"+
		"  or use a named volume (docker/podman run -v meshbox-data:/data …), or point --db / MESHBOX_DB elsewhere",
		path, os.Getuid(), os.Getgid(), err, os.Getuid(), os.Getgid())
}
