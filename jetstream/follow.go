package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

var _ stream.Follower = (*Log)(nil)

// Follow delivers the stream's messages after the position of the last Load (or Open), in
// stream order, through one ordered consumer, until ctx ends: every record, purge mark, check
// and lease, and the items of the groups wanted (Want). It keeps what the log knows of the
// stream (newest items, records and purge marks) up with what other instances write, before
// the entry is delivered: a read or a check after an entry sees its effect.
//
// When the wanted groups change, the consumer starts again, at the follower's own next
// undelivered sequence, with the new filter, after a marker for each group added: so nothing
// wanted is skipped or delivered twice, and what the marker's Through covers (everything
// stored before the new consumer's start) is in the stream for ReadAfter.
func (l *Log) Follow(ctx context.Context) <-chan stream.Entry {
	ch := make(chan stream.Entry, 1024)
	go func() {
		defer close(ch)
		next := l.pos.Load() + 1
		for ctx.Err() == nil {
			var err error
			next, err = l.follow(ctx, next, ch)
			if err != nil && ctx.Err() == nil {
				// The ordered consumer recreates itself on gaps and server changes; this is for
				// failures to create it at all (no leader yet): try again shortly.
				l.log.Warn("follow stream", "from", next, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(200 * time.Millisecond):
				}
			}
		}
	}()
	return ch
}

// Want adds group gid to the groups whose items the follower delivers (on), or drops it. A
// change makes the follower start its consumer again with the new filter; every group added
// gets its marker first (see stream.Follower).
func (l *Log) Want(gid string, on bool) {
	l.fmu.Lock()
	if l.wanted[gid] == on {
		l.fmu.Unlock()
		return
	}
	if on {
		l.wanted[gid] = true
		l.added = append(l.added, gid)
	} else {
		delete(l.wanted, gid)
		l.added = slices.DeleteFunc(l.added, func(g string) bool { return g == gid })
	}
	l.fmu.Unlock()
	select {
	case l.refilter <- struct{}{}:
	default: // a change is already signalled; the follower reads the whole set
	}
}

// Wanted is how many groups' items the follower delivers.
func (l *Log) Wanted() int {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	return len(l.wanted)
}

// filter takes the consumer's filter for the wanted groups and the groups owed a marker.
func (l *Log) filter() (filter, added []string) {
	l.fmu.Lock()
	defer l.fmu.Unlock()
	filter = l.subj.followed()
	for _, gid := range slices.Sorted(maps.Keys(l.wanted)) {
		filter = append(filter, l.subj.items(gid))
	}
	added, l.added = l.added, nil
	return filter, added
}

// owe puts groups back among those owed a marker (their markers could not be made), unless
// they were dropped meanwhile.
func (l *Log) owe(gids []string) {
	l.fmu.Lock()
	for _, gid := range gids {
		if l.wanted[gid] && !slices.Contains(l.added, gid) {
			l.added = append(l.added, gid)
		}
	}
	l.fmu.Unlock()
}

// cursorThrough is a cursor that covers every item stored at or before stream sequence seq,
// whatever the message at seq holds (the layout's through, frames.go): positions (Entry.Seq,
// Position) and cursors (Item.Cursor, Watermark) stay apart everywhere else.
func (l *Log) cursorThrough(seq int64) int64 { return l.lay.through(seq) }

// markers makes the marker of each group added, for a consumer that starts at next: every
// item of the group stored before next is covered by cursorThrough(next-1), and its newest
// item, asked of the stream's leader (a replica may lag), tells the lag check of reads and an
// ended group's last cursor.
func (l *Log) markers(ctx context.Context, next int64, added []string) ([]stream.Entry, error) {
	through := l.cursorThrough(next - 1)
	out := make([]stream.Entry, 0, len(added))
	for _, gid := range added {
		m, err := l.leaderGet(ctx, directRequest{LastFor: l.subj.items(gid)})
		if err != nil {
			return nil, fmt.Errorf("newest item of %s: %w", gid, err)
		}
		last := l.marks.Mark(gid)
		if m != nil {
			last = max(last, l.lay.lastCursor(m.seq, m.header))
		}
		out = append(out, stream.Entry{Seq: next - 1, Through: through, Followed: gid, LastItem: last})
	}
	l.mu.Lock()
	for _, en := range out {
		l.lastItem[en.Followed] = max(l.lastItem[en.Followed], en.LastItem)
	}
	l.mu.Unlock()
	l.advance(through)
	return out, nil
}

