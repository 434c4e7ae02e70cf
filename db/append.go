package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"meshbox/stream"
)

// statements are prepared once on the writer connection; every batch reuses them.
type statements struct {
	begin, commit, rollback *sql.Stmt
	putGroup, deleteGroup   *sql.Stmt
	putNode, deleteNode     *sql.Stmt
	// insertItems[i] inserts insertSizes[i] rows at once.
	insertItems [len(insertSizes)]*sql.Stmt
	// pages reads the file's size and free pages (Log.pages); prepared on first use, since
	// the budget is set up before the other statements are prepared.
	pages *sql.Stmt
	// args holds one insert's arguments, reused by every batch.
	args []any
}

// insertSizes are the row counts of the prepared multi-row inserts, largest first: a batch's
// items go in as few statements as these sizes allow — one per bit of its size below 64.
// Every statement costs far more than a row (the driver's round, SQLite opening the table,
// its index and the AUTOINCREMENT counter): with sizes 64, 8 and 1 only, a batch of 15 items,
// common at 32 publishers, took 8 statements instead of 4.
var insertSizes = [...]int{64, 32, 16, 8, 4, 2, 1}

func insertItemsSQL(rows int) string {
	return "INSERT INTO items(cursor, group_id, at, body) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", rows), ", ")
}

const (
	putGroupSQL = `INSERT INTO groups(id, domain, name, host, created_at, expires_at, host_seen_at, use_ws, first_cursor, ended_at, end_reason, mesh_v2)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
		ON CONFLICT(id) DO UPDATE SET domain = excluded.domain, name = excluded.name, host = excluded.host,
			created_at = excluded.created_at, expires_at = excluded.expires_at, host_seen_at = excluded.host_seen_at,
			use_ws = excluded.use_ws, ended_at = excluded.ended_at, end_reason = excluded.end_reason, mesh_v2 = excluded.mesh_v2`
	putNodeSQL = `INSERT INTO nodes(group_id, id, name, token_hash, joined_at, last_seen, expires_at, data, data_at, mesh_v2)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(group_id, id) DO UPDATE SET name = excluded.name, token_hash = excluded.token_hash,
			joined_at = excluded.joined_at, last_seen = excluded.last_seen, expires_at = excluded.expires_at,
			data = excluded.data, data_at = excluded.data_at, mesh_v2 = excluded.mesh_v2`
)

func (st *statements) prepare(ctx context.Context, conn *sql.Conn) error {
	for _, p := range []struct {
		s   **sql.Stmt
		sql string
	}{
		{&st.begin, "BEGIN IMMEDIATE"},
		{&st.commit, "COMMIT"},
		{&st.rollback, "ROLLBACK"},
		{&st.putGroup, putGroupSQL},
		{&st.deleteGroup, `DELETE FROM groups WHERE id = ?`},
		{&st.putNode, putNodeSQL},
		{&st.deleteNode, `DELETE FROM nodes WHERE group_id = ? AND id = ?`},
	} {
		var err error
		if *p.s, err = conn.PrepareContext(ctx, p.sql); err != nil {
			return fmt.Errorf("prepare %q: %w", p.sql, err)
		}
	}
	for i, n := range insertSizes {
		var err error
		if st.insertItems[i], err = conn.PrepareContext(ctx, insertItemsSQL(n)); err != nil {
			return fmt.Errorf("prepare insert of %d items: %w", n, err)
		}
	}
	return nil
}

func (st *statements) close() {
	for _, s := range append([]*sql.Stmt{st.begin, st.commit, st.rollback, st.putGroup, st.deleteGroup, st.putNode, st.deleteNode, st.pages}, st.insertItems[:]...) {
		if s != nil {
			s.Close()
		}
	}
}

