package jetstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"

	"meshbox/stream"
)

// rawMsg is a stored message as a direct get or a consumer returns it.
type rawMsg struct {
	subject string
	seq     int64
	header  nats.Header
	data    []byte
}

// directRequest is the server's direct get request (JSApiMsgGetRequest) in the form meshbox
// uses: a batch of messages from a sequence, filtered by subject.
type directRequest struct {
	Seq      uint64 `json:"seq,omitempty"`
	LastFor  string `json:"last_by_subj,omitempty"`
	NextFor  string `json:"next_by_subj,omitempty"`
	Batch    int    `json:"batch,omitempty"`
	MaxBytes int    `json:"max_bytes,omitempty"`
}

// directBatch asks any replica for a batch of messages and calls each with them in order. It
// returns how many messages matching the filter the replica holds after the last one sent.
func (l *Log) directBatch(ctx context.Context, req directRequest, each func(m *rawMsg)) (pending int64, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return 0, fmt.Errorf("direct get: %w", err)
	}
	inbox := l.nc.NewRespInbox()
	sub, err := l.nc.SubscribeSync(inbox)
	if err != nil {
		return 0, fmt.Errorf("direct get: %w", err)
	}
	defer sub.Unsubscribe()
	if err := l.nc.PublishRequest("$JS.API.DIRECT.GET."+l.opts.Stream, inbox, body); err != nil {
		return 0, fmt.Errorf("direct get: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return 0, fmt.Errorf("direct get from %s: %w", l.opts.Stream, err)
		}
		switch status := m.Header.Get("Status"); status {
		case "":
		case "404":
			return 0, nil // nothing at or after the sequence
		case "204":
			n, _ := strconv.ParseInt(m.Header.Get("Nats-Num-Pending"), 10, 64)
			return n, nil
		default:
			return 0, fmt.Errorf("direct get from %s: status %s %s", l.opts.Stream, status, m.Header.Get("Description"))
		}
		seq, err := strconv.ParseInt(m.Header.Get(js.SequenceHeader), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("direct get from %s: bad sequence: %w", l.opts.Stream, err)
		}
		each(&rawMsg{subject: m.Header.Get(js.SubjectHeader), seq: seq, header: m.Header, data: m.Data})
		if req.Batch <= 1 {
			return 0, nil // a single get has no end-of-batch message
		}
	}
}

// errCodeNoMessage is the JetStream API's answer to a get that found no message.
const errCodeNoMessage = 10037

