package db

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"modernc.org/sqlite"

	"meshbox/stream"
)

// Disk pressure shrinks retention, never the service. Three mechanisms:
//
//   - The size budget is SQLite's max_page_count on the writer connection: an append that would
//     grow the database file past it fails with SQLITE_FULL and changes nothing.
//   - Past highWater of the budget (in used pages: the file's pages minus its free list) the
//     purge deletes the oldest items whatever their age, down to lowWater, setting the usual
//     per-group purge marks so readers behind them are told they were truncated.
//   - Deleting needs room too: a purge transaction rewrites b-tree pages and its marks, and in
//     WAL mode every changed page is appended to the WAL. The purge alone may use headroom
//     pages above the budget, and a reserve file beside the database holds disk space that is
//     released the moment the disk itself fills, so the purge and the checkpoints can run; it
//     is taken back once the disk has room again.
//
// Once a write finds no room the log is "full": appends and Ping are refused up front (so
// /readyz and writers agree, and the log never flaps between full and not while nothing has
// changed) until a purge deletes items or finds room; the state change is logged once each
// way, never per request.
const (
	// highWater and lowWater are per-mille shares of the budget, in used pages.
	highWater = 900
	lowWater  = 750
	// fitBatch bounds the items one budget-purge transaction deletes: small, so the purge
	// stops near lowWater rather than far below it.
	fitBatch = 256
	// defaultReserve is the reserve file's size and the purge's page headroom: a purge batch
	// rewrites well under a megabyte of pages, and a TRUNCATE checkpoint may need to extend the
	// file by the WAL's newest pages.
	defaultReserve = 8 << 20
	// sqliteFull is SQLite's primary result code SQLITE_FULL ("database or disk is full"),
	// returned both at max_page_count and when a write finds no space on the disk.
	sqliteFull = 13
)

// isFull reports whether err is SQLite's "database or disk is full".
func isFull(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteFull
}

// reserveBytes is the reserve file's size and the purge's headroom: ReserveBytes, by default
// 8 MiB but at most an eighth of a budget, so small budgets keep a proportionate reserve.
func (o *Options) reserveBytes() int64 {
	r := o.ReserveBytes
	if r < 0 {
		return 0
	}
	if r == 0 {
		r = defaultReserve
		if o.MaxBytes > 0 {
			r = min(r, o.MaxBytes/8)
		}
	}
	return r
}

// setupBudget applies the budget to the writer connection and holds the reserve; on a log
// that is already at its budget it starts full, so reads are served and writes refused with
// the reason until the purge makes room.
func (l *Log) setupBudget(ctx context.Context) error {
	l.reservePath = l.path + "-reserve"
	l.reserveSize = l.opts.reserveBytes()
	l.holdReserve(true)
	if l.opts.MaxBytes <= 0 {
		return nil
	}
	l.budgetPages = max(l.opts.MaxBytes/l.walPage, 8)
	l.headroomPages = max(l.reserveSize/l.walPage, 16)
	if err := l.setMaxPages(ctx, l.budgetPages); err != nil {
		return err
	}
	total, free, err := l.pages(ctx)
	if err != nil {
		return err
	}
	if total-free >= l.budgetPages {
		l.full.Store(true)
		l.fullReason = l.budgetReason(total)
		l.log.Warn("storage full at start: reads are served, writes are refused until the purge makes room", "reason", l.fullReason)
	}
	return nil
}

// setMaxPages sets max_page_count on the writer connection. SQLite never sets it below the
// file's current size.
func (l *Log) setMaxPages(ctx context.Context, n int64) error {
	var got int64
	if err := l.wconn.QueryRowContext(ctx, fmt.Sprintf("PRAGMA max_page_count = %d", n)).Scan(&got); err != nil {
		return fmt.Errorf("set size budget: %w", err)
	}
	return nil
}

// pages returns the database's size in pages and how many of them are free (reusable).
func (l *Log) pages(ctx context.Context) (total, free int64, err error) {
	if err := l.wconn.QueryRowContext(ctx, "SELECT * FROM pragma_page_count(), pragma_freelist_count()").Scan(&total, &free); err != nil {
		return 0, 0, fmt.Errorf("database size: %w", err)
	}
	return total, free, nil
}

func (l *Log) budgetReason(total int64) string {
	return fmt.Sprintf("the database (%s) is at its size budget (%s, --max-db-size)", mib(total*l.walPage), mib(l.opts.MaxBytes))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// refuse records that a write found no room and returns the error writers get. It tells the
// budget from a full disk by the disk's free space, and gives up the reserve for the latter.
// The caller holds wmu.
func (l *Log) refuse(ctx context.Context, err error) error {
	reason := "the disk is full"
	free, known := freeBytes(filepath.Dir(l.path))
	if l.budgetPages > 0 && (!known || free >= max(l.reserveSize, 1<<20)) {
		total, _, perr := l.pages(ctx)
		if perr != nil {
			total = l.budgetPages
		}
		reason = l.budgetReason(max(total, l.budgetPages))
	} else if l.releaseReserve() {
		// Copy the WAL back and cut it to nothing while the reserve's space is free: that
		// gives the disk the WAL's size back, which the purge's own frames then use.
		if _, cerr := l.wconn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); cerr != nil {
			l.log.Warn("checkpoint on a full disk", "err", cerr)
		}
	}
	if !l.full.Swap(true) || reason != l.fullReason {
		l.log.Warn("storage full: writes are refused until the purge makes room; reads continue", "reason", reason, "err", err)
	}
	l.fullReason = reason
	return fmt.Errorf("%w: %s: %w", stream.ErrStorageFull, reason, err)
}

