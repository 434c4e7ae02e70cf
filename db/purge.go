package db

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	"meshbox/stream"
)

// purgeBatch bounds how many items one purge transaction deletes, so appends queued behind it
// wait for a few milliseconds at most.
const purgeBatch = 2000

// Purge deletes the items stamped before cutoff, oldest first, purgeBatch at a time; then, while
// the database is near its size budget (or writes fail for want of room), the oldest items
// whatever their age, fitBatch at a time. Either way the purge marks tell readers behind the
// deleted items that they were truncated.
func (l *Log) Purge(ctx context.Context, cutoff time.Time) (stream.Purged, error) {
	var res stream.Purged
	add := func(n int, through int64) {
		res.Items += n
		res.Through = max(res.Through, through)
	}
	for ctx.Err() == nil {
		n, through, err := l.purgeBatch(ctx, cutoff.UnixMilli(), purgeBatch, 0)
		if err != nil {
			return res, err
		}
		add(n, through)
		if n < purgeBatch {
			break
		}
	}
	target, err := l.lockedFitTarget(ctx)
	if err != nil {
		return res, err
	}
	early := 0
	if target > 0 {
		aged := res.Items
		for ctx.Err() == nil {
			n, through, err := l.purgeBatch(ctx, math.MaxInt64, fitBatch, target)
			if err != nil {
				return res, err
			}
			add(n, through)
			if n == 0 {
				break
			}
		}
		if early = res.Items - aged; early > 0 {
			l.log.Debug("storage nearly full: purged items before their TTL", "items", early, "through", res.Through)
		}
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return res, nil
	}
	if l.full.Load() && (res.Items > 0 || l.hasRoom(ctx)) {
		// Deleted items leave free pages that appends reuse: let writers try again (an append
		// that still finds no room marks the log full anew, and the next pass deletes more).
		l.roomAgain()
	}
	l.settle(ctx, early > 0)
	return res, nil
}

func (l *Log) lockedFitTarget(ctx context.Context) (int64, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return 0, stream.ErrClosed
	}
	return l.fitTarget(ctx)
}

// purgeBatch deletes up to limit of the oldest items stamped before cutoff in one transaction;
// with a target, only while more pages than that are in use.
func (l *Log) purgeBatch(ctx context.Context, cutoff int64, limit int, target int64) (n int, through int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return 0, 0, stream.ErrClosed
	}
	if target > 0 {
		total, free, err := l.pages(ctx)
		if err != nil {
			return 0, 0, err
		}
		if total-free <= target {
			return 0, 0, nil
		}
	}
	var last, lastAt sql.NullInt64
	// Item times never decrease in cursor order, so the old items are a prefix of the table.
	err = l.wconn.QueryRowContext(ctx, `SELECT max(cursor), count(*), max(at) FROM (SELECT cursor, at FROM items ORDER BY cursor LIMIT ?) WHERE at < ?`, limit, cutoff).Scan(&last, &n, &lastAt)
	if err != nil {
		return 0, 0, fmt.Errorf("find old items: %w", err)
	}
	if n == 0 {
		return 0, 0, nil
	}
	through = last.Int64
	perGroup, err := l.newestPerGroup(ctx, through)
	if err != nil {
		return 0, 0, err
	}
	if limit := l.limitPages(); limit > 0 {
		// Deleting rewrites pages and may split one (a longer mark): only the purge may use
		// the headroom above the budget, so it can run when appends no longer can. A pinned
		// file gets none: the disk has no room for it to grow.
		head := l.headroomPages
		if l.pinnedPages > 0 {
			head = 0
		}
		if err := l.setMaxPages(ctx, limit+head); err != nil {
			return 0, 0, err
		}
		defer func() { l.setMaxPages(context.WithoutCancel(ctx), l.limitPages()) }()
	}
	err = l.deleteThrough(ctx, through, lastAt.Int64, perGroup)
	if isFull(err) {
		// The disk is full: copy the WAL back (with the reserve's room, pinning the file) so
		// it starts over and the delete's few frames reuse its space; then once more.
		l.diskFull(ctx)
		err = l.deleteThrough(ctx, through, lastAt.Int64, perGroup)
	}
	if err != nil {
		return 0, 0, err
	}
	// Each delete is copied back at once, so the WAL starts over before the next one and a
	// purge of many batches never needs more than the WAL's own space.
	if _, err := l.checkpointLocked(ctx, "PASSIVE"); err != nil {
		l.log.Debug("checkpoint after a purge batch", "err", err)
	}
	l.marks.Purged(perGroup, through)
	return n, through, nil
}

// deleteThrough deletes the items up to through and moves the purge marks, in one transaction.
func (l *Log) deleteThrough(ctx context.Context, through, throughAt int64, perGroup map[string]int64) error {
	tx, err := l.wconn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM items WHERE cursor <= ?`, through); err != nil {
		return fmt.Errorf("purge items: %w", err)
	}
	for gid, c := range perGroup {
		if _, err := tx.ExecContext(ctx, `UPDATE groups SET purged_through = ? WHERE id = ?`, c, gid); err != nil {
			return fmt.Errorf("purge marks: %w", err)
		}
	}
	// The newest purged item's time too: should the purge empty the table, a restart must not
	// stamp new items earlier than items clients have seen.
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES('purged_through', ?), ('purged_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, through, throughAt); err != nil {
		return fmt.Errorf("purge marks: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	return nil
}

// newestPerGroup returns, per group, its newest item at or below through.
func (l *Log) newestPerGroup(ctx context.Context, through int64) (map[string]int64, error) {
	rows, err := l.wconn.QueryContext(ctx, `SELECT group_id, max(cursor) FROM items WHERE cursor <= ? GROUP BY group_id`, through)
	if err != nil {
		return nil, fmt.Errorf("group purge marks: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var gid string
		var c int64
		if err := rows.Scan(&gid, &c); err != nil {
			return nil, fmt.Errorf("group purge marks: %w", err)
		}
		out[gid] = c
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("group purge marks: %w", err)
	}
	return out, nil
}
