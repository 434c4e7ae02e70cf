package db

import (
	"context"
	"time"
)

// Checkpoint tiers, as litestream runs them: a PASSIVE checkpoint on a timer never waits for or
// blocks appends; past restartFrames the WAL is copied between two appends so SQLite can start
// it over; past the WAL limit a TRUNCATE cuts the file back to nothing.
const (
	checkpointInterval = time.Second
	restartBytes       = 8 << 20
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
			}
		}
	}
}

// checkpointTiers runs one round: PASSIVE in the background, then, if the WAL is large, a
// checkpoint on the writer connection between two appends.
func (l *Log) checkpointTiers() {
	c, err := l.checkpoint(false, "PASSIVE")
	if isFull(err) && l.releaseReserve() {
		// Copying the WAL's newest pages may extend the database file.
		c, err = l.checkpoint(false, "PASSIVE")
	}
	if err != nil {
		l.log.Warn("checkpoint", "err", err)
		return
	}
	walBytes := c.Frames * l.walPage
	switch {
	case walBytes > l.opts.WALLimit:
		c, err = l.checkpoint(true, "TRUNCATE")
	case walBytes > restartBytes:
		// Under steady appends a background checkpoint never catches the last frames, and
		// SQLite only starts the WAL over when a writer finds it fully copied.
		c, err = l.checkpoint(true, "PASSIVE")
	default:
		return
	}
	if isFull(err) && l.releaseReserve() {
		c, err = l.checkpoint(true, "TRUNCATE")
	}
	if err != nil {
		l.log.Warn("checkpoint", "err", err)
		return
	}
	l.log.Debug("checkpoint", "wal_frames", c.Frames, "copied", c.Copied, "busy", c.Busy)
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
	err := l.wconn.QueryRowContext(context.Background(), q).Scan(&busy, &c.Frames, &c.Copied)
	c.Busy = busy != 0
	return c, err
}
