package jetstream

import (
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

var _ stream.Leaser = (*Log)(nil)

// Lease reports whether this instance holds the lease name for the next ttl. The lease is the
// newest message on its subject ("<holder> <until, Unix ms>"); taking or renewing it is a
// publish that expects that message to still be the newest, so of instances racing for a
// lapsed lease exactly one wins.
func (l *Log) Lease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if l.closed.Load() {
		return false, stream.ErrClosed
	}
	subj := l.subj.lease(name)
	var last *rawMsg
	if _, err := l.directBatch(ctx, directRequest{LastFor: subj}, func(m *rawMsg) { last = m }); err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	now := l.opts.Now()
	var seq int64
	if last != nil {
		seq = last.seq
		holder, until, _ := strings.Cut(string(last.data), " ")
		ms, _ := strconv.ParseInt(until, 10, 64)
		if holder != l.origin && now.UnixMilli() < ms {
			return false, nil // another instance holds it
		}
	}
	m := nats.NewMsg(subj)
	m.Header.Set(hdrRoll, "sub")
	m.Header.Set(hdrExpectSubjSeq, strconv.FormatInt(seq, 10))
	m.Data = fmt.Appendf(nil, "%s %d", l.origin, now.Add(ttl).UnixMilli())
	if _, err := l.publish(ctx, []*nats.Msg{m}, l.origin+"."+nuid.Next()); err != nil {
		if errors.Is(err, stream.ErrConflict) {
			return false, nil // another instance took it first
		}
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return true, nil
}
