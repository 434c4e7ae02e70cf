package rules

import (
	"fmt"
	"time"
)

// NodeByteBurstSeconds is how many seconds of its byte rate a node may store at once: a
// lesson's bursts (a whole class's sprites starting at once) pass, one flood of large publishes
// waits its share.
const NodeByteBurstSeconds = 16

// allowBytes charges n bytes to the node's byte rate, beside its publish rate: publishes are
// counted, but one publish may carry a thousand large events, and it is bytes that fill the
// disk and make the purge delete classmates' history.
func (e *Engine) allowBytes(gid, nid string, n int) error {
	if ok, wait := e.byteRate.AllowN(gid+"/"+nid, e.now(), n); !ok {
		return &RateLimitError{What: fmt.Sprintf("node %s stores too many bytes per second (%d in this request)", nid, n), RetryAfter: max(wait, time.Second)}
	}
	return nil
}

// eventBytes is what a publish stores of its own: names, payloads and order keys.
func eventBytes(events []EventIn) int {
	n := 0
	for _, ev := range events {
		n += len(ev.Name) + len(ev.OrderKey)
		if ev.Payload != nil {
			n += len(*ev.Payload)
		}
	}
	return n
}

// dataBytes is what a data change stores of its own: keys and values.
func dataBytes(data map[string]string) int {
	n := 0
	for k, v := range data {
		n += len(k) + len(v)
	}
	return n
}