// roomAgain records that writes succeed again. The caller holds wmu.
func (l *Log) roomAgain() {
	if l.full.Swap(false) {
		l.log.Info("storage has room again: writes resume")
	}
}

// hasRoom reports whether a full log could take writes again without deleting anything: it is
// below the purge's high-water mark and the disk has space (the operator freed some, or
// raised the budget and restarted). The caller holds wmu.
func (l *Log) hasRoom(ctx context.Context) bool {
	free, known := freeBytes(filepath.Dir(l.path))
	if known && free < max(l.reserveSize, 1<<20) {
		return false
	}
	if l.budgetPages <= 0 {
		return known
	}
	total, freePages, err := l.pages(ctx)
	return err == nil && (total-freePages)*1000 <= l.budgetPages*highWater
}

// fitTarget is the used-page count the purge deletes the oldest items down to (0: none
// needed): lowWater of the budget once past highWater, or three quarters of what is used
// while writes fail below the budget (the disk is full). The caller holds wmu.
func (l *Log) fitTarget(ctx context.Context) (int64, error) {
	if l.budgetPages <= 0 && !l.full.Load() {
		return 0, nil
	}
	total, free, err := l.pages(ctx)
	if err != nil {
		return 0, err
	}
	used := total - free
	switch {
	case l.budgetPages > 0 && used*1000 > l.budgetPages*highWater:
		return l.budgetPages * lowWater / 1000, nil
	case l.full.Load():
		return max(used*3/4, 1), nil
	}
	return 0, nil
}

// holdReserve creates the reserve file when it is missing and the disk has room for it with
// plenty to spare. At open it releases a held one on a nearly full disk, so SQLite can start;
// later it keeps it until a write finds the disk full, when it helps most.
func (l *Log) holdReserve(atOpen bool) {
	if l.reserveSize <= 0 {
		return
	}
	l.rmu.Lock()
	defer l.rmu.Unlock()
	free, known := freeBytes(filepath.Dir(l.path))
	if fi, err := os.Stat(l.reservePath); err == nil && fi.Size() >= l.reserveSize {
		l.reserveHeld = true
		if atOpen && known && free < l.reserveSize {
			l.releaseReserveLocked("the disk is nearly full")
		}
		return
	}
	if known && free < 2*l.reserveSize {
		return // taking it now would only bring the full disk closer
	}
	if err := writeReserve(l.reservePath, l.reserveSize); err != nil {
		os.Remove(l.reservePath)
		l.log.Warn("could not set aside the disk reserve; a full disk may need a restart after freeing space", "path", l.reservePath, "err", err)
		return
	}
	if !l.reserveHeld && l.reserveReleased {
		l.log.Info("disk has room again: reserve taken back", "path", l.reservePath, "size", mib(l.reserveSize))
	}
	l.reserveHeld = true
}

// releaseReserve gives the reserve's space back to the disk; it reports whether there was
// one to give.
func (l *Log) releaseReserve() bool {
	l.rmu.Lock()
	defer l.rmu.Unlock()
	return l.releaseReserveLocked("the disk is full")
}

func (l *Log) releaseReserveLocked(why string) bool {
	if !l.reserveHeld {
		return false
	}
	l.reserveHeld, l.reserveReleased = false, true
	if err := os.Remove(l.reservePath); err != nil && !errors.Is(err, os.ErrNotExist) {
		l.log.Error("release disk reserve", "path", l.reservePath, "err", err)
		return false
	}
	l.log.Warn("released the disk reserve so the purge and checkpoints can run", "reason", why, "size", mib(l.reserveSize))
	return true
}

// writeReserve writes size bytes that do not compress, so copy-on-write and compressing
// filesystems really set the space aside.
func writeReserve(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	buf := make([]byte, min(size, 1<<20))
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i+8 <= len(buf); i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		for j := range 8 {
			buf[i+j] = byte(x >> (8 * j))
		}
	}
	for left := size; left > 0; left -= int64(len(buf)) {
		if _, err := f.Write(buf[:min(left, int64(len(buf)))]); err != nil {
			f.Close()
			return err
		}
	}
	// No fsync: filesystems count written blocks as used at once (ext4's delayed allocation
	// reserves them), and an fsync of megabytes at every start is slow on an SD card.
	return f.Close()
}