// leaderGet asks the stream's leader for the one message req names (a sequence, or the first
// at or after it on a subject); nil when there is none. Unlike a direct get, which any replica
// may answer, its answer holds everything the stream has acknowledged.
func (l *Log) leaderGet(ctx context.Context, req directRequest) (*rawMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("get message: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	resp, err := l.nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+l.opts.Stream, body)
	if err != nil {
		return nil, fmt.Errorf("get message from %s: %w", l.opts.Stream, err)
	}
	var r struct {
		Error *struct {
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string `json:"subject"`
			Seq     int64  `json:"seq"`
			Header  []byte `json:"hdrs"`
			Data    []byte `json:"data"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, fmt.Errorf("get message from %s: %w", l.opts.Stream, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrCode == errCodeNoMessage:
		return nil, nil
	case r.Error != nil:
		return nil, fmt.Errorf("get message from %s: %s (%d)", l.opts.Stream, r.Error.Description, r.Error.ErrCode)
	case r.Message == nil:
		return nil, fmt.Errorf("get message from %s: empty answer", l.opts.Stream)
	}
	m := &rawMsg{subject: r.Message.Subject, seq: r.Message.Seq, header: nats.Header{}, data: r.Message.Data}
	if len(r.Message.Header) > 0 {
		if m.header, err = nats.DecodeHeadersMsg(r.Message.Header); err != nil {
			return nil, fmt.Errorf("get message from %s: %w", l.opts.Stream, err)
		}
	}
	return m, nil
}

// lastPerSubject delivers the newest message of every record, item and mark subject, up to
// the stream's sequence last, through an ordered consumer that is gone when it returns.
func (l *Log) lastPerSubject(ctx context.Context, last uint64, each func(m *rawMsg) error) error {
	if last == 0 {
		return nil
	}
	s := l.subj
	c, err := l.js.OrderedConsumer(ctx, l.opts.Stream, js.OrderedConsumerConfig{
		FilterSubjects: []string{s.p + ".g.*.i", s.p + ".g.*.r.>", s.p + ".m.*", s.purged(), s.p + ".d.*"},
		DeliverPolicy:  js.DeliverLastPerSubjectPolicy,
	})
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return fmt.Errorf("read records: %w", err)
	}
	if info.NumPending == 0 {
		return nil
	}
	for {
		batch, err := c.Fetch(512, js.FetchMaxWait(l.opts.Timeout))
		if err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read records: %w", err)
			}
			if err := each(&rawMsg{subject: m.Subject(), seq: int64(md.Sequence.Stream), header: m.Headers(), data: m.Data()}); err != nil {
				return err
			}
			if md.NumPending == 0 {
				return nil
			}
		}
		if err := batch.Error(); err != nil {
			return fmt.Errorf("read records: %w", err)
		}
		if got == 0 {
			return fmt.Errorf("read records: no message within %s", l.opts.Timeout)
		}
	}
}

// itemPrefix is what every item's encoding starts with before its cursor: the stored body
// leaves it and the cursor out (the cursor is only known once stored), and a read puts both
// back without decoding the item.
const itemPrefix = `{"cursor":`

func itemBody(it stream.Item) []byte {
	it.Cursor = 0
	return stream.EncodeItem(it)[len(itemPrefix)+1:]
}

func itemFrom(body []byte, cursor int64, gid string) (stream.Item, error) {
	b := make([]byte, 0, len(itemPrefix)+20+len(body))
	b = append(b, itemPrefix...)
	b = strconv.AppendInt(b, cursor, 10)
	b = append(b, body...)
	it, err := stream.DecodeItem(b)
	if err != nil {
		return it, fmt.Errorf("item %d: %w", cursor, err)
	}
	it.Group = gid
	return it, nil
}

// errBehind is reported when every replica asked lacked an item known to be committed.
var errBehind = errors.New("replica behind the committed watermark")

// ReadAfter reads up to limit items of a group with since < cursor <= through, in cursor order,
// stopping once maxBytes of items are read (after at least one).
func (l *Log) ReadAfter(ctx context.Context, gid string, since, through int64, limit, maxBytes int) (items []stream.Item, truncated bool, err error) {
	through = min(through, l.Watermark())
	if since < through && limit > 0 {
		for attempt := 0; ; attempt++ {
			var complete bool
			items, complete, err = l.readOnce(ctx, gid, since, through, limit, maxBytes)
			if err != nil {
				return nil, false, err
			}
			if complete {
				break
			}
			// A replica that is behind answered: ask again (perhaps another one) shortly.
			if attempt == 50 {
				return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, errBehind)
			}
			select {
			case <-ctx.Done():
				return nil, false, ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	// Read the purge marks after the items: a purge that ran meanwhile then shows as truncated.
	return items, l.marks.Truncated(gid, since), nil
}

// readOnce reads once and reports whether the answer is complete: whether the replica that
// answered held every committed item of the group this instance knows of.
func (l *Log) readOnce(ctx context.Context, gid string, since, through int64, limit, maxBytes int) ([]stream.Item, bool, error) {
	var items []stream.Item
	var decodeErr error
	size, beyond, full, last := 0, false, false, since
	// The frame holding the item after since may also hold items up to since: start there
	// and skip those. Each message holds at least one item, so limit messages and that
	// first one are enough.
	from := since + 1
	if since > l.lay.legacy {
		from = since >> frameShift
		if since&maxFrameItems == maxFrameItems {
			from++
		}
		from = max(from, l.lay.legacy+1)
	}
	req := directRequest{Seq: uint64(from), NextFor: l.subj.items(gid), Batch: min(limit, 1024) + 1}
	if maxBytes > 0 {
		// The server counts whole messages (subject and headers too), the contract counts
		// encodings: let the server stop only well past the budget, and cut here exactly.
		req.MaxBytes = 2*maxBytes + req.Batch*512
	}
	pending, err := l.directBatch(ctx, req, func(m *rawMsg) {
		if decodeErr != nil || beyond || full {
			return
		}
		its, err := l.itemsFrom(m, gid)
		if err != nil {
			decodeErr = err
			return
		}
		for _, it := range its {
			switch {
			case it.Cursor <= since:
				continue
			case it.Cursor > through:
				beyond = true
				return
			case len(items) >= limit || (maxBytes > 0 && size >= maxBytes):
				full = true
				return
			}
			size += len(it.JSON)
			last = it.Cursor
			items = append(items, it)
		}
	})
	if err == nil {
		err = decodeErr
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s after %d: %w", gid, since, err)
	}
	if beyond || full || pending > 0 || len(items) >= limit || (maxBytes > 0 && size >= maxBytes) {
		return items, true, nil
	}
	l.mu.RLock()
	known := l.lastItem[gid]
	l.mu.RUnlock()
	mark := l.marks.Mark(gid)
	// Replicas apply the log in order: one that lacks the newest item known (and not purged)
	// may lack any item after the last it sent.
	return items, known <= last || known <= mark, nil
}

// CursorAt returns the cursor a reader should resume from to get the group's items stamped
// after t: the cursor just before the first such item, or through when there is none. The
// items of a frame share their time, so that item is always the first of its frame.
func (l *Log) CursorAt(ctx context.Context, gid string, t time.Time, through int64) (int64, error) {
	through = min(through, l.Watermark())
	cut := t.UnixMilli()
	for from := int64(1); from <= l.lay.seq(through); {
		found, next := int64(0), int64(0)
		_, err := l.directBatch(ctx, directRequest{Seq: uint64(from), NextFor: l.subj.items(gid), Batch: 256}, func(m *rawMsg) {
			next = max(next, m.seq+1)
			first := l.lay.cursor(m.seq, 0)
			if found != 0 || first > through {
				return
			}
			if at, _ := strconv.ParseInt(m.header.Get(hdrAt), 10, 64); at > cut {
				found = first
			}
		})
		if err != nil {
			return 0, fmt.Errorf("cursor at %s: %w", stream.FormatTime(t), err)
		}
		if found != 0 {
			return found - 1, nil
		}
		if next == 0 {
			break
		}
		from = next
	}
	return through, nil
}
