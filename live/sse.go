package live

import (
	"strconv"
	"time"
)

// AppendEvent appends one Server-Sent Event to b: an optional id (id < 0: none), its name and
// one data line. data must hold no newline (JSON never holds a raw one).
func AppendEvent(b []byte, id int64, event string, data []byte) []byte {
	if id >= 0 {
		b = append(b, "id: "...)
		b = strconv.AppendInt(b, id, 10)
		b = append(b, '\n')
	}
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	return append(b, "\n\n"...)
}

// AppendComment appends a comment line (a heartbeat, or a first sign of life for proxies).
func AppendComment(b []byte, text string) []byte {
	b = append(b, ": "...)
	b = append(b, text...)
	return append(b, "\n\n"...)
}

// AppendRetry appends the reconnection delay an EventSource waits.
func AppendRetry(b []byte, d time.Duration) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, d.Milliseconds(), 10)
	return append(b, "\n\n"...)
}
