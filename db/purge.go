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
		if early := res.Items - aged; early > 0 {
			l.log.Warn("storage nearly full: purged the oldest items before their TTL", "items", early, "through", res.Through)
		}
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.full.Load() && !l.closed && (res.Items > 0 || l.hasRoom(ctx)) {
		// Deleted items leave free pages that appends reuse: let writers try again (an append
		// that still finds no room marks the log full anew, and the next pass deletes more).
		l.roomAgain()
	}
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
	if l.budgetPages > 0 {
		// Deleting rewrites pages and may split one (a longer mark): only the purge may use
		// the headroom above the budget, so it can run when appends no longer can.
		if err := l.setMaxPages(ctx, l.budgetPages+l.headroomPages); err != nil {
			return 0, 0, err
		}
		defer l.setMaxPages(context.WithoutCancel(ctx), l.budgetPages)
	}
	if err := l.deleteThrough(ctx, through, lastAt.Int64, perGroup); err != nil {
		if !isFull(err) || !l.releaseReserve() {
			return 0, 0, err
		}
		// The disk is full: the reserve's space is free now, try once more.
		if err := l.deleteThrough(ctx, through, lastAt.Int64, perGroup); err != nil {
			return 0, 0, err
		}
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
