// Package jetstream is meshbox's NATS JetStream log: it implements stream.Log on one JetStream
// stream so that several meshbox instances can share groups. A group's items are messages on
// its own subject, the items one batch appends to the group in one message (a frame,
// frames.go), and an item's cursor is made of its frame's stream sequence and its index in it
// (server-wide, strictly increasing, never reused, also not after a purge); group and node
// records are messages on subjects of the same
// stream, rolled up to their newest version, so a batch's items and its state changes are
// committed together by one atomic batch publish and every instance can Load the state.
//
// Guarantees, and where they differ from the SQLite log:
//   - A batch of at most Options.MaxBatch messages (items plus changes) is atomic: the
//     server's atomic batch publish (nats-server 2.12 or newer) stores all of it or nothing.
//     A larger batch is committed as consecutive atomic parts; if a part fails, the parts
//     before it stay. Keep MaxBatch at the server's max_batch_size (1000 by default) and the
//     rules' batch bounds below it (package app does).
//   - Retries are idempotent: every message carries a Nats-Msg-Id, so a batch whose ack was
//     lost is not stored twice; its cursors are recovered from the stream.
//   - Acknowledged means stored by the stream's replicas (a quorum of them for R3); how soon
//     it is on disk is the server's sync_interval (see docs/operations.md, "Running several boxes").
//   - Reads use direct gets, which any replica may answer; a reply that misses an item this
//     instance knows to be committed is retried, so a lagging replica never makes a reader
//     skip an item.
//   - Retention is Purge (run by the rules, once per cluster in a multi-instance deployment),
//     not MaxAge: the records of live groups share the stream and must outlive the event TTL.
//   - The lease that picks that one instance lapses by a per-message TTL, judged by the
//     server: instances whose clocks disagree never both hold it.
//   - The follower (Follow) delivers every record and mark, but items only of the groups the
//     instance wants (Want): its consumer filters on their subjects, and starts again, after
//     a marker per group added, whenever they change (follow.go).
package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

