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

// Disk pressure shrinks retention, never the service, and a full disk always heals itself
// from meshbox's own data. The mechanisms:
//
//   - The size budget is SQLite's max_page_count on the writer connection: an append that would
//     grow the database file past it fails with SQLITE_FULL and changes nothing. It is at most
//     half the space meshbox can use on its disk (free space plus its own files, measured at
//     start), whatever --max-db-size says: the WAL, the reserve and the purge's headroom must
//     fit beside it, or the purge itself could never run.
//   - Past highWater of the budget (in used pages: the file's pages minus its free list) the
//     purge deletes items whatever their age, down to lowWater, setting the usual per-group
//     purge marks so readers behind them are told they were truncated.
//   - The WAL is bounded at commit time (walCap, a sixteenth of that space, at most 4 MiB by
//     default): past it the writer checkpoints between two appends, so the committed frames a
//     checkpoint must copy — and by which it may have to grow the database file — stay small.
//     The WAL is never truncated to nothing while meshbox runs (journal_size_limit keeps up to
//     walCap of it): a purge's frames then reuse space the WAL already holds.
//   - A reserve file (twice walCap) holds disk space that is released the moment the disk
//     itself fills: that room lets the checkpoint copy the WAL back. From then on, until the
//     reserve can be taken back, the database file is pinned to its size (max_page_count =
//     its pages): appends only reuse pages the purge freed, so no checkpoint ever needs disk
//     space again and the purge's small transactions always fit.
//
// Once a write finds no room the log is "full": appends and Ping are refused up front (so
// /readyz and writers agree, and the log never flaps between full and not while nothing has
// changed) until a purge deletes items or finds room; every state change is logged once, never
// per request or per attempt.
const (
	// highWater and lowWater are per-mille shares of the budget, in used pages.
	highWater = 900
	lowWater  = 750
	// fitBatch bounds the items one budget-purge transaction deletes: small, so the purge
	// stops near lowWater rather than far below it, and its frames fit the WAL's own space.
	fitBatch = 256
	// minWALCap and maxWALCap bound walCap; the WAL limit option lowers the latter.
	minWALCap = 256 << 10
	maxWALCap = 4 << 20
	// sqliteFull is SQLite's primary result code SQLITE_FULL ("database or disk is full"),
	// returned both at max_page_count and when a write finds no space on the disk.
	sqliteFull = 13
	// sqliteMaxPages is SQLite's own max_page_count: no budget.
	sqliteMaxPages = 0xfffffffe
)

// isFull reports whether err is SQLite's "database or disk is full".
func isFull(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code()&0xff == sqliteFull
}

// Sizes are what Open derived from the space meshbox can use on its disk.
type Sizes struct {
	// Usable is the disk's free space plus meshbox's own files at Open (0: unknown).
	Usable int64
	// Budget is the size budget in force (0: none), and Asked what the options asked for.
	Budget, Asked int64
	// WALCap is the WAL size past which the writer checkpoints between two appends.
	WALCap int64
	// Reserve is the reserve file's size.
	Reserve int64
}

// sizesFor derives the budget, the WAL cap and the reserve from the space meshbox can use on
// the disk of path: its free space plus the database's own files (at a restart they are
// meshbox's to reuse).
func sizesFor(path string, o Options) Sizes {
	sz := Sizes{Asked: o.MaxBytes, Budget: o.MaxBytes, WALCap: min(o.WALLimit, maxWALCap)}
	free, known := freeBytes(filepath.Dir(path))
	if known {
		sz.Usable = free
		for _, f := range []string{path, path + "-wal", path + "-reserve"} {
			if fi, err := os.Stat(f); err == nil {
				sz.Usable += fi.Size()
			}
		}
		sz.WALCap = max(min(sz.Usable/16, sz.WALCap), minWALCap)
		if sz.Budget > sz.Usable/2 {
			sz.Budget = sz.Usable / 2
		}
	}
	switch {
	case o.ReserveBytes < 0:
	case o.ReserveBytes > 0:
		sz.Reserve = o.ReserveBytes
	default:
		sz.Reserve = 2 * sz.WALCap
	}
	return sz
}

// Sizes reports what Open derived from the disk's free space.
func (l *Log) Sizes() Sizes { return l.sizes }

