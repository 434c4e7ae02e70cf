package jetstream

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

// purgeBatch bounds the items one purge step deletes; their groups' marks go in one atomic
// batch, so it stays well below MaxBatch.
const purgeBatch = 500

// Purge deletes the items stamped before cutoff, oldest first, purgeBatch at a time, and the
// subjects of groups whose records were deleted. For each step it first stores the purge marks
// (each group's newest deleted item, and the stream's), then deletes the items: a reader that
// finds items gone finds the marks too.
func (l *Log) Purge(ctx context.Context, cutoff time.Time) (stream.Purged, error) {
	var res stream.Purged
	if err := l.forgetDeleted(ctx); err != nil {
		return res, err
	}
	for ctx.Err() == nil {
		n, msgs, through, err := l.purgeStep(ctx, cutoff.UnixMilli())
		if err != nil {
			return res, err
		}
		res.Items += n
		res.Through = max(res.Through, through)
		if msgs < purgeBatch {
			break
		}
	}
	return res, nil
}

// purgeStep deletes the old items of up to purgeBatch messages and returns how many items and
// messages it deleted and the newest deleted cursor.
func (l *Log) purgeStep(ctx context.Context, cutoff int64) (n, nmsgs int, through int64, err error) {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.closed.Load() {
		return 0, 0, 0, stream.ErrClosed
	}
	// Whole messages are deleted: the frame holding the mark's item is gone with it.
	from := l.lay.seq(l.marks.Through()) + 1
	perGroup := map[string]int64{}
	old := true
	var newest int64 // the newest deleted item's time
	var last int64   // the last deleted message
	// Item times never decrease in cursor order, so the old items are a prefix of the items.
	_, err = l.directBatch(ctx, directRequest{Seq: uint64(from), NextFor: l.subj.allItems(), Batch: purgeBatch}, func(m *rawMsg) {
		at, perr := strconv.ParseInt(m.header.Get(hdrAt), 10, 64)
		if !old || perr != nil || at >= cutoff {
			old = false
			return
		}
		_, gid, _, _ := l.subj.parse(m.subject)
		c := l.lay.lastCursor(m.seq, m.header)
		perGroup[gid] = c
		through, last = c, m.seq
		newest = max(newest, at)
		n += frameCount(m.header)
		nmsgs++
	})
	if err != nil {
		return 0, 0, 0, fmt.Errorf("find old items: %w", err)
	}
	if n == 0 {
		return 0, 0, 0, nil
	}
	msgs := make([]*nats.Msg, 0, len(perGroup)+1)
	for gid, c := range perGroup {
		m := nats.NewMsg(l.subj.mark(gid))
		m.Header.Set(hdrRoll, "sub")
		m.Data = strconv.AppendInt(nil, c, 10)
		msgs = append(msgs, m)
	}
	m := nats.NewMsg(l.subj.purged())
	m.Header.Set(hdrRoll, "sub")
	// The stream's mark keeps the newest deleted item's time too: once every item is gone, it is
	// what keeps the times of later items from going back.
	m.Data = fmt.Appendf(nil, "%d %d", through, newest)
	msgs = append(msgs, m)
	if _, err := l.publish(ctx, msgs, nuid.Next()); err != nil {
		return 0, 0, 0, fmt.Errorf("store purge marks: %w", err)
	}
	l.marks.Purged(perGroup, through)
	pctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	if err := l.st.Purge(pctx, js.WithPurgeSubject(l.subj.allItems()), js.WithPurgeSequence(uint64(last+1))); err != nil {
		return 0, 0, 0, fmt.Errorf("purge items through %d: %w", through, err)
	}
	return n, nmsgs, through, nil
}

// forgetDeleted drops every message of the groups whose records were deleted (the group's
// items, records, tombstones and mark).
func (l *Log) forgetDeleted(ctx context.Context) error {
	l.mu.RLock()
	gids := make([]string, 0, len(l.deleted))
	for gid := range l.deleted {
		gids = append(gids, gid)
	}
	l.mu.RUnlock()
	for _, gid := range gids {
		pctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
		err := l.st.Purge(pctx, js.WithPurgeSubject(l.subj.groupAll(gid)))
		if err == nil {
			err = l.st.Purge(pctx, js.WithPurgeSubject(l.subj.mark(gid)))
		}
		cancel()
		if err != nil {
			return fmt.Errorf("forget group %s: %w", gid, err)
		}
		l.mu.Lock()
		delete(l.deleted, gid)
		l.mu.Unlock()
	}
	return nil
}

// parsePurgeMark reads the stream's purge mark: "<through> <newest deleted item's time, ms>"
// (or "<through>" alone, as written before the time was kept).
func parsePurgeMark(b []byte) (through, at int64, err error) {
	c, t, found := strings.Cut(string(b), " ")
	if through, err = strconv.ParseInt(c, 10, 64); err != nil {
		return 0, 0, err
	}
	if found {
		if at, err = strconv.ParseInt(t, 10, 64); err != nil {
			return 0, 0, err
		}
	}
	return through, at, nil
}
