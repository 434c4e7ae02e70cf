package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

// Error codes of the JetStream API that Append handles.
const (
	errCodeBatchIncomplete = 10176 // an atomic batch lost a message on the way: nothing was stored
	errCodeBatchDuplicate  = 10201 // an atomic batch holds a message id already stored
	// An expected-last-sequence check failed: another instance changed the state meanwhile.
	errCodeWrongLastSeq      = 10071
	errCodeWrongLastSeqConst = 10164
	// A message id of the batch is still being stored (a cluster proposed it, not yet
	// applied): an earlier attempt whose answer was lost is on its way.
	errCodeDuplicateInProcess = 10158
)

// pubAck is the server's answer to a publish or to a batch's commit.
type pubAck struct {
	Stream    string `json:"stream"`
	Seq       int64  `json:"seq"`
	Duplicate bool   `json:"duplicate,omitempty"`
	Count     int    `json:"count,omitempty"`
	Error     *struct {
		Code        int    `json:"code"`
		ErrCode     int    `json:"err_code"`
		Description string `json:"description"`
	} `json:"error,omitempty"`
}

// Append commits the batch's state changes and then its items, each group's in frames, as one
// message when that is all, else as one atomic batch publish (see the package doc for batches
// above MaxBatch), and gives the items their cursors from the stream sequences the server
// assigned.
func (l *Log) Append(ctx context.Context, b *stream.Batch) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed.Load() {
		return stream.ErrClosed
	}
	// Like a SQLite transaction, a batch once begun is finished whoever gave up waiting.
	ctx = context.WithoutCancel(ctx)
	l.mu.RLock()
	at := max(b.Now.UnixMilli(), l.lastAt)
	l.mu.RUnlock()
	msgs := make([]*nats.Msg, 0, len(b.Changes)+1)
	for _, c := range b.Changes {
		m, err := l.changeMsg(c)
		if err != nil {
			return fmt.Errorf("append %d items, %d changes: %w", len(b.Items), len(b.Changes), err)
		}
		msgs = append(msgs, m)
	}
	atText := strconv.FormatInt(at, 10)
	stamp := time.UnixMilli(at).UTC()
	for i := range b.Items {
		b.Items[i].At = stamp
	}
	// Frames: each run of consecutive items of one group (the rules put a batch's items of a
	// group together) is one message, or several for a large run, so cursors follow the
	// items' order in the batch.
	var counts []int // items per frame message
	maxBody := l.maxFrameBytes()
	for i := 0; i < len(b.Items); {
		j := i + 1
		for j < len(b.Items) && b.Items[j].Group == b.Items[i].Group {
			j++
		}
		ms, cs := l.frames(b.Items[i:j], atText, maxBody)
		msgs = append(msgs, ms...)
		counts = append(counts, cs...)
		i = j
	}
	first := len(b.Changes) // the index of the first frame's message
	if len(b.Groups)+len(b.Domains) > 0 {
		var err error
		if msgs, err = l.guard(b, msgs, len(counts)); err != nil {
			return fmt.Errorf("append %d items, %d changes: %w", len(b.Items), len(b.Changes), err)
		}
		first = len(msgs) - len(counts)
	}
	seqs := make([]int64, len(msgs))
	for start := 0; start < len(msgs); start += l.opts.MaxBatch {
		part := msgs[start:min(start+l.opts.MaxBatch, len(msgs))]
		lastSeq, err := l.publish(ctx, part, l.origin+"."+nuid.Next())
		if err != nil {
			if start > 0 {
				err = fmt.Errorf("after %d of %d messages were committed: %w", start, len(msgs), err)
			}
			return fmt.Errorf("append %d items, %d changes: %w", len(b.Items), len(b.Changes), err)
		}
		// A batch's messages are stored at consecutive sequences ending at the commit's.
		for j := range part {
			seqs[start+j] = lastSeq - int64(len(part)-1-j)
		}
		b.Last = lastSeq
	}
	k := 0
	for f, n := range counts {
		seq := seqs[first+f]
		for i := range n {
			it := &b.Items[k]
			it.Cursor = l.lay.cursor(seq, i)
			it.JSON = stream.EncodeItem(*it)
			k++
		}
	}
	l.marks.Apply(b.Changes)
	l.mu.Lock()
	l.lastAt = max(l.lastAt, at)
	for _, c := range b.Changes {
		if c.Kind == stream.DeleteGroup {
			delete(l.lastItem, c.Group.ID)
			l.deleted[c.Group.ID] = true
		}
	}
	for i, m := range msgs[:first] {
		switch kind, gid, _, _ := l.subj.parse(m.Subject); kind {
		case 's', 'n':
			l.recSeq[gid] = max(l.recSeq[gid], seqs[i])
		case 'd':
			l.domSeq[gid] = max(l.domSeq[gid], seqs[i])
		}
	}
	for _, it := range b.Items {
		l.lastItem[it.Group] = it.Cursor
	}
	l.mu.Unlock()
	if n := len(b.Items); n > 0 {
		l.advance(b.Items[n-1].Cursor)
	}
	return nil
}

