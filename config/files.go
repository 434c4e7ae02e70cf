package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// CheckDatabase tells, before SQLite opens the database, the file problems a teacher can fix in
// words rather than SQLite codes ("unable to open database file (14)"): a folder that does not
// exist, a path that is a folder, a folder or file this user cannot write. SQLite keeps its
// journal files (-wal, -shm) beside the database, so the folder must be writable too. The
// answer is an *Error naming the setting as it was given.
func (c Config) CheckDatabase() error {
	path := c.DB
	if strings.HasPrefix(path, "file:") || path == ":memory:" {
		return nil // an SQLite URI: its options are SQLite's business
	}
	fail := func(problem, accepted string) error {
		return &Error{Setting: c.Source("db"), Value: path, Problem: problem, Accepted: accepted}
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return fail("is a folder, not a file", "name a file inside it, such as "+filepath.Join(path, "meshbox.db"))
	case err == nil:
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
				return fail("is a file "+whoAmI()+" cannot write", "give this user write permission on it, or choose another file")
			}
			return fail("cannot be opened ("+err.Error()+")", "choose another file")
		}
		f.Close()
	case errors.Is(err, fs.ErrNotExist):
		if _, derr := os.Stat(dir); errors.Is(derr, fs.ErrNotExist) {
			return fail("is in a folder that does not exist ("+dir+")", "create the folder first, or choose a file in an existing folder")
		}
	case errors.Is(err, syscall.ENOTDIR):
		return fail("is inside a file, not a folder", "choose a file in a folder, such as ./meshbox.db")
	case errors.Is(err, fs.ErrPermission):
		return fail("is in a folder "+whoAmI()+" cannot open ("+dir+")", "give this user access to the folder, or choose another folder")
	default:
		return fail("cannot be checked ("+err.Error()+")", "choose another file")
	}
	probe, err := os.CreateTemp(dir, ".meshbox-write-check-*")
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return fail("is in a folder "+whoAmI()+" cannot write ("+dir+")", "SQLite keeps its journal files beside the database: give this user write permission on the folder "+
				fmt.Sprintf("(in a container with a bind mount: chown %d:%d the host folder, or use a named volume)", os.Getuid(), os.Getgid())+", or choose another folder")
		}
		return fail("is in a folder that cannot be written ("+err.Error()+")", "choose another folder")
	}
	probe.Close()
	os.Remove(probe.Name())
	return nil
}

// whoAmI names the user this process runs as, as a teacher would look it up.
func whoAmI() string {
	uid := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "this user (" + u.Username + ", uid " + uid + ")"
	}
	return "this user (uid " + uid + ")"
}

// CheckSmalruby tells, before the editor is opened, what is wrong with the --smalruby path
// in words a teacher can act on.
func (c Config) CheckSmalruby() error {
	if c.Smalruby == "" {
		return nil
	}
	fail := func(problem, accepted string) error {
		return &Error{Setting: c.Source("smalruby"), Value: c.Smalruby, Problem: problem, Accepted: accepted}
	}
	fi, err := os.Stat(c.Smalruby)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fail("does not exist", "give the editor's ZIP (GitHub's \"Download ZIP\" of smalruby/smalruby.app) or its unpacked folder")
	case errors.Is(err, fs.ErrPermission):
		return fail("cannot be read by "+whoAmI(), "give this user read permission on it")
	case err != nil:
		return fail("cannot be read ("+err.Error()+")", "choose another file")
	case !fi.IsDir() && !strings.EqualFold(filepath.Ext(c.Smalruby), ".zip"):
		return fail("is neither a folder nor a .zip file", "give the editor's ZIP or its unpacked folder")
	}
	return nil
}
