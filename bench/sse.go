package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// sseEvent is one dispatched Server-Sent Event.
type sseEvent struct {
	ID    string
	Event string
	Data  []byte
}

// sseScanner splits a text/event-stream body into events following the
// WHATWG rules the browser's EventSource applies: fields up to the first
// colon, one optional space after it, data lines joined with "\n", comment
// lines ignored, an event dispatched at a blank line.
type sseScanner struct {
	r    *bufio.Reader
	data bytes.Buffer
}

// newSSEScanner reads events from r.
func newSSEScanner(r io.Reader) *sseScanner {
	return &sseScanner{r: bufio.NewReaderSize(r, 32<<10)}
}

// Next returns the next event that has data. The returned Data is valid
// until the following call. At the end of the stream it returns io.EOF
// (an event not terminated by a blank line is dropped, as browsers do).
func (s *sseScanner) Next() (sseEvent, error) {
	var ev sseEvent
	s.data.Reset()
	hasData := false
	for {
		line, err := s.readLine()
		if err != nil {
			if err == io.EOF {
				return sseEvent{}, io.EOF
			}
			return sseEvent{}, fmt.Errorf("read event stream: %w", err)
		}
		if len(line) == 0 {
			if !hasData {
				ev = sseEvent{}
				continue
			}
			b := s.data.Bytes()
			ev.Data = b[:len(b)-1] // drop the newline after the last data line
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment: heartbeat
		}
		field, value := line, []byte(nil)
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			field, value = line[:i], line[i+1:]
			if len(value) > 0 && value[0] == ' ' {
				value = value[1:]
			}
		}
		switch string(field) {
		case "data":
			s.data.Write(value)
			s.data.WriteByte('\n')
			hasData = true
		case "event":
			ev.Event = string(value)
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.ID = string(value)
			}
		}
	}
}

// readLine returns one line without its CR, LF or CRLF terminator.
func (s *sseScanner) readLine() ([]byte, error) {
	line, err := s.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// A line longer than the buffer (a huge item): gather it whole.
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = s.r.ReadSlice('\n')
			buf = append(buf, line...)
		}
		line = buf
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}