// setupBudget applies the budget to the writer connection and holds the reserve; on a log
// that is already at its budget it starts full, so reads are served and writes refused with
// the reason until the purge makes room.
func (l *Log) setupBudget(ctx context.Context) error {
	if l.sizes.Budget < l.sizes.Asked {
		l.log.Warn("size budget lowered to half the space meshbox can use on its disk, so the WAL, the reserve and the purge always fit beside it",
			"budget", mib(l.sizes.Budget), "max_db_size", mib(l.sizes.Asked), "usable", mib(l.sizes.Usable))
	}
	l.budgetPages = 0
	if l.sizes.Budget > 0 {
		l.budgetPages = max(l.sizes.Budget/l.walPage, 8)
	}
	l.headroomPages = max(l.reserveSize/l.walPage, 16)
	if l.budgetPages <= 0 {
		return nil
	}
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
		l.setState(StateFull, l.fullReason)
		l.log.Warn("storage full at start: reads are served, writes are refused until the purge makes room", "reason", l.fullReason)
	}
	return nil
}

// limitPages is the page count appends may grow the database to: the budget, or the file's
// size while it is pinned (0: no limit).
func (l *Log) limitPages() int64 {
	switch {
	case l.pinnedPages > 0 && l.budgetPages > 0:
		return min(l.pinnedPages, l.budgetPages)
	case l.pinnedPages > 0:
		return l.pinnedPages
	}
	return l.budgetPages
}

// pin stops the database file from growing: the disk has no room for it, and a checkpoint
// that had to extend the file could fail for ever. The caller holds wmu.
func (l *Log) pin(ctx context.Context) {
	if l.pinnedPages > 0 {
		return
	}
	total, _, err := l.pages(ctx)
	if err != nil {
		return
	}
	l.pinnedPages = max(total, 8)
	if err := l.setMaxPages(ctx, l.pinnedPages); err != nil {
		l.log.Warn("pin the database size", "err", err)
	}
	l.log.Warn("the disk is full: the database file stays at its size and reuses the space the purge frees", "size", mib(total*l.walPage))
}