// Options configure a Log.
type Options struct {
	// Stream is the JetStream stream's name (default MESHBOX); Subjects its subject prefix
	// (default meshbox). Instances that share groups use the same two.
	Stream   string
	Subjects string
	// Replicas is the stream's replica count: 1, or 3 for a cluster that survives a node.
	Replicas int
	// MaxBatch is the most messages one atomic batch publish may hold: the server's
	// max_batch_size (1000 unless the server says otherwise).
	MaxBatch int
	// Timeout bounds one request to the server (default 5 s); RetryFor how long an append is
	// retried while the stream has no leader (default 20 s).
	Timeout  time.Duration
	RetryFor time.Duration
	Logger   *slog.Logger
	// Now returns the current time; tests may replace it. Nothing that must agree between
	// instances depends on it: a lease lapses by the server's clock.
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Stream == "" {
		o.Stream = "MESHBOX"
	}
	if o.Subjects == "" {
		o.Subjects = "meshbox"
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 20 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Headers meshbox sets on its messages.
const (
	hdrAt   = "Mb-At"  // an item's time, in Unix milliseconds (for purge and CursorAt)
	hdrDel  = "Mb-Del" // a record's tombstone
	hdrRoll = "Nats-Rollup"
)

// Log is the JetStream implementation of stream.Log.
type Log struct {
	opts Options
	log  *slog.Logger
	nc   *nats.Conn
	js   js.JetStream
	st   js.Stream
	subj subjects
	// lay maps stream sequences to cursors; set once by Open.
	lay layout

	// wmu serialises Append and Purge of this process.
	wmu    sync.Mutex
	closed atomic.Bool

	watermark atomic.Int64
	// pos is the stream's last sequence at the newest scan: a follower of the loaded state
	// starts after it.
	pos atomic.Int64

	// mu guards what this instance knows of the stream, kept up by its own writes and by
	// Observe (the follower of other instances' writes).
	mu sync.RWMutex
	// lastAt is the newest item time (ms): item times never decrease in cursor order.
	lastAt int64
	// lastItem holds each known group's newest item cursor, so a read that misses it can
	// tell that the replica answering was behind.
	lastItem map[string]int64
	// marks tell readers what the purge deleted (its own lock).
	marks stream.PurgeMarks
	// deleted holds groups whose records were tombstoned: the next Purge drops their subjects.
	deleted map[string]bool
	// recSeq holds each group's newest record message (what the expected-sequence check of a
	// batch built on the group compares), domSeq each domain's newest creation mark.
	recSeq map[string]int64
	domSeq map[string]int64

	// origin starts the message ids of this instance's messages, so its follower tells its own.
	origin string

	// fmu guards the groups whose items the follower delivers (see Want): wanted, and added,
	// those wanted since the follower last started its consumer, each owed a marker. refilter
	// tells the follower that the set changed.
	fmu      sync.Mutex
	wanted   map[string]bool
	added    []string
	refilter chan struct{}
}

var _ stream.Log = (*Log)(nil)

// Open creates or updates the stream on the connection nc and returns the log over it. The
// caller owns nc and closes it after the log.
func Open(ctx context.Context, nc *nats.Conn, opts Options) (*Log, error) {
	opts.defaults()
	j, err := js.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	l := &Log{
		opts: opts, log: opts.Logger, nc: nc, js: j, subj: subjects{p: opts.Subjects},
		lastItem: map[string]int64{}, deleted: map[string]bool{},
		recSeq: map[string]int64{}, domSeq: map[string]int64{}, origin: nuid.Next(),
		wanted: map[string]bool{}, refilter: make(chan struct{}, 1),
	}
	cfg := js.StreamConfig{
		Name:        opts.Stream,
		Description: "meshbox groups: items, records and purge marks",
		Subjects:    []string{l.subj.all()},
		Storage:     js.FileStorage,
		Replicas:    opts.Replicas,
		Retention:   js.LimitsPolicy,
		Discard:     js.DiscardOld,
		// Long enough to cover every retry of a batch whose ack was lost.
		Duplicates:         2 * time.Minute,
		AllowDirect:        true,
		AllowRollup:        true,
		AllowAtomicPublish: true,
		// Leases lapse by a per-message TTL, so the server's clock judges them (see Lease).
		// An existing stream is updated to allow it; the server never turns it off again.
		AllowMsgTTL: true,
	}
	// A cluster that just formed (or lost a node) may take a while to place a new stream:
	// retry until RetryFor is over.
	giveUp := time.Now().Add(opts.RetryFor)
	for {
		cctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		l.st, err = j.CreateOrUpdateStream(cctx, cfg)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil || time.Now().After(giveUp) {
			return nil, fmt.Errorf("create stream %s: %w", opts.Stream, err)
		}
		opts.Logger.Warn("create stream: retrying", "stream", opts.Stream, "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := l.openLayout(ctx); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", opts.Stream, err)
	}
	// A log knows its position from the start (its watermark, newest item time and purge
	// marks), before any Load: appends and reads may come first.
	if _, err := l.scan(ctx); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", opts.Stream, err)
	}
	return l, nil
}

// Close stops accepting appends. It does not close the connection, which the caller owns.
func (l *Log) Close() error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.closed.Store(true)
	return nil
}

// Watermark is the cursor of the newest committed item this instance knows: its own, and
// those its follower delivered or passed (a follower that delivers only some groups' items
// moves it past the others' too, which are in the stream for ReadAfter).
func (l *Log) Watermark() int64 { return l.watermark.Load() }