// follow runs one ordered consumer from next, for the groups wanted now, and returns the
// sequence to resume from: when the consumer fails, or when the wanted groups changed.
func (l *Log) follow(ctx context.Context, next int64, ch chan<- stream.Entry) (int64, error) {
	select {
	case <-l.refilter: // the set is read below
	default:
	}
	filter, added := l.filter()
	if len(added) > 0 {
		marks, err := l.markers(ctx, next, added)
		if err != nil {
			l.owe(added)
			return next, err
		}
		for _, en := range marks {
			select {
			case ch <- en:
			case <-ctx.Done():
				return next, ctx.Err()
			}
		}
	}
	c, err := l.js.OrderedConsumer(ctx, l.opts.Stream, js.OrderedConsumerConfig{
		FilterSubjects: filter, DeliverPolicy: js.DeliverByStartSequencePolicy, OptStartSeq: uint64(next),
	})
	if err != nil {
		return next, fmt.Errorf("create consumer: %w", err)
	}
	// Short pulls with frequent heartbeats: a follower whose server died notices within
	// seconds and starts again from where it was (the default waits half a minute).
	it, err := c.Messages(js.PullExpiry(3*time.Second), js.PullHeartbeat(time.Second))
	if err != nil {
		return next, fmt.Errorf("consume: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	// A change of the wanted groups stops the consumer. The watcher is gone before follow
	// returns, so a change it did not take is seen by the next consumer.
	var refiltered atomic.Bool
	done, watched := make(chan struct{}), make(chan struct{})
	defer func() { close(done); <-watched }()
	go func() {
		defer close(watched)
		select {
		case <-l.refilter:
			refiltered.Store(true)
			it.Stop()
		case <-done:
		}
	}()
	for {
		m, err := it.Next()
		if err != nil {
			if refiltered.Load() {
				return next, nil // start again with the new filter, from the first undelivered
			}
			return next, fmt.Errorf("next message: %w", err)
		}
		md, err := m.Metadata()
		if err != nil {
			return next, fmt.Errorf("message metadata: %w", err)
		}
		seq := int64(md.Sequence.Stream)
		if seq < next {
			continue // delivered already (a consumer recreated from further back)
		}
		en, err := l.observe(&rawMsg{subject: m.Subject(), seq: seq, header: m.Headers(), data: m.Data()})
		if err != nil {
			// A message meshbox cannot read is skipped, not retried forever: it is logged
			// and its position passed, as nothing else can be done with it.
			l.log.Error("follow stream: unreadable message", "seq", seq, "subject", m.Subject(), "err", err)
			en = stream.Entry{Seq: seq, Through: l.cursorThrough(seq)}
		}
		select {
		case ch <- en:
		case <-ctx.Done():
			return next, ctx.Err()
		}
		next = seq + 1
	}
}

// observe updates what the log knows from one message of the stream and returns it as an
// entry: a frame's items, or a record's change.
func (l *Log) observe(m *rawMsg) (stream.Entry, error) {
	kind, gid, nid, ok := l.subj.parse(m.subject)
	// Through is the message's own cursor: an items message's last item's, any other's the
	// first cursor its position could hold (no item holds it). So every instance moves its
	// watermark to the same cursor for the same message, the writer's own included.
	through := l.lay.cursor(m.seq, 0)
	if ok && kind == 'i' {
		through = l.lay.lastCursor(m.seq, m.header)
	}
	en := stream.Entry{Seq: m.seq, Through: through, Own: strings.HasPrefix(m.header.Get(nats.MsgIdHdr), l.origin+".")}
	// Every item stored up to here is known committed: the wanted groups' were delivered, the
	// others' are in the stream.
	defer l.advance(through)
	if !ok {
		return en, nil
	}
	if kind == 'i' {
		if en.Own {
			en.Decode = func() ([]stream.Item, error) { return l.itemsFrom(m, gid) }
		} else {
			items, err := l.itemsFrom(m, gid)
			if err != nil {
				return en, err
			}
			en.Items = items
		}
		// The frame's header tells its last cursor and its items' time: no need to decode.
		at, _ := strconv.ParseInt(m.header.Get(hdrAt), 10, 64)
		l.mu.Lock()
		l.lastItem[gid] = max(l.lastItem[gid], through)
		l.lastAt = max(l.lastAt, at)
		l.mu.Unlock()
		return en, nil
	}
	return en, l.observeState(&en, m, kind, gid, nid)
}

// observeState updates what the log knows from a message of records or marks.
func (l *Log) observeState(en *stream.Entry, m *rawMsg, kind byte, gid, nid string) error {
	del := m.header.Get(hdrDel) != ""
	l.mu.Lock()
	defer l.mu.Unlock()
	switch kind {
	case 's':
		l.recSeq[gid] = max(l.recSeq[gid], m.seq)
		if del {
			en.Change = &stream.Change{Kind: stream.DeleteGroup, Group: stream.GroupRecord{ID: gid}}
			l.marks.Forget(gid)
			delete(l.lastItem, gid)
			l.deleted[gid] = true
			break
		}
		var g stream.GroupRecord
		if err := json.Unmarshal(m.data, &g); err != nil {
			return fmt.Errorf("decode group %s: %w", gid, err)
		}
		en.Change = &stream.Change{Kind: stream.PutGroup, Group: g}
		l.marks.Know(gid)
	case 'n':
		l.recSeq[gid] = max(l.recSeq[gid], m.seq)
		if del {
			en.Change = &stream.Change{Kind: stream.DeleteNode, Node: stream.NodeRecord{Group: gid, ID: nid}}
			break
		}
		var n stream.NodeRecord
		if err := json.Unmarshal(m.data, &n); err != nil {
			return fmt.Errorf("decode node %s: %w", m.subject, err)
		}
		en.Change = &stream.Change{Kind: stream.PutNode, Node: n}
	case 'd':
		l.domSeq[gid] = max(l.domSeq[gid], m.seq)
	case 'm':
		c, err := strconv.ParseInt(string(m.data), 10, 64)
		if err != nil {
			return fmt.Errorf("decode purge mark %s: %w", m.subject, err)
		}
		l.marks.Purged(map[string]int64{gid: c}, 0)
	case 'p':
		c, at, err := parsePurgeMark(m.data)
		if err != nil {
			return fmt.Errorf("decode purge mark: %w", err)
		}
		l.marks.Purged(nil, c)
		l.lastAt = max(l.lastAt, at)
		en.Purged = c
	}
	return nil
}

// Position appends a barrier message (no state, rolled up so one is kept) and returns its
// sequence: once the follower delivered it (or anything after it), it delivered every batch
// committed before the call. The stream's last sequence would not do: its message may be
// gone (a forgotten group's), and a follower never delivers a deleted message.
func (l *Log) Position(ctx context.Context) (int64, error) {
	if l.closed.Load() {
		return 0, stream.ErrClosed
	}
	m := nats.NewMsg(l.subj.check())
	m.Header.Set(hdrRoll, "sub")
	seq, err := l.publish(ctx, []*nats.Msg{m}, l.origin+"."+nuid.Next())
	if err != nil {
		return 0, fmt.Errorf("stream position: %w", err)
	}
	return seq, nil
}
