package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxBatchOps bounds one group-commit transaction so a flood of writers cannot make one commit,
// and so every acknowledgement, wait for long.
const maxBatchOps = 512

// op is one write request: fn runs inside the writer's shared transaction.
type op struct {
	fn   func(t *txn) error
	done chan error
}

// statements are prepared once on the writer connection; every batch reuses them.
type statements struct {
	begin, commit *sql.Stmt
	// insertItems[i] inserts insertSizes[i] rows at once.
	insertItems [len(insertSizes)]*sql.Stmt
}

// insertSizes are the row counts of the prepared multi-row inserts, largest first: a batch's
// items go in as few statements as these sizes allow.
var insertSizes = [...]int{64, 8, 1}

func insertItemsSQL(rows int) string {
	return "INSERT INTO items(cursor, group_id, at, body) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?), ", rows), ", ")
}

func (st *statements) prepare(ctx context.Context, conn *sql.Conn) error {
	var err error
	if st.begin, err = conn.PrepareContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("prepare begin: %w", err)
	}
	if st.commit, err = conn.PrepareContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("prepare commit: %w", err)
	}
	for i, n := range insertSizes {
		if st.insertItems[i], err = conn.PrepareContext(ctx, insertItemsSQL(n)); err != nil {
			return fmt.Errorf("prepare insert of %d items: %w", n, err)
		}
	}
	return nil
}

func (st *statements) close() {
	for _, s := range append([]*sql.Stmt{st.begin, st.commit}, st.insertItems[:]...) {
		if s != nil {
			s.Close()
		}
	}
}

// txn is what an op sees of the shared transaction. An op must check its preconditions before
// its first write: a failed write fails the whole batch.
type txn struct {
	s      *Store
	ctx    context.Context
	now    time.Time
	items  []Item
	stored int   // items[:stored] are inserted; the rest go in at the end of the batch
	purged int64 // items up to this cursor were deleted in this transaction
	err    error // the first failed write; the batch is rolled back
}

// fatalError marks a failure of the transaction itself rather than of one op's preconditions.
type fatalError struct{ err error }

func (e fatalError) Error() string { return e.err.Error() }
func (e fatalError) Unwrap() error { return e.err }

func (t *txn) exec(ctx context.Context, query string, args ...any) error {
	if t.err != nil {
		return t.err
	}
	if _, err := t.s.wconn.ExecContext(ctx, query, args...); err != nil {
		t.err = fatalError{fmt.Errorf("exec: %w", err)}
		return t.err
	}
	return nil
}

// append adds an item to the group's stream, assigning its cursor and time.
func (t *txn) append(group string, it Item) (int64, error) {
	if t.err != nil {
		return 0, t.err
	}
	s := t.s
	at := t.now.UnixMilli()
	if at < s.lastAt { // keep time monotonic in cursor order so purge by age can walk cursors
		at = s.lastAt
	}
	s.lastAt = at
	s.lastCursor++
	it.Cursor = s.lastCursor
	it.At = fromMillis(at)
	it.Group = group
	it.JSON = encodeItem(it)
	// Inserted by store() with the rest of the batch: a few multi-row statements cost far
	// less than one statement per item. Nothing in a batch reads its own new items.
	t.items = append(t.items, it)
	return it.Cursor, nil
}

// store inserts the items appended since the last call.
func (t *txn) store() error {
	if t.err != nil {
		return t.err
	}
	args := make([]any, 0, 4*insertSizes[0])
	for t.stored < len(t.items) {
		left := len(t.items) - t.stored
		i := 0
		for insertSizes[i] > left {
			i++
		}
		n := insertSizes[i]
		args = args[:0]
		for _, it := range t.items[t.stored : t.stored+n] {
			args = append(args, it.Cursor, it.Group, it.At.UnixMilli(), it.JSON)
		}
		if _, err := t.s.stmts.insertItems[i].ExecContext(t.ctx, args...); err != nil {
			t.err = fatalError{fmt.Errorf("insert %d items: %w", n, err)}
			return t.err
		}
		t.stored += n
	}
	return nil
}

