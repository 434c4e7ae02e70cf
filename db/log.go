// Package db is meshbox's SQLite log: the schema, the atomic append of a batch of items and
// state changes (one writer connection), reads by cursor on a pool of readers bounded by the
// watermark, the purge by age, and the WAL checkpoints. It implements stream.Log; the group
// rules live above it in package rules.
package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, so meshbox builds without cgo

	"meshbox/stream"
)

// Options configure a Log.
type Options struct {
	// Synchronous is NORMAL (survives a process crash) or FULL (survives power loss).
	Synchronous string
	// WALLimit bounds the WAL: past a cap of at most this size (4 MiB, or a sixteenth of the
	// space meshbox can use on its disk, if less) the writer checkpoints between two appends,
	// and whenever SQLite restarts the WAL it cuts the file back to that cap.
	WALLimit int64
	// MaxBytes is the database file's size budget (0: only the disk bounds it): appends that
	// would grow the file past it fail with stream.ErrStorageFull, and past 90 % of it the
	// purge deletes items whatever their age. The WAL and the reserve come on top. Open
	// lowers it to half the space meshbox can use on its disk (see Sizes).
	MaxBytes int64
	// ReserveBytes is set aside for the purge and checkpoints: page headroom above the budget
	// that only the purge may use, and a file beside the database given back when the disk
	// fills. 0: twice the WAL's cap (8 MiB on a disk with 64 MiB or more to use); negative: no
	// reserve file.
	ReserveBytes int64
	Logger       *slog.Logger
	// Now returns the current time; tests may replace it.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Synchronous == "" {
		o.Synchronous = "NORMAL"
	}
	if o.WALLimit <= 0 {
		o.WALLimit = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Log is the SQLite implementation of stream.Log.
type Log struct {
	opts   Options
	log    *slog.Logger
	path   string
	writer *sql.DB
	wconn  *sql.Conn
	read   *sql.DB
	ckpt   *sql.DB // the checkpointer's connection
	// readAfter is prepared once on the read pool: every reader behind the tail uses it.
	readAfter *sql.Stmt

	// wmu serialises everything that writes (Append, Purge, Ping, the writer's checkpoints)
	// on the one writer connection; it also guards the fields below it.
	wmu     sync.Mutex
	stmts   statements
	closed  bool
	next    int64 // the newest cursor handed out, committed or not: never reused
	lastAt  int64 // the newest item time (ms): item times never decrease in cursor order
	walPage int64 // the database page size, to turn WAL frames into bytes

	watermark atomic.Int64

	// Disk pressure (budget.go). sizes, budgetPages and headroomPages are set at Open;
	// fullReason, pinnedPages and walEst are guarded by wmu; full is also read without it.
	sizes         Sizes
	budgetPages   int64 // the size budget in pages (0: no budget)
	headroomPages int64 // pages above the budget only the purge may use
	pinnedPages   int64 // while the disk is full: the file's size, which appends may not pass
	walEst        int64 // an estimate of the bytes written to the WAL since the writer's last checkpoint
	full          atomic.Bool
	fullReason    string
	ckptFailing   atomic.Bool
	purgeDue      atomic.Bool // an append passed the high-water mark (PurgeDue)
	// sizeCheckIn is how many more bytes appends may write (by walBytes) before checkSize
	// reads the file's size again, while the page limit stays sizeCheckLimit; guarded by wmu.
	sizeCheckIn, sizeCheckLimit int64
	// smu guards the storage state.
	smu   sync.Mutex
	state stream.StorageStatus
	// rmu guards the reserve file's state.
	rmu             sync.Mutex
	reservePath     string
	reserveSize     int64
	reserveHeld     bool
	reserveReleased bool

	// marks tell readers what the purge deleted; every ReadAfter reads them.
	marks stream.PurgeMarks

	stop        chan struct{}
	closeOnce   sync.Once
	ckptStopped chan struct{}
	// commitHook lets in-package tests force a commit failure: it runs after the batch is
	// written, before COMMIT. committedHook runs after COMMIT, before the watermark moves (the
	// window in which SQLite already shows the batch to readers). Both run under wmu.
	commitHook    func() error
	committedHook func()
}

var _ stream.Log = (*Log)(nil)

func dsn(path, synchronous string, readOnly bool, walLimit int64) string {
	q := url.Values{}
	// busy_timeout comes first so the pragmas after it wait rather than fail.
	q.Add("_pragma", "busy_timeout(5000)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+synchronous+")")
	q.Add("_pragma", "foreign_keys(ON)")
	if readOnly {
		q.Add("_pragma", "query_only(ON)")
	} else {
		// Checkpoints (with their fsyncs) run on their own connection, never inside a
		// commit that writers are waiting for.
		q.Add("_pragma", "wal_autocheckpoint(0)")
		// When SQLite starts the WAL over, it cuts the file back to this size, and no further:
		// the space the WAL keeps is what a purge's frames reuse on a full disk.
		q.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walLimit))
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path and migrates it. Close it when done.
func Open(ctx context.Context, path string, opts Options) (*Log, error) {
	opts.defaults()
	l := &Log{
		opts: opts, log: opts.Logger, path: path,
		stop: make(chan struct{}), ckptStopped: make(chan struct{}),
	}
	syncMode := strings.ToUpper(opts.Synchronous)
	// The sizes come from the disk before SQLite touches it: the WAL's cap is a pragma of
	// every writing connection.
	l.sizes = sizesFor(path, opts)
	l.state = stream.StorageStatus{State: stream.StorageOK, Since: opts.Now()}
	// A disk that filled while meshbox was stopped gets the reserve's room before SQLite
	// opens: it needs some to recover the WAL and map its index.
	l.reservePath, l.reserveSize = path+"-reserve", l.sizes.Reserve
	l.holdReserve(true)
	var err error
	if l.writer, err = sql.Open("sqlite", dsn(path, syncMode, false, l.sizes.WALCap)); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	l.writer.SetMaxOpenConns(1)
	fail := func(err error) (*Log, error) {
		if l.wconn != nil {
			l.wconn.Close()
		}
		l.writer.Close()
		if l.read != nil {
			l.read.Close()
		}
		if l.ckpt != nil {
			l.ckpt.Close()
		}
		return nil, err
	}
	if l.wconn, err = l.writer.Conn(ctx); err != nil {
		return fail(fmt.Errorf("open %s: %w", path, err))
	}
	var mode string
	if err := l.wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("check journal mode: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("journal mode is %q, want wal (is %s on a filesystem without shared memory?)", mode, path))
	}
	if err := l.wconn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&l.walPage); err != nil {
		return fail(fmt.Errorf("read page size: %w", err))
	}
	if err := migrate(ctx, l.wconn); err != nil {
		return fail(err)
	}
	if err := l.setupBudget(ctx); err != nil {
		return fail(err)
	}
	if l.reserveReleased {
		// The reserve was given up at start for a nearly full disk: its room is for copying
		// the WAL back, not for appends, so the file keeps its size until the reserve is back.
		l.pin(ctx)
	}
	if l.read, err = sql.Open("sqlite", dsn(path, syncMode, true, 0)); err != nil {
		return fail(fmt.Errorf("open reader pool: %w", err))
	}
	l.read.SetMaxOpenConns(8)
	l.read.SetMaxIdleConns(8)
	if l.ckpt, err = sql.Open("sqlite", dsn(path, syncMode, false, l.sizes.WALCap)); err != nil {
		return fail(fmt.Errorf("open checkpointer: %w", err))
	}
	l.ckpt.SetMaxOpenConns(1)
	if l.readAfter, err = l.read.PrepareContext(ctx, `SELECT body FROM items WHERE group_id = ? AND cursor > ? AND cursor <= ? ORDER BY cursor LIMIT ?`); err != nil {
		return fail(fmt.Errorf("prepare read after: %w", err))
	}
	if err := l.stmts.prepare(ctx, l.wconn); err != nil {
		return fail(err)
	}
	if err := l.loadPosition(ctx); err != nil {
		l.stmts.close()
		l.readAfter.Close()
		return fail(err)
	}
	go l.checkpointLoop()
	return l, nil
}

