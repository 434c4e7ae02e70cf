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

// Purge deletes the items stamped before cutoff, oldest first, purgeBatch at a time.
func (l *Log) Purge(ctx context.Context, cutoff time.Time) (stream.Purged, error) {
	var res stream.Purged
	for ctx.Err() == nil {
		n, through, err := l.purgeBatch(ctx, cutoff.UnixMilli())
		if err != nil {
			return res, err
		}
		res.Items += n
		res.Through = max(res.Through, through)
		if n < purgeBatch {
			break
		}
	}
	return res, nil
}

func (l *Log) purgeBatch(ctx context.Context, cutoff int64) (n int, through int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return 0, 0, stream.ErrClosed
	}
	var last, lastAt sql.NullInt64
	// Item times never decrease in cursor order, so the old items are a prefix of the table.
	err = l.wconn.QueryRowContext(ctx, `SELECT max(cursor), count(*), max(at) FROM (SELECT cursor, at FROM items ORDER BY cursor LIMIT ?) WHERE at < ?`, purgeBatch, cutoff).Scan(&last, &n, &lastAt)
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
	tx, err := l.wconn.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("purge: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `DELETE FROM items WHERE cursor <= ?`, through); err != nil {
		return 0, 0, fmt.Errorf("purge items: %w", err)
	}
	for gid, c := range perGroup {
		if _, err := tx.ExecContext(ctx, `UPDATE groups SET purged_through = ? WHERE id = ?`, c, gid); err != nil {
			return 0, 0, fmt.Errorf("purge marks: %w", err)
		}
	}
	// The newest purged item's time too: should the purge empty the table, a restart must not
	// stamp new items earlier than items clients have seen.
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta(key, value) VALUES('purged_through', ?), ('purged_at', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value`, through, lastAt.Int64); err != nil {
		return 0, 0, fmt.Errorf("purge marks: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("purge: %w", err)
	}
	l.pmu.Lock()
	l.purgedThrough = through
	for gid, c := range perGroup {
		if _, known := l.marks[gid]; known {
			l.marks[gid] = c
		}
	}
	l.pmu.Unlock()
	return n, through, nil
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
