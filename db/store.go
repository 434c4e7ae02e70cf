// Package db is meshbox's SQLite store: the schema, the single writer goroutine that commits
// concurrent writes in shared transactions (group commit), the rules that must hold inside those
// transactions (who may join, leave, publish; limits on counts), reads by cursor, and the purge.
package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver, so meshbox builds without cgo
)

// Options configure a Store.
type Options struct {
	// Synchronous is NORMAL (survives a process crash) or FULL (survives power loss).
	Synchronous        string
	EventTTL           time.Duration
	MaxGroupLifetime   time.Duration
	HostTTL            time.Duration
	MemberTTL          time.Duration
	MaxNodesPerGroup   int
	MaxGroupsPerDomain int
	MaxDataKeys        int
	// MaxReadBytes bounds the encoded items one ReadAfter returns (at least one item), so a
	// reader far behind never pulls thousands of large payloads into memory at once.
	MaxReadBytes int
	Logger       *slog.Logger
	Observer     Observer
	// Now returns the current time; tests may replace it.
	Now func() time.Time
}

// Observer receives the store's measurements; package metrics implements it.
type Observer interface {
	ObserveCommit(ops, items int, d time.Duration)
	ObserveAppended(kind string, n int)
	ObservePurge(items, groups, nodes int, d time.Duration)
}

// Hooks connect the writer to the live readers once they exist.
type Hooks struct {
	// OnCommit receives every committed batch of items in cursor order, right after the commit
	// and before any writer is acknowledged. It must not block.
	OnCommit func(items []Item)
	// Active reports whether a node has a stream open, which counts as activity.
	Active func(group, node string) bool
	// OnPurge is told, after the commit, that every item up to a cursor was deleted, so
	// in-memory copies can go too and readers behind it learn of the truncation.
	OnPurge func(through int64)
}

// Store is the SQLite-backed state of every group, node and stream.
type Store struct {
	opts   Options
	log    *slog.Logger
	obs    Observer
	now    func() time.Time
	path   string
	writer *sql.DB
	wconn  *sql.Conn
	read   *sql.DB
	ckpt   *sql.DB // the checkpointer's connection
	// readAfter is prepared once on the read pool: every reader behind the tail uses it.
	readAfter *sql.Stmt

	ops     chan *op
	stop    chan struct{}
	stopped chan struct{}
	// ckptStopped is closed when the checkpoint loop has ended.
	ckptStopped chan struct{}
	// ckptReq asks the writer to finish a checkpoint between two batches (see checkpointLoop).
	ckptReq chan struct{}
	hooks   Hooks
	started bool
	start   sync.Once
	close   sync.Once
	closeMu sync.RWMutex
	closed  bool

	// Writer-owned state. mu guards it against concurrent readers; only the writer goroutine
	// changes it.
	mu            sync.RWMutex
	groups        map[string]*groupState
	lastCursor    int64 // the writer's newest cursor, committed or not
	lastAt        int64
	purgedThrough int64
	committed     atomic.Int64 // the newest committed cursor, what readers may see

	stmts statements
	// commitHook lets in-package tests force a commit failure.
	commitHook func() error
}

type groupState struct {
	Group
	endedAt   time.Time
	endReason string
	// endCursor is the dissolve item's cursor.
	endCursor int64
	// purged is the newest cursor of this group's items that the purge deleted.
	purged int64
	nodes  map[string]*nodeState
	// former holds the token hashes of the nodes of an ended group, so their streams can still
	// read the final items.
	former map[string][]byte
}

type nodeState struct {
	Node
	tokenHash []byte
}

type noopObserver struct{}

func (noopObserver) ObserveCommit(int, int, time.Duration)     {}
func (noopObserver) ObserveAppended(string, int)               {}
func (noopObserver) ObservePurge(int, int, int, time.Duration) {}
func defaultNow() time.Time                                    { return time.Now() }
func (o *Options) defaults() {
	if o.Synchronous == "" {
		o.Synchronous = "NORMAL"
	}
	if o.EventTTL <= 0 {
		o.EventTTL = 10 * time.Minute
	}
	if o.MaxGroupLifetime <= 0 {
		o.MaxGroupLifetime = 6 * time.Hour
	}
	if o.HostTTL <= 0 {
		o.HostTTL = 150 * time.Second
	}
	if o.MemberTTL <= 0 {
		o.MemberTTL = 600 * time.Second
	}
	if o.MaxNodesPerGroup <= 0 {
		o.MaxNodesPerGroup = 250
	}
	if o.MaxGroupsPerDomain <= 0 {
		o.MaxGroupsPerDomain = 200
	}
	if o.MaxDataKeys <= 0 {
		o.MaxDataKeys = 100
	}
	if o.MaxReadBytes <= 0 {
		o.MaxReadBytes = 256 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = noopObserver{}
	}
	if o.Now == nil {
		o.Now = defaultNow
	}
}

