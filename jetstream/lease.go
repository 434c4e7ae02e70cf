package jetstream

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	js "github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"meshbox/stream"
)

var _ stream.Leaser = (*Log)(nil)

// Lease reports whether this instance holds the lease name for the next ttl. The lease is the
// newest message on its subject, naming its holder and carrying a per-message TTL of ttl
// (rounded up to whole seconds): the NATS server removes it once it lapsed, so whether a lease
// lapsed is judged by the server alone, never by comparing one instance's clock with a time
// another instance wrote. Taking a free lease is a publish that expects the subject empty,
// renewing it one that expects the holder's own message to be the newest: of instances racing,
// exactly one wins, and a renewal that arrives after the lease lapsed fails.
//
// Lease returns true only once the server stored the message, which it did after Lease was
// called: the message lives at least ttl from then, so the holder holds it for ttl from the
// call on its own clock (only clock rates matter, not their settings).
func (l *Log) Lease(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if l.closed.Load() {
		return false, stream.ErrClosed
	}
	subj := l.subj.lease(name)
	// The leader, not any replica: a replica behind it could show a lease that lapsed (a
	// wasted turn) or miss one (refused by the expectation anyway).
	last, err := l.leaderGet(ctx, directRequest{LastFor: subj})
	if err != nil {
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	now := l.opts.Now()
	var seq int64
	if last != nil {
		seq = last.seq
		holder, until, _ := strings.Cut(string(last.data), " ")
		if holder != l.origin {
			if last.header.Get(js.MsgTTLHeader) != "" {
				return false, nil // another instance holds it: the server has not removed it
			}
			// A lease without a TTL was written by a meshbox from before leases had one (the
			// stream had no TTLs): only the time it names tells when it lapses.
			ms, _ := strconv.ParseInt(until, 10, 64)
			if now.UnixMilli() < ms {
				return false, nil
			}
		}
	}
	m := nats.NewMsg(subj)
	m.Header.Set(hdrRoll, "sub")
	m.Header.Set(hdrExpectSubjSeq, strconv.FormatInt(seq, 10))
	// The server keeps whole seconds (at least one) and would cut a fraction off: round up.
	m.Header.Set(js.MsgTTLHeader, strconv.FormatInt(int64(max((ttl+time.Second-1)/time.Second, 1)), 10)+"s")
	// The time is only for meshbox instances from before leases had a TTL, which may share the
	// stream during an upgrade and judge a lease by it.
	m.Data = fmt.Appendf(nil, "%s %d", l.origin, now.Add(ttl).UnixMilli())
	if _, err := l.publish(ctx, []*nats.Msg{m}, l.origin+"."+nuid.Next()); err != nil {
		if errors.Is(err, stream.ErrConflict) {
			// Another instance took it first, or this instance's own lease lapsed before the
			// renewal arrived (perhaps taken by another meanwhile).
			return false, nil
		}
		return false, fmt.Errorf("lease %s: %w", name, err)
	}
	return true, nil
}
