package db

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"meshbox/stream"
)

// ReadAfter reads up to limit items of a group with since < cursor <= through, in cursor
// order, stopping once maxBytes of items are read (after at least one).
func (l *Log) ReadAfter(ctx context.Context, gid string, since, through int64, limit, maxBytes int) (items []stream.Item, truncated bool, err error) {
	// SQLite shows a commit to the read pool inside COMMIT, before the watermark moves: the
	// bound keeps readers from ever seeing an item the rest of meshbox does not know yet.
	through = min(through, l.Watermark())
	if since < through {
		rows, err := l.readAfter.QueryContext(ctx, gid, since, through, limit)
		if err != nil {
			return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
		}
		defer rows.Close()
		size := 0
		for (maxBytes <= 0 || size < maxBytes) && rows.Next() {
			var body []byte
			if err := rows.Scan(&body); err != nil {
				return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
			}
			size += len(body)
			it, err := stream.DecodeItem(body)
			if err != nil {
				return nil, false, err
			}
			it.Group = gid
			items = append(items, it)
		}
		if err := rows.Err(); err != nil {
			return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
		}
	}
	// Read the purge marks after the items: a purge that ran meanwhile then shows as truncated.
	truncated = l.marks.Truncated(gid, since)
	return items, truncated, nil
}

// CursorAt returns the cursor a reader should resume from to get the group's items stamped
// after t: the cursor just before the first such item, or through when there is none.
func (l *Log) CursorAt(ctx context.Context, gid string, t time.Time, through int64) (int64, error) {
	through = min(through, l.Watermark())
	var c sql.NullInt64
	err := l.read.QueryRowContext(ctx, `SELECT min(cursor) FROM items WHERE group_id = ? AND at > ? AND cursor <= ?`, gid, t.UnixMilli(), through).Scan(&c)
	if err != nil {
		return 0, fmt.Errorf("cursor at %s: %w", stream.FormatTime(t), err)
	}
	if !c.Valid {
		return through, nil
	}
	return c.Int64 - 1, nil
}