func dsn(path, synchronous string, readOnly bool) string {
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
	}
	return "file:" + path + "?" + q.Encode()
}

// Open opens (creating if needed) the database at path, migrates it and loads the live state.
// Call Start to begin accepting writes and Close to stop.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	opts.defaults()
	s := &Store{
		opts: opts, log: opts.Logger, obs: opts.Observer, now: opts.Now, path: path,
		ops: make(chan *op, 4096), stop: make(chan struct{}), stopped: make(chan struct{}), ckptStopped: make(chan struct{}), ckptReq: make(chan struct{}, 1),
		groups: make(map[string]*groupState),
	}
	var err error
	if s.writer, err = sql.Open("sqlite", dsn(path, strings.ToUpper(opts.Synchronous), false)); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	s.writer.SetMaxOpenConns(1)
	fail := func(err error) (*Store, error) {
		if s.wconn != nil {
			s.wconn.Close()
		}
		s.writer.Close()
		if s.read != nil {
			s.read.Close()
		}
		if s.ckpt != nil {
			s.ckpt.Close()
		}
		return nil, err
	}
	if s.wconn, err = s.writer.Conn(ctx); err != nil {
		return fail(fmt.Errorf("open %s: %w", path, err))
	}
	var mode string
	if err := s.wconn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("check journal mode: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("journal mode is %q, want wal (is %s on a filesystem without shared memory?)", mode, path))
	}
	if err := migrate(ctx, s.wconn); err != nil {
		return fail(err)
	}
	if s.read, err = sql.Open("sqlite", dsn(path, strings.ToUpper(opts.Synchronous), true)); err != nil {
		return fail(fmt.Errorf("open reader pool: %w", err))
	}
	if s.ckpt, err = sql.Open("sqlite", dsn(path, strings.ToUpper(opts.Synchronous), false)); err != nil {
		return fail(fmt.Errorf("open checkpointer: %w", err))
	}
	s.ckpt.SetMaxOpenConns(1)
	if s.readAfter, err = s.read.PrepareContext(ctx, `SELECT body FROM items WHERE group_id = ? AND cursor > ? ORDER BY cursor LIMIT ?`); err != nil {
		return fail(fmt.Errorf("prepare read after: %w", err))
	}
	s.read.SetMaxOpenConns(8)
	s.read.SetMaxIdleConns(8)
	if err := s.stmts.prepare(ctx, s.wconn); err != nil {
		return fail(err)
	}
	if err := s.loadState(ctx); err != nil {
		return fail(err)
	}
	return s, nil
}

// Start starts the writer goroutine with the hooks to the live readers.
func (s *Store) Start(h Hooks) {
	s.start.Do(func() {
		if h.OnCommit == nil {
			h.OnCommit = func([]Item) {}
		}
		if h.Active == nil {
			h.Active = func(string, string) bool { return false }
		}
		if h.OnPurge == nil {
			h.OnPurge = func(int64) {}
		}
		s.hooks = h
		s.started = true
		go s.writeLoop()
		go s.checkpointLoop()
	})
}

// Close finishes queued writes, stops the writer, checkpoints the WAL and closes the database.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		s.start.Do(func() {}) // a store closed before Start never gets a writer
		s.closeMu.Lock()
		s.closed = true
		s.closeMu.Unlock()
		close(s.stop)
		if s.started {
			<-s.stopped
			<-s.ckptStopped
		}
		ctx := context.Background()
		s.stmts.close()
		s.readAfter.Close()
		if _, cerr := s.wconn.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); cerr != nil {
			err = fmt.Errorf("checkpoint: %w", cerr)
		}
		err = errors.Join(err, s.wconn.Close(), s.read.Close(), s.ckpt.Close(), s.writer.Close())
	})
	return err
}

// checkpointInterval is how often the WAL is copied back into the database file, and
// walRestartBytes how large the WAL may grow before the writer restarts it.
const (
	checkpointInterval = time.Second
	walRestartBytes    = 8 << 20
)

// checkpointLoop copies the WAL into the database file in the background (PASSIVE: it never
// waits for, nor blocks, the writer), so commits rarely pay for a checkpoint's fsyncs. Under
// steady writes a background checkpoint never catches the last frames, and SQLite only starts
// the WAL over when a writer finds it fully copied; so once the WAL is large the writer is asked
// to copy the few frames left between two batches, and the WAL starts over.
func (s *Store) checkpointLoop() {
	defer close(s.ckptStopped)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			var busy, logFrames, done int
			if err := s.ckpt.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done); err != nil {
				s.log.Warn("checkpoint", "err", err)
				continue
			}
			s.log.Debug("checkpoint", "busy", busy, "wal_frames", logFrames, "copied", done)
			if fi, err := os.Stat(s.path + "-wal"); err == nil && fi.Size() > walRestartBytes {
				select {
				case s.ckptReq <- struct{}{}:
				default:
				}
			}
		}
	}
}

