package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"meshbox/stream"
)

// purgeBatch bounds how many items one purge transaction deletes, so appends queued behind it
// wait for a few milliseconds at most.
const purgeBatch = 2000

// Purge deletes the items stamped before cutoff, oldest first, purgeBatch at a time; then, while
// the database is near its size budget (or writes fail for want of room), items whatever their
// age, fitBatch at a time: the oldest of the group that holds the most bytes, so the groups
// over their share of the budget pay first. Either way the purge marks tell readers behind the
// deleted items that they were truncated. Below the budget nothing is deleted before its TTL.
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
		// Room is made from the groups that hold the most first: each batch takes the oldest
		// items of the group holding the most bytes, so a group that floods pays for its own
		// flood and the others keep their history until every group is down to the same share.
		sizes, err := l.groupBytes(ctx)
		if err != nil {
			return res, err
		}
		for ctx.Err() == nil {
			gid := largest(sizes)
			if gid == "" {
				break
			}
			n, through, bytes, err := l.purgeGroupBatch(ctx, gid, fitBatch, target)
			if err != nil {
				return res, err
			}
			if n == 0 {
				if through < 0 { // under the target: done
					break
				}
				delete(sizes, gid) // nothing left of it
				continue
			}
			sizes[gid] -= bytes
			early += n
			add(n, through)
		}
		if early > 0 {
			l.log.Debug("storage nearly full: purged items before their TTL, from the groups holding the most", "items", early, "through", res.Through)
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
	if err := l.withPurgeRoom(ctx, func() error { return l.deleteThrough(ctx, "", through, lastAt.Int64, perGroup) }); err != nil {
		return 0, 0, err
	}
	l.marks.Purged(perGroup, through)
	return n, through, nil
}

// deleteThrough deletes the items up to through (of group gid only, unless gid is "") and
// moves the purge marks, each group's in perGroup and the stream's, in one transaction.
func (l *Log) deleteThrough(ctx context.Context, gid string, through, throughAt int64, perGroup map[string]int64) error {
	tx, err := l.wconn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	defer tx.Rollback()
	if gid == "" {
		_, err = tx.ExecContext(ctx, `DELETE FROM items WHERE cursor <= ?`, through)
	} else {
		_, err = tx.ExecContext(ctx, `DELETE FROM items WHERE group_id = ? AND cursor <= ?`, gid, through)
	}
	if err != nil {
		return fmt.Errorf("purge items: %w", err)
	}
	for gid, c := range perGroup {
		if _, err := tx.ExecContext(ctx, `UPDATE groups SET purged_through = max(purged_through, ?) WHERE id = ?`, c, gid); err != nil {
			return fmt.Errorf("purge marks: %w", err)
		}
	}
	// The newest purged item's time too: should the purge empty the table, a restart must not
	// stamp new items earlier than items clients have seen.
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES('purged_through', ?), ('purged_at', ?) ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)`, through, throughAt); err != nil {
		return fmt.Errorf("purge marks: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("purge: %w", err)
	}
	return nil
}

// newestPerGroup returns, per group, its newest item at or below through.
func (l *Log) newestPerGroup(ctx context.Context, through int64) (map[string]int64, error) {
	out, err := groupSums(ctx, l.wconn, `SELECT group_id, max(cursor) FROM items WHERE cursor <= ? GROUP BY group_id`, through)
	if err != nil {
		return nil, fmt.Errorf("group purge marks: %w", err)
	}
	return out, nil
}

// groupSums runs a query answering (group_id, number) rows and returns them as a map.
func groupSums(ctx context.Context, conn *sql.Conn, query string, args ...any) (map[string]int64, error) {
	rows, err := conn.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var gid string
		var n int64
		if err := rows.Scan(&gid, &n); err != nil {
			return nil, err
		}
		out[gid] = n
	}
	return out, rows.Err()
}

// groupBytes is what each group's retained items take, in bytes of their encodings.
func (l *Log) groupBytes(ctx context.Context) (map[string]int64, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return nil, stream.ErrClosed
	}
	out, err := groupSums(ctx, l.wconn, `SELECT group_id, sum(length(body)) FROM items GROUP BY group_id`)
	if err != nil {
		return nil, fmt.Errorf("group sizes: %w", err)
	}
	return out, nil
}

// largest is the group holding the most bytes ("" when none holds any); ties go to the
// smaller id, so the choice does not depend on map order.
func largest(sizes map[string]int64) string {
	best, most := "", int64(0)
	for gid, n := range sizes {
		if n > most || n == most && n > 0 && gid < best {
			best, most = gid, n
		}
	}
	return best
}

// purgeGroupBatch deletes up to limit of group gid's oldest items in one transaction, while
// more pages than target are in use (through is -1 when they are not), and moves its purge
// mark; it returns how many it deleted, the newest deleted cursor and their bytes.
func (l *Log) purgeGroupBatch(ctx context.Context, gid string, limit int, target int64) (n int, through, bytes int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return 0, 0, 0, stream.ErrClosed
	}
	total, free, err := l.pages(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	if total-free <= target {
		return 0, -1, 0, nil
	}
	var last, lastAt, size sql.NullInt64
	err = l.wconn.QueryRowContext(ctx, `SELECT max(cursor), count(*), max(at), sum(length(body)) FROM (SELECT cursor, at, body FROM items WHERE group_id = ? ORDER BY cursor LIMIT ?)`, gid, limit).Scan(&last, &n, &lastAt, &size)
	if err != nil {
		return 0, 0, 0, fmt.Errorf("find %s's oldest items: %w", gid, err)
	}
	if n == 0 {
		return 0, 0, 0, nil
	}
	through = last.Int64
	if err := l.withPurgeRoom(ctx, func() error { return l.deleteThrough(ctx, gid, through, lastAt.Int64, map[string]int64{gid: through}) }); err != nil {
		return 0, 0, 0, err
	}
	l.marks.Purged(map[string]int64{gid: through}, through)
	return n, through, size.Int64, nil
}

// withPurgeRoom runs one purge transaction with the room it needs, and copies it back into
// the database at once. The caller holds wmu.
func (l *Log) withPurgeRoom(ctx context.Context, del func() error) error {
	if limit := l.limitPages(); limit > 0 {
		// Deleting rewrites pages and may split one (a longer mark): only the purge may use
		// the headroom above the budget, so it can run when appends no longer can. A pinned
		// file gets none: the disk has no room for it to grow.
		head := l.headroomPages
		if l.pinnedPages > 0 {
			head = 0
		}
		if err := l.setMaxPages(ctx, limit+head); err != nil {
			return err
		}
		defer func() { l.setMaxPages(context.WithoutCancel(ctx), l.limitPages()) }()
	}
	err := del()
	if isFull(err) {
		// The disk is full: copy the WAL back (with the reserve's room, pinning the file) so
		// it starts over and the delete's few frames reuse its space; then once more.
		l.diskFull(ctx)
		err = del()
	}
	if err != nil {
		return err
	}
	// Each delete is copied back at once, so the WAL starts over before the next one and a
	// purge of many batches never needs more than the WAL's own space.
	if _, err := l.checkpointLocked(ctx, "PASSIVE"); err != nil {
		l.log.Debug("checkpoint after a purge batch", "err", err)
	}
	return nil
}