// Ping checks that the stream has a leader, which it needs to accept writes.
func (l *Log) Ping(ctx context.Context) error {
	if l.closed.Load() {
		return stream.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	if _, err := l.st.Info(ctx); err != nil {
		return fmt.Errorf("ping stream %s: %w", l.opts.Stream, err)
	}
	return nil
}

// Load reads the newest version of every record from the stream, the groups' newest items and
// the purge marks, and the stream's last sequence as the watermark.
func (l *Log) Load(ctx context.Context) (stream.State, error) {
	if l.closed.Load() {
		return stream.State{}, stream.ErrClosed
	}
	return l.scan(ctx)
}

// scan reads the stored state and updates what the log knows of the stream from it. A stream
// just created, or whose leader just changed, may answer no one for a moment, or not in time
// (instances started at once on a cluster that just formed): it retries until RetryFor.
func (l *Log) scan(ctx context.Context) (stream.State, error) {
	giveUp := time.Now().Add(l.opts.RetryFor)
	for {
		st, err := l.scanOnce(ctx)
		transient := errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)
		if err == nil || !transient || ctx.Err() != nil || time.Now().After(giveUp) {
			return st, err
		}
		l.log.Warn("load the stream: retrying", "stream", l.opts.Stream, "err", err)
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (l *Log) scanOnce(ctx context.Context) (stream.State, error) {
	var st stream.State
	ictx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	info, err := l.st.Info(ictx)
	cancel()
	if err != nil {
		return st, fmt.Errorf("load: stream info: %w", err)
	}
	groups := map[string]*stream.GroupRecord{}
	var nodes []stream.NodeRecord
	lastItem, marks := map[string]int64{}, map[string]int64{}
	deleted := map[string]bool{}
	recSeq, domSeq := map[string]int64{}, map[string]int64{}
	var purged, lastAt int64
	err = l.lastPerSubject(ctx, info.State.LastSeq, func(m *rawMsg) error {
		kind, gid, _, ok := l.subj.parse(m.subject)
		if !ok {
			return nil
		}
		del := m.header.Get(hdrDel) != ""
		if kind == 's' || kind == 'n' {
			recSeq[gid] = max(recSeq[gid], m.seq)
		}
		switch kind {
		case 'd':
			domSeq[gid] = m.seq
		case 'i':
			lastItem[gid] = l.lay.lastCursor(m.seq, m.header)
			if at, _ := strconv.ParseInt(m.header.Get(hdrAt), 10, 64); at > lastAt {
				lastAt = at
			}
		case 's':
			if del {
				deleted[gid] = true
				return nil
			}
			var g stream.GroupRecord
			if err := json.Unmarshal(m.data, &g); err != nil {
				return fmt.Errorf("decode group %s: %w", gid, err)
			}
			groups[gid] = &g
		case 'n':
			if del {
				return nil
			}
			var n stream.NodeRecord
			if err := json.Unmarshal(m.data, &n); err != nil {
				return fmt.Errorf("decode node %s: %w", m.subject, err)
			}
			nodes = append(nodes, n)
		case 'm':
			c, err := strconv.ParseInt(string(m.data), 10, 64)
			if err != nil {
				return fmt.Errorf("decode purge mark %s: %w", m.subject, err)
			}
			marks[gid] = c
		case 'p':
			c, at, err := parsePurgeMark(m.data)
			if err != nil {
				return fmt.Errorf("decode purge mark: %w", err)
			}
			purged, lastAt = c, max(lastAt, at)
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("load: %w", err)
	}
	for gid, g := range groups {
		g.LastCursor = 0
		if !g.EndedAt.IsZero() {
			// An ended group's dissolve item is its last: the newest of its items, retained or purged.
			g.LastCursor = max(lastItem[gid], marks[gid])
		}
		st.Groups = append(st.Groups, *g)
	}
	for _, n := range nodes {
		if groups[n.Group] != nil {
			st.Nodes = append(st.Nodes, n)
		}
	}
	l.mu.Lock()
	l.lastAt = max(l.lastAt, lastAt)
	for gid, c := range lastItem {
		l.lastItem[gid] = max(l.lastItem[gid], c)
	}
	known := map[string]int64{}
	for gid := range groups {
		known[gid] = marks[gid]
	}
	l.marks.Set(known, purged)
	for gid := range deleted {
		l.deleted[gid] = true
	}
	for gid, c := range recSeq {
		l.recSeq[gid] = max(l.recSeq[gid], c)
	}
	for d, c := range domSeq {
		l.domSeq[d] = max(l.domSeq[d], c)
	}
	l.mu.Unlock()
	// The watermark is the newest item's cursor, retained or purged; the stream's last
	// sequence (a record's, perhaps) is where a follower of this state starts.
	wm := purged
	for _, c := range lastItem {
		wm = max(wm, c)
	}
	for _, c := range marks {
		wm = max(wm, c)
	}
	l.advance(wm)
	l.pos.Store(max(l.pos.Load(), int64(info.State.LastSeq)))
	st.Watermark = l.watermark.Load()
	st.Position = int64(info.State.LastSeq)
	return st, nil
}

// Stats reports the stream's figures. RetainedItems counts every message of the stream,
// records included.
func (l *Log) Stats(ctx context.Context) stream.LogStats {
	var st stream.LogStats
	st.PurgedThrough = l.marks.Through()
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	info, err := l.st.Info(ctx)
	if err != nil {
		return st
	}
	st.RetainedItems = int64(info.State.Msgs)
	st.Bytes = int64(info.State.Bytes)
	var first *rawMsg
	_, err = l.directBatch(ctx, directRequest{Seq: 1, NextFor: l.subj.allItems(), Batch: 1}, func(m *rawMsg) {
		first = m
	})
	if err == nil && first != nil {
		if at, err := strconv.ParseInt(first.header.Get(hdrAt), 10, 64); err == nil {
			st.OldestItemAt = time.UnixMilli(at).UTC()
		}
	}
	return st
}