// ReaderDB is the read pool, exposed for pool statistics.
func (s *Store) ReaderDB() *sql.DB { return s.read }

// WriterDB is the writer's database handle, exposed for pool statistics.
func (s *Store) WriterDB() *sql.DB { return s.writer }

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// LastCursor is the cursor of the newest committed item (0 when none ever was).
func (s *Store) LastCursor() int64 { return s.committed.Load() }

// Ping checks that the database answers and accepts writes.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, func(t *txn) error {
		return t.exec(ctx, "INSERT INTO meta(key, value) VALUES('ping', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value", s.now().UnixMilli())
	})
}

func (s *Store) loadState(ctx context.Context) error {
	groups := make(map[string]*groupState)
	rows, err := s.wconn.QueryContext(ctx, `SELECT id, domain, name, host, created_at, expires_at, host_seen_at, use_ws, ended_at, end_reason, end_cursor, purged_through FROM groups`)
	if err != nil {
		return fmt.Errorf("load groups: %w", err)
	}
	now := s.now()
	for rows.Next() {
		g := &groupState{nodes: make(map[string]*nodeState)}
		var created, expires, hostSeen, ended int64
		if err := rows.Scan(&g.ID, &g.Domain, &g.Name, &g.Host, &created, &expires, &hostSeen, &g.UseWebSocket, &ended, &g.endReason, &g.endCursor, &g.purged); err != nil {
			rows.Close()
			return fmt.Errorf("load groups: %w", err)
		}
		g.CreatedAt, g.ExpiresAt = fromMillis(created), fromMillis(expires)
		// Clients could not send heartbeats while meshbox was down: give them a fresh period.
		g.HostSeenAt = maxTime(fromMillis(hostSeen), now)
		if ended != 0 {
			g.endedAt = fromMillis(ended)
		}
		groups[g.ID] = g
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return fmt.Errorf("load groups: %w", err)
	}
	rows.Close()
	rows, err = s.wconn.QueryContext(ctx, `SELECT group_id, id, name, token_hash, joined_at, last_seen, expires_at, data, data_at FROM nodes`)
	if err != nil {
		return fmt.Errorf("load nodes: %w", err)
	}
	for rows.Next() {
		n := &nodeState{}
		var joined, seen, expires, dataAt int64
		var data string
		if err := rows.Scan(&n.Group, &n.ID, &n.Name, &n.tokenHash, &joined, &seen, &expires, &data, &dataAt); err != nil {
			rows.Close()
			return fmt.Errorf("load nodes: %w", err)
		}
		n.JoinedAt, n.LastSeen, n.DataAt = fromMillis(joined), fromMillis(seen), fromMillis(dataAt)
		n.ExpiresAt = fromMillis(expires)
		n.Data, err = decodeData(data)
		if err != nil {
			rows.Close()
			return fmt.Errorf("load node %s/%s: %w", n.Group, n.ID, err)
		}
		if g := groups[n.Group]; g != nil {
			n.Host = g.Host == n.ID
			// Clients could not reach meshbox while it was down: give them a fresh period.
			n.ExpiresAt = maxTime(n.ExpiresAt, now.Add(s.ttl(n.Host)))
			g.nodes[n.ID] = n
			g.Nodes++
		}
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return fmt.Errorf("load nodes: %w", err)
	}
	rows.Close()
	var seq, purged, lastAt sql.NullInt64
	if err := s.wconn.QueryRowContext(ctx, `SELECT (SELECT seq FROM sqlite_sequence WHERE name = 'items'), (SELECT value FROM meta WHERE key = 'purged_through'), (SELECT at FROM items ORDER BY cursor DESC LIMIT 1)`).Scan(&seq, &purged, &lastAt); err != nil {
		return fmt.Errorf("load cursor: %w", err)
	}
	s.mu.Lock()
	s.groups = groups
	s.lastCursor = max(seq.Int64, purged.Int64)
	s.purgedThrough = purged.Int64
	s.lastAt = lastAt.Int64
	s.committed.Store(s.lastCursor)
	s.mu.Unlock()
	return nil
}

// fromMillis turns a stored time back into a time; 0 is "never" (the zero time).
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// ms is t as clients see it: UTC, millisecond precision.
func ms(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.Truncate(time.Millisecond).UTC()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