// maxFrameBytes bounds a frame's body: well within the server's largest message.
func (l *Log) maxFrameBytes() int {
	return int(min(max(l.nc.MaxPayload()/2, 4<<10), 512<<10))
}

// Headers of JetStream's optimistic concurrency control.
const (
	hdrExpectSubjSeq = "Nats-Expected-Last-Subject-Sequence"
	hdrExpectSubject = "Nats-Expected-Last-Subject-Sequence-Subject"
)

// guard makes a batch built on the state at b.Base conditional: a creation mark per domain
// the batch creates groups in, and on one message per group the batch was built on, the check
// that no record of the group was stored since the one this instance knows. The server
// refuses the whole batch if any check fails. A change that this instance has already seen
// after Base is refused at once, without asking. It returns the messages to publish, the
// frames (the last nframes of msgs) still last.
func (l *Log) guard(b *stream.Batch, msgs []*nats.Msg, nframes int) ([]*nats.Msg, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]*nats.Msg, 0, len(b.Domains)+len(msgs)+len(b.Groups))
	for i, d := range b.Domains {
		if slices.Contains(b.Domains[:i], d) {
			continue // one mark per domain: a batch may not write a checked subject twice
		}
		seq := l.domSeq[d]
		if seq > b.Base {
			return nil, fmt.Errorf("a group was created in domain %s at %d, after %d: %w", d, seq, b.Base, stream.ErrConflict)
		}
		m := nats.NewMsg(l.subj.domain(d))
		m.Header.Set(hdrRoll, "sub")
		m.Header.Set(hdrExpectSubjSeq, strconv.FormatInt(seq, 10))
		out = append(out, m)
	}
	marks := len(out)
	out = append(out, msgs...)
	for i, gid := range b.Groups {
		seq := l.recSeq[gid]
		if seq > b.Base {
			return nil, fmt.Errorf("group %s changed at %d, after %d: %w", gid, seq, b.Base, stream.ErrConflict)
		}
		if marks+i == len(out) {
			// More groups than messages (groups only touched in memory): a check needs a
			// message to ride on. It goes before the items, which must stay last.
			m := nats.NewMsg(l.subj.check())
			m.Header.Set(hdrRoll, "sub")
			out = slices.Insert(out, len(out)-nframes, m)
		}
		// Checks go on the first messages: before any record of the batch, so the server
		// compares with what was stored before the batch.
		m := out[marks+i]
		m.Header.Set(hdrExpectSubjSeq, strconv.FormatInt(seq, 10))
		m.Header.Set(hdrExpectSubject, l.subj.records(gid))
	}
	return out, nil
}

// advance moves the watermark forward to c (never back).
func (l *Log) advance(c int64) {
	for {
		w := l.watermark.Load()
		if c <= w || l.watermark.CompareAndSwap(w, c) {
			return
		}
	}
}

// changeMsg is the message that stores one state change: the record's newest version (or its
// tombstone), rolling up the versions before it.
func (l *Log) changeMsg(c stream.Change) (*nats.Msg, error) {
	var m *nats.Msg
	switch c.Kind {
	case stream.PutGroup:
		m = nats.NewMsg(l.subj.group(c.Group.ID))
		g := c.Group
		g.LastCursor = 0
		m.Data, _ = json.Marshal(g) // a record of strings, times and bytes always marshals
	case stream.DeleteGroup:
		m = nats.NewMsg(l.subj.group(c.Group.ID))
		m.Header.Set(hdrDel, "1")
	case stream.PutNode:
		m = nats.NewMsg(l.subj.node(c.Node.Group, c.Node.ID))
		m.Data, _ = json.Marshal(c.Node)
	case stream.DeleteNode:
		m = nats.NewMsg(l.subj.node(c.Node.Group, c.Node.ID))
		m.Header.Set(hdrDel, "1")
	default:
		return nil, fmt.Errorf("unknown change kind %d", c.Kind)
	}
	m.Header.Set(hdrRoll, "sub")
	return m, nil
}

// publish stores msgs (at most MaxBatch) atomically and returns the last one's sequence. Every
// message gets a Nats-Msg-Id made of id, so a retry after a lost ack stores nothing twice.
func (l *Log) publish(ctx context.Context, msgs []*nats.Msg, id string) (int64, error) {
	return l.publishAgain(ctx, msgs, id, false)
}