// Close checkpoints the WAL and closes the database. Appends after Close get stream.ErrClosed.
func (l *Log) Close() error {
	// The checkpoint loop may be waiting for wmu: stop it before taking the lock.
	l.closeOnce.Do(func() { close(l.stop) })
	<-l.ckptStopped
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	l.stmts.close()
	l.readAfter.Close()
	var err error
	_, cerr := l.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	if isFull(cerr) && l.releaseReserve() {
		_, cerr = l.wconn.ExecContext(context.Background(), "PRAGMA wal_checkpoint(TRUNCATE)")
	}
	switch {
	case isFull(cerr):
		// Nothing is lost: the WAL holds every commit and SQLite replays it at the next start.
		l.log.Warn("final checkpoint skipped: the disk is full; the WAL is kept and replayed at the next start", "err", cerr)
	case cerr != nil:
		err = fmt.Errorf("checkpoint: %w", cerr)
	}
	return errors.Join(err, l.wconn.Close(), l.read.Close(), l.ckpt.Close(), l.writer.Close())
}

func (l *Log) dir() string { return filepath.Dir(l.path) }

// ReaderDB is the read pool, exposed for pool statistics.
func (l *Log) ReaderDB() *sql.DB { return l.read }

// WriterDB is the writer's database handle, exposed for pool statistics.
func (l *Log) WriterDB() *sql.DB { return l.writer }

