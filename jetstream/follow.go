package jetstream

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

var _ stream.Follower = (*Log)(nil)

// Follow delivers every message of the stream after the position of the last Load (or Open),
// in stream order, through one ordered consumer, until ctx ends. It keeps what the log knows
// of the stream (newest items, records and purge marks) up with what other instances write,
// before the entry is delivered: a read or a check after an entry sees its effect.
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

// follow runs one ordered consumer from next and returns the sequence to resume from.
func (l *Log) follow(ctx context.Context, next int64, ch chan<- stream.Entry) (int64, error) {
	c, err := l.js.OrderedConsumer(ctx, l.opts.Stream, js.OrderedConsumerConfig{
		DeliverPolicy: js.DeliverByStartSequencePolicy, OptStartSeq: uint64(next),
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
	for {
		m, err := it.Next()
		if err != nil {
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
			en = stream.Entry{Seq: seq}
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
	en := stream.Entry{Seq: m.seq, Own: strings.HasPrefix(m.header.Get(nats.MsgIdHdr), l.origin+".")}
	kind, gid, nid, ok := l.subj.parse(m.subject)
	if !ok {
		return en, nil
	}
	if kind == 'i' {
		items, err := l.itemsFrom(m, gid)
		if err != nil {
			return en, err
		}
		en.Items = items
		last := items[len(items)-1]
		l.mu.Lock()
		l.lastItem[gid] = max(l.lastItem[gid], last.Cursor)
		l.lastAt = max(l.lastAt, last.At.UnixMilli())
		l.mu.Unlock()
		l.advance(last.Cursor)
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