// publishAgain is publish; unanswered tells that an earlier attempt with the same id got no
// answer and so may have been stored. The retry loop sets it after a lost answer; tests set it
// to replay a lost acknowledgement.
func (l *Log) publishAgain(ctx context.Context, msgs []*nats.Msg, id string, unanswered bool) (int64, error) {
	for i, m := range msgs {
		m.Header.Set(nats.MsgIdHdr, id+"-"+strconv.Itoa(i+1))
	}
	floor := l.streamLast()
	var lastErr error
	// A stream whose leader died elects another within seconds: retry until RetryFor is over.
	giveUp := time.Now().Add(l.opts.RetryFor)
	for attempt := 0; attempt == 0 || time.Now().Before(giveUp); attempt++ {
		if attempt > 0 {
			l.log.Warn("retrying append", "attempt", attempt, "messages", len(msgs), "err", lastErr)
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(min(time.Duration(attempt)*100*time.Millisecond, time.Second)):
			}
		}
		ack, err := l.publishOnce(ctx, msgs, id+"."+strconv.Itoa(attempt))
		if err != nil {
			lastErr = err
			unanswered = true
			continue // no answer: perhaps stored, perhaps not; the ids tell on the retry
		}
		if ack.Error != nil {
			switch ack.Error.ErrCode {
			case errCodeBatchDuplicate:
				// An earlier attempt was stored whole: find where.
				seq, found, err := l.findStored(ctx, msgs[len(msgs)-1], floor)
				if err == nil && !found {
					err = errors.New("find stored batch: the server reports it stored but it is not in the stream")
				}
				return seq, err
			case errCodeBatchIncomplete, errCodeDuplicateInProcess:
				lastErr = fmt.Errorf("%s", ack.Error.Description)
				continue
			case errCodeWrongLastSeq, errCodeWrongLastSeqConst:
				if unanswered {
					// An earlier attempt may have been stored, only its answer lost: then its
					// own messages moved the sequence this retry expects. A server without a
					// cluster checks a single message's expectation before its id (a cluster,
					// and any atomic batch, check the id first and answer "duplicate"), so the
					// refusal alone does not tell: look for the batch.
					seq, found, err := l.findStored(ctx, msgs[len(msgs)-1], floor)
					if err != nil {
						return 0, fmt.Errorf("publish to %s: after %s: %w", l.opts.Stream, ack.Error.Description, err)
					}
					if found {
						return seq, nil
					}
				}
				return 0, fmt.Errorf("publish to %s: %s: %w", l.opts.Stream, ack.Error.Description, stream.ErrConflict)
			}
			return 0, fmt.Errorf("publish to %s: %s (%d)", l.opts.Stream, ack.Error.Description, ack.Error.ErrCode)
		}
		if ack.Duplicate && len(msgs) == 1 {
			return ack.Seq, nil // the server tells a single message's original sequence
		}
		if len(msgs) > 1 && ack.Count != len(msgs) {
			return 0, fmt.Errorf("publish to %s: batch of %d stored as %d", l.opts.Stream, len(msgs), ack.Count)
		}
		return ack.Seq, nil
	}
	return 0, fmt.Errorf("publish to %s: %w", l.opts.Stream, lastErr)
}

// publishOnce sends msgs once: a single message as a plain publish, more as an atomic batch
// whose last message commits it. Only the commit is answered.
func (l *Log) publishOnce(ctx context.Context, msgs []*nats.Msg, batchID string) (*pubAck, error) {
	if len(msgs) > 1 {
		for i, m := range msgs {
			m.Header.Set("Nats-Batch-Id", batchID)
			m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i+1))
			if i < len(msgs)-1 {
				if err := l.nc.PublishMsg(m); err != nil {
					return nil, err
				}
			}
		}
		msgs[len(msgs)-1].Header.Set("Nats-Batch-Commit", "1")
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	resp, err := l.nc.RequestMsgWithContext(ctx, msgs[len(msgs)-1])
	if err != nil {
		return nil, err
	}
	var ack pubAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return nil, fmt.Errorf("decode ack: %w", err)
	}
	return &ack, nil
}

// streamLast is the stream's last sequence as this instance knows it: every message published
// from now on is stored after it.
func (l *Log) streamLast() int64 { return l.lay.seq(l.watermark.Load()) }

// findStored looks for last (the final message of a batch perhaps stored) after floor on its
// subject, by its message id, and returns its sequence and whether it is there. It asks the
// stream's leader, one message at a time: a replica answering a direct get may not hold yet
// what the leader stored, and an absence here decides that a write did not happen.
func (l *Log) findStored(ctx context.Context, last *nats.Msg, floor int64) (int64, bool, error) {
	id := last.Header.Get(nats.MsgIdHdr)
	for from := floor + 1; ; {
		m, err := l.leaderGet(ctx, directRequest{Seq: uint64(from), NextFor: last.Subject})
		if err != nil {
			return 0, false, fmt.Errorf("find stored batch: %w", err)
		}
		if m == nil {
			return 0, false, nil
		}
		if m.header.Get(nats.MsgIdHdr) == id {
			return m.seq, true, nil
		}
		from = m.seq + 1
	}
}