// Append commits the batch in one transaction: its state changes, then its items.
func (l *Log) Append(ctx context.Context, b *stream.Batch) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writable("append"); err != nil {
		return err
	}
	// The transaction is not tied to the caller's context: once begun, a batch either commits
	// or rolls back as a whole, whoever gave up waiting.
	ctx = context.WithoutCancel(ctx)
	at := max(b.Now.UnixMilli(), l.lastAt)
	for i := range b.Items {
		it := &b.Items[i]
		l.next++
		it.Cursor = l.next
		it.At = fromMillis(at)
		it.JSON = stream.EncodeItem(*it)
	}
	err := l.write(ctx, b, at)
	if err == nil && l.commitHook != nil {
		err = l.commitHook()
	}
	if err == nil {
		if _, cerr := l.stmts.commit.ExecContext(ctx); cerr != nil {
			err = fmt.Errorf("commit: %w", cerr)
		}
	}
	if err != nil {
		// The cursors handed out stay used: nobody saw them, but none is ever given twice.
		if _, rerr := l.stmts.rollback.ExecContext(ctx); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			l.log.Debug("rollback", "err", rerr)
		}
		if isFull(err) {
			err = l.refuse(ctx, err)
		}
		return fmt.Errorf("append %d items, %d changes: %w", len(b.Items), len(b.Changes), err)
	}
	if l.committedHook != nil {
		l.committedHook()
	}
	l.lastAt = at
	l.roomAgain()
	l.afterCommit(ctx, walBytes(b))
	if limit := l.limitPages(); limit > 0 && len(b.Items) > 0 {
		l.checkSize(ctx, limit, walBytes(b))
	}
	l.marks.Apply(b.Changes)
	if n := len(b.Items); n > 0 {
		l.watermark.Store(b.Items[n-1].Cursor)
	}
	return nil
}

// write runs the batch's statements inside BEGIN; the caller commits or rolls back.
func (l *Log) write(ctx context.Context, b *stream.Batch, at int64) error {
	if _, err := l.stmts.begin.ExecContext(ctx); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	for _, c := range b.Changes {
		var err error
		switch c.Kind {
		case stream.PutGroup:
			g := c.Group
			_, err = l.stmts.putGroup.ExecContext(ctx, g.ID, g.Domain, g.Name, g.Host, millis(g.CreatedAt), millis(g.ExpiresAt),
				millis(g.HostSeenAt), g.UseWebSocket, millis(g.EndedAt), g.EndReason, g.MeshV2)
		case stream.DeleteGroup:
			_, err = l.stmts.deleteGroup.ExecContext(ctx, c.Group.ID)
		case stream.PutNode:
			n := c.Node
			_, err = l.stmts.putNode.ExecContext(ctx, n.Group, n.ID, n.Name, n.TokenHash, millis(n.JoinedAt), millis(n.LastSeen),
				millis(n.ExpiresAt), encodeData(n.Data), millis(n.DataAt), n.MeshV2)
		case stream.DeleteNode:
			_, err = l.stmts.deleteNode.ExecContext(ctx, c.Node.Group, c.Node.ID)
		default:
			err = fmt.Errorf("unknown change kind %d", c.Kind)
		}
		if err != nil {
			return fmt.Errorf("change %d of group %s: %w", c.Kind, c.Group.ID+c.Node.Group, err)
		}
	}
	args := l.stmts.args[:0]
	defer func() { clear(args); l.stmts.args = args[:0] }() // keep no item alive
	for done := 0; done < len(b.Items); {
		left := len(b.Items) - done
		i := 0
		for insertSizes[i] > left {
			i++
		}
		n := insertSizes[i]
		args = args[:0]
		for _, it := range b.Items[done : done+n] {
			args = append(args, it.Cursor, it.Group, at, it.JSON)
		}
		if _, err := l.stmts.insertItems[i].ExecContext(ctx, args...); err != nil {
			return fmt.Errorf("insert %d items: %w", n, err)
		}
		done += n
	}
	return nil
}

// walBytes estimates what a committed batch wrote to the WAL: its items' encodings with their
// row and index overhead, and a page for each state change and for the b-tree's bookkeeping.
// It only decides when the writer checkpoints, so an overestimate costs an early checkpoint.
func walBytes(b *stream.Batch) int64 {
	n := int64(2+len(b.Changes)) * 4096
	for _, it := range b.Items {
		n += int64(len(it.JSON)) + 64
	}
	return n
}
