package server

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"meshbox/apierror"
)

// pollGapMax bounds the gap between a long-poll answer and the node's next poll that counts
// as a round trip.
const pollGapMax = 10 * time.Second

// parseWait reads a long-poll's wait parameter, in seconds: "" is no wait, more than
// maxWait is maxWait. The seconds are clamped before they become a Duration: wait=1e10 times
// a second is past the int64 range, and its conversion is not a long wait but whatever the
// platform makes of it (on amd64 a negative one, which answered at once and had the client
// poll in a tight loop). What is no number of seconds (NaN, ±Inf, negative, not a number) is
// refused with 400, as before.
func parseWait(v string, maxWait time.Duration) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || secs < 0 || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return 0, errorf(http.StatusBadRequest, "invalid", "wait must be a number of seconds, 0 or more")
	}
	if maxWait <= 0 {
		return 0, nil
	}
	if secs >= maxWait.Seconds() {
		return maxWait, nil
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// poll answers GET …/events: the items after the cursor at once, or, with wait, as soon as
// there are some (a long-poll, registered with package live while it waits).
func (s *Server) poll(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query() // parsed once: a long-poll is the most frequent request there is
	rd, err := s.openReader(r, q, "")
	if err != nil {
		return err
	}
	limit := 500
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 5000 {
			return errorf(http.StatusBadRequest, "invalid", "limit must be an integer from 1 to 5000")
		}
	}
	wait, err := parseWait(q.Get("wait"), s.cfg.MaxWait)
	if err != nil {
		return err
	}
	sub := s.hub.Subscribe(rd.node.Group, rd.node.ID, "longpoll")
	defer sub.Close()
	// A long-poll's round trip is the gap from the node's last answer being written to this
	// request arriving: the answer's way down, the client's turn-around, the request's way up
	// (and a new connection's setup, if the client opened one). A gap longer than pollGapMax
	// is a client that paused, not a link, and is not counted.
	if d, ok := sub.PollGap(time.Now(), pollGapMax); ok {
		s.live.ObserveRTT("longpoll", d)
		sub.ObserveRTT("poll gap", d)
	}
	b, err := sub.Read(r.Context(), rd.since, limit)
	if err != nil {
		return err
	}
	if len(b.Items) == 0 && !b.Truncated && s.store.Over(rd.node.Group, b.Next) {
		return errorf(http.StatusGone, "group_ended", "group "+rd.node.Group+" has ended")
	}
	if len(b.Items) == 0 && !b.Truncated && b.Gone == "" && wait > 0 {
		c, err := s.live.Open(r.Context(), s.clientIP(r), "longpoll")
		if err != nil {
			return err
		}
		// b.Next, not rd.since: nothing of the group is up to b.Next, and an older cursor
		// behind the tail would end the wait at once. A timer rather than a context with a
		// timeout: the wait needs no context of its own.
		came := sub.WaitFor(c.Context(), b.Next, wait)
		shuttingDown := c.ShuttingDown()
		c.Close()
		if r.Context().Err() != nil && !shuttingDown {
			return r.Context().Err() // the client went away; at shutdown it gets its page
		}
		if came {
			if b, err = sub.Read(r.Context(), b.Next, limit); err != nil {
				return err
			}
		}
	}
	if len(b.Items) == 0 && !b.Truncated && s.store.Over(rd.node.Group, b.Next) {
		return errorf(http.StatusGone, "group_ended", "group "+rd.node.Group+" has ended")
	}
	buf := make([]byte, 0, 64+itemsLen(b.Items))
	buf = append(buf, `{"items":`...)
	buf = appendItems(buf, b.Items)
	buf = append(buf, `,"next":`...)
	buf = strconv.AppendInt(buf, b.Next, 10)
	buf = append(buf, `,"truncated":`...)
	buf = strconv.AppendBool(buf, b.Truncated)
	if b.Gone != "" {
		// The page ends with the node's own leave item (a poll waiting at its removal is
		// answered at once with it): the reason, as the WebSocket's close text and the SSE
		// "gone" event say it. Its next poll is refused (401: the token matches no member).
		buf = append(buf, `,"gone":`...)
		buf = strconv.AppendQuote(buf, b.Gone)
	}
	buf = append(buf, "}\n"...)
	apierror.WriteRaw(w, http.StatusOK, buf)
	sub.Answered(time.Now())
	s.delivered("longpoll", b.Items)
	return nil
}