// Path is the database file's path.
func (l *Log) Path() string { return l.path }

// Watermark is the cursor of the newest committed item.
func (l *Log) Watermark() int64 { return l.watermark.Load() }

// writable says whether op may write now; wmu is held. While the log is full, writes are
// refused up front until the purge has made room: a small write might still fit, but writers
// (and /readyz, whose ping rewrites one existing row) would then see the log flap between full
// and not.
func (l *Log) writable(op string) error {
	if l.closed {
		return stream.ErrClosed
	}
	if l.full.Load() {
		return fmt.Errorf("%s: %w: %s", op, stream.ErrStorageFull, l.fullReason)
	}
	return nil
}

// Ping checks that the database answers and accepts writes. While appends are refused for
// want of room it fails the same way without trying: its own small write rewrites one
// existing row and could pass while every append fails.
func (l *Log) Ping(ctx context.Context) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := l.writable("ping"); err != nil {
		return err
	}
	_, err := l.wconn.ExecContext(ctx, "INSERT INTO meta(key, value) VALUES('ping', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", l.opts.Now().UnixMilli())
	if isFull(err) {
		return fmt.Errorf("ping: %w", l.refuse(ctx, err))
	}
	if err != nil {
		return fmt.Errorf("ping: %w", err)
	}
	return nil
}

// Load reads the stored groups, nodes and cursor.
func (l *Log) Load(ctx context.Context) (stream.State, error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed {
		return stream.State{}, stream.ErrClosed
	}
	var st stream.State
	rows, err := l.wconn.QueryContext(ctx, `SELECT id, domain, name, host, created_at, expires_at, host_seen_at, use_ws, ended_at, end_reason, end_cursor, purged_through, mesh_v2 FROM groups`)
	if err != nil {
		return st, fmt.Errorf("load groups: %w", err)
	}
	for rows.Next() {
		var g stream.GroupRecord
		var created, expires, hostSeen, ended, endCursor, purged int64
		if err := rows.Scan(&g.ID, &g.Domain, &g.Name, &g.Host, &created, &expires, &hostSeen, &g.UseWebSocket, &ended, &g.EndReason, &endCursor, &purged, &g.MeshV2); err != nil {
			rows.Close()
			return st, fmt.Errorf("load groups: %w", err)
		}
		g.CreatedAt, g.ExpiresAt, g.HostSeenAt, g.EndedAt = fromMillis(created), fromMillis(expires), fromMillis(hostSeen), fromMillis(ended)
		g.LastCursor = max(endCursor, purged)
		st.Groups = append(st.Groups, g)
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return st, fmt.Errorf("load groups: %w", err)
	}
	rows.Close()
	// An ended group's dissolve item is its last: the newest of its items, retained or purged.
	for i := range st.Groups {
		g := &st.Groups[i]
		if g.EndedAt.IsZero() {
			continue
		}
		var c sql.NullInt64
		if err := l.wconn.QueryRowContext(ctx, `SELECT max(cursor) FROM items WHERE group_id = ?`, g.ID).Scan(&c); err != nil {
			return st, fmt.Errorf("load group %s: %w", g.ID, err)
		}
		g.LastCursor = max(g.LastCursor, c.Int64)
	}
	rows, err = l.wconn.QueryContext(ctx, `SELECT group_id, id, name, token_hash, joined_at, last_seen, expires_at, data, data_at, mesh_v2 FROM nodes`)
	if err != nil {
		return st, fmt.Errorf("load nodes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var n stream.NodeRecord
		var joined, seen, expires, dataAt int64
		var data string
		if err := rows.Scan(&n.Group, &n.ID, &n.Name, &n.TokenHash, &joined, &seen, &expires, &data, &dataAt, &n.MeshV2); err != nil {
			return st, fmt.Errorf("load nodes: %w", err)
		}
		n.JoinedAt, n.LastSeen, n.ExpiresAt, n.DataAt = fromMillis(joined), fromMillis(seen), fromMillis(expires), fromMillis(dataAt)
		if n.Data, err = decodeData(data); err != nil {
			return st, fmt.Errorf("load node %s/%s: %w", n.Group, n.ID, err)
		}
		st.Nodes = append(st.Nodes, n)
	}
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("load nodes: %w", err)
	}
	if err := l.loadPosition(ctx); err != nil {
		return st, err
	}
	st.Watermark = l.watermark.Load()
	return st, nil
}

