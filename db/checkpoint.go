package db

import (
	"context"
	"time"
)

// Checkpoint tiers, as litestream runs them: a PASSIVE checkpoint on a timer never waits for or
// blocks appends; past the WAL's cap the WAL is copied between two appends so SQLite can start
// it over; past four times the cap (readers held the copy up) a RESTART waits for readers to
// move on. The WAL is never truncated to nothing while the log is open: journal_size_limit cuts
// it back to the cap when it starts over, and what it keeps is the room a purge's frames reuse
// when the disk is full. Appends themselves checkpoint past the cap (Append), so a burst
// faster than the timer cannot grow the WAL either.
const (
	checkpointInterval = time.Second
)

// Checkpoint is the outcome of one checkpoint, in WAL frames (pages).
type Checkpoint struct {
	Busy   bool
	Frames int64 // frames in the WAL
	Copied int64 // frames copied into the database
}

func (l *Log) checkpointLoop() {
	defer close(l.ckptStopped)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.checkpointTiers()
			if !l.full.Load() {
				l.holdReserve(false) // taken back once the disk has room again
				l.afterReserve()
			}
		}
	}
}

// afterReserve lets the database file grow again once the reserve is back.
func (l *Log) afterReserve() {
	l.rmu.Lock()
	held := l.reserveHeld || l.reserveSize <= 0
	l.rmu.Unlock()
	if !held {
		return
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.pinnedPages > 0 && !l.closed {
		if free, known := freeBytes(l.dir()); known && free >= l.reserveSize {
			l.unpin(context.Background())
		}
	}
}

// checkpointTiers runs one round: PASSIVE in the background, then, if the WAL is large, a
// checkpoint on the writer connection between two appends. A checkpoint that fails is logged
// once per change (ok → failing → ok), not every second.
func (l *Log) checkpointTiers() {
	c, err := l.checkpoint(false, "PASSIVE")
	if isFull(err) {
		l.checkpointFull(err)
		return
	}
	if err != nil {
		l.checkpointFailed(err)
		return
	}
	walBytes := c.Frames * l.walPage
	switch {
	case walBytes > 4*l.sizes.WALCap:
		c, err = l.checkpoint(true, "RESTART")
	case walBytes > l.sizes.WALCap:
		// Under steady appends a background checkpoint never catches the last frames, and
		// SQLite only starts the WAL over when a writer finds it fully copied.
		c, err = l.checkpoint(true, "PASSIVE")
	default:
		l.checkpointFailed(nil)
		return
	}
	if isFull(err) {
		l.checkpointFull(err)
		return
	}
	l.checkpointFailed(err)
	if err == nil {
		l.log.Debug("checkpoint", "wal_frames", c.Frames, "copied", c.Copied, "busy", c.Busy)
	}
}

// checkpointFull handles a checkpoint that found the disk full (copying the WAL's newest pages
// may extend the database file) as a write that did: appends stop at once, the reserve is given
// up for the copy and the file pinned, all under wmu — released without it, appends would eat
// the reserve's room before the checkpoint could use it.
func (l *Log) checkpointFull(err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return
	}
	l.refuse(context.Background(), err)
}

// checkpointFailed logs a checkpoint error when checkpoints start failing, and their return.
func (l *Log) checkpointFailed(err error) {
	was := l.ckptFailing.Swap(err != nil)
	switch {
	case err != nil && !was:
		l.log.Warn("checkpoints fail; retried every second", "err", err)
	case err == nil && was:
		l.log.Info("checkpoints succeed again")
	}
}

// checkpoint runs PRAGMA wal_checkpoint(mode), on the writer connection between two appends
// (onWriter) or on the checkpointer's own connection.
func (l *Log) checkpoint(onWriter bool, mode string) (Checkpoint, error) {
	var c Checkpoint
	var busy int
	q := "PRAGMA wal_checkpoint(" + mode + ")"
	if !onWriter {
		err := l.ckpt.QueryRowContext(context.Background(), q).Scan(&busy, &c.Frames, &c.Copied)
		c.Busy = busy != 0
		return c, err
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return c, nil
	}
	return l.checkpointLocked(context.Background(), mode)
}

// checkpointLocked checkpoints on the writer connection; the caller holds wmu. A checkpoint
// that copied every frame lets the next append start the WAL over, so the estimate of what
// the WAL holds starts again from nothing.
func (l *Log) checkpointLocked(ctx context.Context, mode string) (Checkpoint, error) {
	var c Checkpoint
	var busy int
	err := l.wconn.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&busy, &c.Frames, &c.Copied)
	c.Busy = busy != 0
	if err == nil {
		l.walEst = (c.Frames - c.Copied) * l.walPage
	}
	return c, err
}

// afterCommit checkpoints between two appends once the WAL may hold more than its cap, so a
// burst faster than the checkpoint timer never leaves the WAL more to copy back than the
// reserve can take. The caller holds wmu.
func (l *Log) afterCommit(ctx context.Context, written int64) {
	l.walEst += written
	if l.walEst <= l.sizes.WALCap {
		return
	}
	_, err := l.checkpointLocked(ctx, "PASSIVE")
	if isFull(err) {
		// The file cannot take the WAL's pages: stop appends now (they would only add more
		// to copy), make room, and let the purge do the rest.
		l.refuse(ctx, err)
		return
	}
	l.checkpointFailed(err)
}