// unpin lets the database file grow again (to its budget): the reserve is held again. The
// caller holds wmu.
func (l *Log) unpin(ctx context.Context) {
	if l.pinnedPages == 0 || l.closed {
		return
	}
	l.pinnedPages = 0
	n := l.budgetPages
	if n <= 0 {
		n = sqliteMaxPages
	}
	if err := l.setMaxPages(ctx, n); err != nil {
		l.log.Warn("unpin the database size", "err", err)
		return
	}
	l.log.Info("the disk has room again: the database file may grow again")
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

// pages returns the database's size in pages and how many of them are free (reusable). The
// caller holds wmu (or is Open).
func (l *Log) pages(ctx context.Context) (total, free int64, err error) {
	if l.stmts.pages == nil {
		if l.stmts.pages, err = l.wconn.PrepareContext(ctx, "SELECT * FROM pragma_page_count(), pragma_freelist_count()"); err != nil {
			return 0, 0, fmt.Errorf("database size: %w", err)
		}
	}
	if err := l.stmts.pages.QueryRowContext(ctx).Scan(&total, &free); err != nil {
		return 0, 0, fmt.Errorf("database size: %w", err)
	}
	return total, free, nil
}

// checkSize sets purgeDue once the used pages pass the high-water mark of limit, after an
// append that wrote about wrote bytes. Reading the size costs about as much as a small
// batch's insert, so it is read only when the appends since the last reading could have
// covered a quarter of the distance that reading left to the mark: walBytes overestimates
// what a batch adds to the file, so the mark is never passed unseen, and near it (or past it)
// every append reads the size again. The caller holds wmu.
func (l *Log) checkSize(ctx context.Context, limit, wrote int64) {
	if l.sizeCheckIn -= wrote; l.sizeCheckIn > 0 && limit == l.sizeCheckLimit {
		return
	}
	total, free, err := l.pages(ctx)
	if err != nil {
		l.sizeCheckIn = 0
		return
	}
	mark := limit * highWater / 1000
	if used := total - free; used > mark {
		l.purgeDue.Store(true)
		l.sizeCheckIn = 0
	} else {
		l.sizeCheckIn = (mark - used) * l.walPage / 4
	}
	l.sizeCheckLimit = limit
}

func (l *Log) budgetReason(total int64) string {
	return fmt.Sprintf("the database (%s) is at its size budget (%s, --max-db-size)", mib(total*l.walPage), mib(l.sizes.Budget))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// refuse records that a write found no room and returns the error writers get. It tells the
// budget from a full disk by the disk's free space; for the latter it gives up the reserve,
// copies the WAL back into the database (the reserve's space is for the file's growth that
// needs) and pins the file's size. The caller holds wmu.
func (l *Log) refuse(ctx context.Context, err error) error {
	reason := "the disk is full"
	free, known := freeBytes(filepath.Dir(l.path))
	if l.budgetPages > 0 && l.pinnedPages == 0 && (!known || free >= max(l.reserveSize, 1<<20)) {
		total, _, perr := l.pages(ctx)
		if perr != nil {
			total = l.budgetPages
		}
		reason = l.budgetReason(max(total, l.budgetPages))
	} else {
		l.diskFull(ctx)
	}
	if !l.full.Swap(true) || reason != l.fullReason {
		l.log.Warn("storage full: writes are refused until the purge makes room; reads continue", "reason", reason, "err", err)
	}
	l.fullReason = reason
	l.setState(StateFull, reason)
	return fmt.Errorf("%w: %s: %w", stream.ErrStorageFull, reason, err)
}

// diskFull makes sure the WAL can be copied back and started over on a full disk: it gives
// up the reserve (when a checkpoint finds no room), checkpoints, and pins the database file's
// size so that from now on no checkpoint needs new disk space. The caller holds wmu.
func (l *Log) diskFull(ctx context.Context) {
	_, err := l.checkpointLocked(ctx, "PASSIVE")
	if isFull(err) && l.releaseReserve() {
		_, err = l.checkpointLocked(ctx, "PASSIVE")
	}
	if err != nil {
		l.log.Debug("checkpoint on a full disk", "err", err)
	}
	l.pin(ctx)
}

// roomAgain records that writes succeed again. The caller holds wmu.
func (l *Log) roomAgain() {
	if l.full.Swap(false) {
		l.log.Info("storage has room again: writes resume")
		l.setState(StateRecovering, "making room after the storage was full")
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
	limit := l.limitPages()
	if limit <= 0 {
		return known
	}
	total, freePages, err := l.pages(ctx)
	return err == nil && (total-freePages)*1000 <= limit*highWater
}

// fitTarget is the used-page count the purge deletes items down to (0: none needed): lowWater
// of the budget (or of the pinned file) once past highWater, or three quarters of what is used
// while writes fail below the budget (the disk is full). The caller holds wmu.
func (l *Log) fitTarget(ctx context.Context) (int64, error) {
	limit := l.limitPages()
	if limit <= 0 && !l.full.Load() {
		return 0, nil
	}
	total, free, err := l.pages(ctx)
	if err != nil {
		return 0, err
	}
	used := total - free
	switch {
	case limit > 0 && used*1000 > limit*highWater:
		return limit * lowWater / 1000, nil
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

// PurgeDue reports (once) that an append passed the purge's high-water mark.
func (l *Log) PurgeDue() bool { return l.purgeDue.Swap(false) }

// Storage states, as the log tracks them (the names are stream's).
const (
	StateOK         = stream.StorageOK
	StatePressure   = stream.StoragePressure
	StateFull       = stream.StorageFull
	StateRecovering = stream.StorageRecovering
)

// setState records a storage state change (and logs it) once; the same state again changes
// nothing, not even its time.
func (l *Log) setState(s stream.StorageState, reason string) {
	l.smu.Lock()
	defer l.smu.Unlock()
	l.state.Reason = reason
	if l.state.State == s {
		return
	}
	from := l.state.State
	l.state.State, l.state.Since = s, l.opts.Now()
	if from != "" {
		l.log.Info("storage state", "from", string(from), "to", string(s))
	}
}

// Storage reports the storage state, since when and why.
func (l *Log) Storage() stream.StorageStatus {
	l.smu.Lock()
	st := l.state
	l.smu.Unlock()
	st.Budget = l.sizes.Budget
	return st
}

// settle works out the state after a purge pass that deleted early items before their TTL
// (or not). A log that was full stays "recovering" while it has no reserve or its file is
// pinned, or the purge still had to delete early. The caller holds wmu.
func (l *Log) settle(ctx context.Context, early bool) {
	if l.full.Load() {
		l.setState(StateFull, l.fullReason)
		return
	}
	l.rmu.Lock()
	noReserve := l.reserveSize > 0 && !l.reserveHeld
	l.rmu.Unlock()
	l.smu.Lock()
	prev := l.state.State
	l.smu.Unlock()
	high := false
	if limit := l.limitPages(); limit > 0 {
		if total, free, err := l.pages(ctx); err == nil {
			high = (total-free)*1000 > limit*highWater
		}
	}
	switch {
	case (prev == StateFull || prev == StateRecovering) && (l.pinnedPages > 0 || noReserve || early):
		l.setState(StateRecovering, "making room after the storage was full")
	case early || high:
		l.setState(StatePressure, "near the size budget: the purge deletes items before their TTL")
	default:
		l.setState(StateOK, "")
	}
}