// loadPosition reads where the log stands: the newest cursor a commit used, the newest item
// time and the purge marks. Open runs it, so a log appends and reads correctly whether or not
// Load is called first; the caller holds wmu (or is Open).
func (l *Log) loadPosition(ctx context.Context) error {
	var seq, purged, lastAt, purgedAt sql.NullInt64
	if err := l.wconn.QueryRowContext(ctx, `SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'items'),
		(SELECT value FROM meta WHERE key = 'purged_through'), (SELECT at FROM items ORDER BY cursor DESC LIMIT 1),
		(SELECT value FROM meta WHERE key = 'purged_at')`).Scan(&seq, &purged, &lastAt, &purgedAt); err != nil {
		return fmt.Errorf("load cursor: %w", err)
	}
	rows, err := l.wconn.QueryContext(ctx, `SELECT id, purged_through FROM groups`)
	if err != nil {
		return fmt.Errorf("load purge marks: %w", err)
	}
	defer rows.Close()
	marks := map[string]int64{}
	for rows.Next() {
		var gid string
		var mark int64
		if err := rows.Scan(&gid, &mark); err != nil {
			return fmt.Errorf("load purge marks: %w", err)
		}
		marks[gid] = mark
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("load purge marks: %w", err)
	}
	// Never hand out a cursor at or below one already used. (Cursors of a batch that failed
	// before this process started may come again: the sequence row is only written on commit,
	// and nobody ever saw them.)
	l.next = max(l.next, seq.Int64, purged.Int64)
	// The newest item time survives a purge that empties the table: clients hold it.
	l.lastAt = max(l.lastAt, lastAt.Int64, purgedAt.Int64)
	l.watermark.Store(max(l.watermark.Load(), seq.Int64, purged.Int64))
	l.marks.Set(marks, purged.Int64)
	return nil
}

// Stats reads the log's figures.
func (l *Log) Stats(ctx context.Context) stream.LogStats {
	var st stream.LogStats
	st.PurgedThrough = l.marks.Through()
	var oldest, first sql.NullInt64
	if err := l.read.QueryRowContext(ctx, `SELECT cursor, at FROM items WHERE cursor <= ? ORDER BY cursor LIMIT 1`, l.Watermark()).Scan(&first, &oldest); err == nil && oldest.Valid {
		st.OldestItemAt = fromMillis(oldest.Int64)
		// Cursors are dense apart from rolled-back batches, so this is exact or a slight overcount.
		st.RetainedItems = l.Watermark() - first.Int64 + 1
	}
	if fi, err := os.Stat(l.path); err == nil {
		st.Bytes = fi.Size()
	}
	if fi, err := os.Stat(l.path + "-wal"); err == nil {
		st.WALBytes = fi.Size()
	}
	return st
}

// fromMillis turns a stored time back into a time; 0 is "never" (the zero time).
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// millis is a time as stored: milliseconds since the epoch, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func encodeData(d map[string]string) string {
	if len(d) == 0 {
		return "{}"
	}
	b, _ := json.Marshal(d) // a map of strings always marshals
	return string(b)
}

func decodeData(s string) (map[string]string, error) {
	d := map[string]string{}
	if s == "" {
		return d, nil
	}
	if err := json.Unmarshal([]byte(s), &d); err != nil {
		return nil, fmt.Errorf("decode data: %w", err)
	}
	return d, nil
}
