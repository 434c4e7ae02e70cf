package jetstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

// Items are stored in frames: the items one batch appends to one group are one message on the
// group's items subject, its body their encodings (without the cursor) one per line, its
// header Mb-N their count. A batch of 30 publishes to a class is then one message for the
// server to replicate, index and acknowledge, not 30: a stream's cost is per message, and an
// atomic batch's per message even more so (measured in BenchmarkAppend).
//
// An item's cursor is then its frame's stream sequence times 2^16 plus its index in the frame,
// so cursors stay strictly increasing, never reused, and comparable across instances. Streams
// written before frames hold one item per message whose cursor is its sequence: the layout
// mark (subject P.v, written once, when the first instance that writes frames opens the
// stream) records the stream's last sequence at that moment, and every message at or before
// it keeps cursor = sequence. Since (B+1)·2^16 > B, the cursors of frames follow those of the
// old items, so readers resume across the upgrade with the cursors they hold.
const (
	frameShift = 16
	// maxFrameItems bounds the items of one frame (the index must fit below the shift).
	maxFrameItems = 1<<frameShift - 1
	// hdrCount is a frame's item count; a message without it holds one item.
	hdrCount = "Mb-N"
	// layoutFrames is what the layout mark holds: "frames <B>".
	layoutFrames = "frames"
)

// layout maps stream sequences to cursors and back.
type layout struct {
	// legacy is the last sequence whose message holds one item with cursor = sequence.
	legacy int64
}

// cursor is the cursor of item i of the message at seq.
func (y layout) cursor(seq int64, i int) int64 {
	if seq <= y.legacy {
		return seq
	}
	return seq<<frameShift | int64(i)
}

// seq is the sequence of the message that holds (or would hold) the item at cursor c.
func (y layout) seq(c int64) int64 {
	if c <= y.legacy {
		return c
	}
	return c >> frameShift
}

// through is the highest cursor an item stored at or before position seq can have: a reader
// that has read through it has read everything stored up to seq.
func (y layout) through(seq int64) int64 {
	if seq <= y.legacy {
		return seq
	}
	return seq<<frameShift | maxFrameItems
}

// frameCount is how many items a message of an items subject holds.
func frameCount(h nats.Header) int {
	n, err := strconv.Atoi(h.Get(hdrCount))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// lastCursor is the cursor of the last item of the message at seq.
func (y layout) lastCursor(seq int64, h nats.Header) int64 {
	return y.cursor(seq, frameCount(h)-1)
}

// frames packs items (all of one group, in cursor order) into messages on the group's items
// subject, each within maxBytes of body and maxFrameItems items, and returns them with the
// number of items each holds.
func (l *Log) frames(items []stream.Item, atText string, maxBytes int) ([]*nats.Msg, []int) {
	var msgs []*nats.Msg
	var counts []int
	var body []byte
	n := 0
	flush := func() {
		if n == 0 {
			return
		}
		m := nats.NewMsg(l.subj.items(items[0].Group))
		m.Header.Set(hdrAt, atText)
		m.Header.Set(hdrCount, strconv.Itoa(n))
		m.Data = body
		msgs, counts = append(msgs, m), append(counts, n)
		body, n = nil, 0
	}
	for i := range items {
		enc := itemBody(items[i])
		if n > 0 && (n == maxFrameItems || len(body)+1+len(enc) > maxBytes) {
			flush()
		}
		if n > 0 {
			body = append(body, '\n')
		}
		body = append(body, enc...)
		n++
	}
	flush()
	return msgs, counts
}

// itemsFrom decodes the items of one message of group gid's items subject, with their cursors.
func (l *Log) itemsFrom(m *rawMsg, gid string) ([]stream.Item, error) {
	if m.header.Get(hdrCount) == "" {
		it, err := itemFrom(m.data, l.lay.cursor(m.seq, 0), gid)
		if err != nil {
			return nil, err
		}
		return []stream.Item{it}, nil
	}
	out := make([]stream.Item, 0, frameCount(m.header))
	rest := m.data
	for i := 0; ; i++ {
		line, tail, more := bytes.Cut(rest, []byte{'\n'})
		it, err := itemFrom(line, l.lay.cursor(m.seq, i), gid)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
		if !more {
			return out, nil
		}
		rest = tail
	}
}

// openLayout reads the layout mark, writing it when the stream has none: the stream's last
// sequence now is the last one that may hold an item of the old layout. A stream just created
// on a cluster that just formed may answer nobody for a while: it retries until RetryFor.
func (l *Log) openLayout(ctx context.Context) error {
	giveUp := time.Now().Add(l.opts.RetryFor)
	for {
		err := l.readLayout(ctx)
		if err == nil || errors.Is(err, ErrLayout) || ctx.Err() != nil || time.Now().After(giveUp) {
			return err
		}
		l.log.Warn("read the stream's layout: retrying", "stream", l.opts.Stream, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (l *Log) readLayout(ctx context.Context) error {
	for range 3 {
		m, err := l.leaderGet(ctx, directRequest{LastFor: l.subj.layout()})
		if err != nil {
			return fmt.Errorf("read layout mark: %w", err)
		}
		if m != nil {
			kind, b, _ := strings.Cut(string(m.data), " ")
			legacy, err := strconv.ParseInt(b, 10, 64)
			if kind != layoutFrames || err != nil {
				return fmt.Errorf("stream %s has layout %q, which this meshbox does not know: %w", l.opts.Stream, m.data, ErrLayout)
			}
			l.lay = layout{legacy: legacy}
			return nil
		}
		ictx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
		info, err := l.st.Info(ictx)
		cancel()
		if err != nil {
			return fmt.Errorf("read layout: stream info: %w", err)
		}
		mark := nats.NewMsg(l.subj.layout())
		mark.Header.Set(hdrExpectSubjSeq, "0")
		mark.Data = fmt.Appendf(nil, "%s %d", layoutFrames, info.State.LastSeq)
		_, err = l.publish(ctx, []*nats.Msg{mark}, l.origin+"."+nuid.Next())
		if err != nil && !errors.Is(err, stream.ErrConflict) {
			return fmt.Errorf("write layout mark: %w", err)
		}
		// Written, or another instance wrote it first: read what is there.
	}
	return fmt.Errorf("layout mark of stream %s: %w", l.opts.Stream, stream.ErrConflict)
}

// ErrLayout is returned by Open when the stream was written in a layout this meshbox cannot
// read (by a newer meshbox).
var ErrLayout = errors.New("unknown stream layout")