// do runs fn in the writer's next transaction and returns once that transaction committed (nil,
// or fn's own error) or failed (the commit's error).
func (s *Store) do(ctx context.Context, fn func(t *txn) error) error {
	o := &op{fn: fn, done: make(chan error, 1)}
	// The read lock keeps Close from stopping the writer between the check and the send, so
	// every queued op is run by the writer's final drain.
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case s.ops <- o:
		s.closeMu.RUnlock()
	case <-ctx.Done():
		s.closeMu.RUnlock()
		return ctx.Err()
	}
	// Once queued, the op will run: wait for its outcome even if the caller gives up, so an
	// acknowledged write is never reported as failed and vice versa.
	return <-o.done
}

func (s *Store) writeLoop() {
	defer close(s.stopped)
	batch := make([]*op, 0, maxBatchOps)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.ckptReq:
			if _, err := s.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
				s.log.Warn("writer checkpoint", "err", err)
			}
			continue
		case <-s.stop:
			s.drain()
			return
		}
		batch = s.fill(batch)
		s.runBatch(batch)
	}
}

// fill adds queued ops to batch without waiting.
func (s *Store) fill(batch []*op) []*op {
	for len(batch) < maxBatchOps {
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		default:
			return batch
		}
	}
	return batch
}

// drain commits whatever was queued before Close.
func (s *Store) drain() {
	for {
		batch := s.fill(make([]*op, 0, maxBatchOps))
		if len(batch) == 0 {
			return
		}
		s.runBatch(batch)
	}
}

func (s *Store) runBatch(batch []*op) {
	start := time.Now()
	ctx := context.Background()
	t := &txn{s: s, ctx: ctx, now: s.now()}
	results := make([]error, len(batch))
	prevCursor, prevAt := s.lastCursor, s.lastAt
	_, err := s.stmts.begin.ExecContext(ctx)
	if err == nil {
		for i, o := range batch {
			results[i] = s.runOp(o, t)
			if t.err != nil {
				break
			}
		}
		if t.err == nil {
			t.store()
		}
		err = t.err
	}
	if err == nil && s.commitHook != nil {
		err = s.commitHook()
	}
	if err == nil {
		if _, cerr := s.stmts.commit.ExecContext(ctx); cerr != nil {
			err = fmt.Errorf("commit: %w", cerr)
		}
	}
	if err != nil {
		s.abort(ctx, err, prevCursor, prevAt)
		for _, o := range batch {
			o.done <- fmt.Errorf("write failed, nothing was saved: %w", err)
		}
		return
	}
	s.committed.Store(s.lastCursor)
	if t.purged > 0 {
		s.hooks.OnPurge(t.purged)
	}
	if len(t.items) > 0 {
		s.hooks.OnCommit(t.items)
		// Items of one kind come in runs (a publish's events): report each run, no map.
		for i := 0; i < len(t.items); {
			j := i + 1
			for j < len(t.items) && t.items[j].Kind == t.items[i].Kind {
				j++
			}
			s.obs.ObserveAppended(t.items[i].Kind, j-i)
			i = j
		}
	}
	s.obs.ObserveCommit(len(batch), len(t.items), time.Since(start))
	for i, o := range batch {
		o.done <- results[i]
	}
}

// runOp runs one op, turning a panic into that op's error so a bug in one request never takes
// the writer, and with it the server, down.
func (s *Store) runOp(o *op, t *txn) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error: %v", r)
			if t.err == nil {
				t.err = fatalError{err}
			}
		}
	}()
	return o.fn(t)
}

// abort rolls back a failed batch and reloads the in-memory state, which the batch's ops may
// already have changed.
func (s *Store) abort(ctx context.Context, cause error, prevCursor, prevAt int64) {
	s.log.Error("write batch failed", "err", cause)
	if _, err := s.wconn.ExecContext(ctx, "ROLLBACK"); err != nil && !errors.Is(err, sql.ErrTxDone) {
		s.log.Debug("rollback", "err", err)
	}
	if err := s.loadState(ctx); err != nil {
		s.log.Error("reload state after failed batch", "err", err)
	}
	s.mu.Lock()
	// Cursors of the rolled-back items were never seen by anyone; still, never hand out a
	// cursor lower than one already used.
	s.lastCursor = max(s.lastCursor, prevCursor)
	s.lastAt = max(s.lastAt, prevAt)
	s.mu.Unlock()
}
