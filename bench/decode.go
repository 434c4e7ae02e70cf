package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The readers decode every item they receive, and the tool shares the
// machine with the server it measures, so decoding is done by a small
// purpose-built scanner: about ten times cheaper than encoding/json, whose
// reflection would otherwise take a noticeable share of a 2-core box at
// 100,000 deliveries/s. It reads the few fields the tool needs and skips
// the rest; keys are matched exactly (the server writes them so).

// lexer walks one JSON document.
type lexer struct {
	b []byte
	i int
}

// errSyntax reports malformed input at the lexer's position.
func (l *lexer) errSyntax(want string) error {
	return fmt.Errorf("json: want %s at offset %d", want, l.i)
}

// ws skips whitespace.
func (l *lexer) ws() {
	for l.i < len(l.b) {
		switch l.b[l.i] {
		case ' ', '\t', '\n', '\r':
			l.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, or 0 at the end.
func (l *lexer) peek() byte {
	l.ws()
	if l.i < len(l.b) {
		return l.b[l.i]
	}
	return 0
}

// literal consumes an exact token such as null.
func (l *lexer) literal(tok string) bool {
	if bytes.HasPrefix(l.b[l.i:], []byte(tok)) {
		l.i += len(tok)
		return true
	}
	return false
}

// rawString consumes a string and returns its contents without the quotes
// and whether it contains escapes.
func (l *lexer) rawString() ([]byte, bool, error) {
	if l.peek() != '"' {
		return nil, false, l.errSyntax("string")
	}
	l.i++
	start, escaped := l.i, false
	for {
		j := bytes.IndexByte(l.b[l.i:], '"')
		if j < 0 {
			return nil, false, l.errSyntax("end of string")
		}
		end := l.i + j
		if !escaped && bytes.IndexByte(l.b[l.i:end], '\\') >= 0 {
			escaped = true
		}
		l.i = end + 1
		// The quote ends the string unless an odd run of backslashes
		// escapes it.
		n := 0
		for k := end - 1; k >= start && l.b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return l.b[start:end], escaped, nil
		}
	}
}

// str consumes a string (or null, as "") and returns it unescaped.
func (l *lexer) str() (string, error) {
	if l.peek() == 'n' && l.literal("null") {
		return "", nil
	}
	raw, escaped, err := l.rawString()
	if err != nil {
		return "", err
	}
	if !escaped {
		return string(raw), nil
	}
	var s string
	quoted := l.b[l.i-len(raw)-2 : l.i]
	if err := json.Unmarshal(quoted, &s); err != nil {
		return "", fmt.Errorf("json string: %w", err)
	}
	return s, nil
}

// int consumes a number and returns it as an integer.
func (l *lexer) int() (int64, error) {
	l.ws()
	start := l.i
	for l.i < len(l.b) && strings.IndexByte("+-0123456789.eE", l.b[l.i]) >= 0 {
		l.i++
	}
	tok := string(l.b[start:l.i])
	if n, err := strconv.ParseInt(tok, 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(tok, 64)
	if err != nil {
		return 0, l.errSyntax("number")
	}
	return int64(f), nil
}

// boolean consumes true or false.
func (l *lexer) boolean() (bool, error) {
	l.ws()
	switch {
	case l.literal("true"):
		return true, nil
	case l.literal("false"):
		return false, nil
	}
	return false, l.errSyntax("boolean")
}

// skip consumes any value.
func (l *lexer) skip() error {
	switch l.peek() {
	case '"':
		_, _, err := l.rawString()
		return err
	case '{', '[':
		depth := 0
		for l.i < len(l.b) {
			switch l.b[l.i] {
			case '"':
				if _, _, err := l.rawString(); err != nil {
					return err
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					l.i++
					return nil
				}
			}
			l.i++
		}
		return l.errSyntax("end of value")
	case 0:
		return l.errSyntax("value")
	default:
		start := l.i
		for l.i < len(l.b) && strings.IndexByte(",}] \t\r\n", l.b[l.i]) < 0 {
			l.i++
		}
		if l.i == start {
			return l.errSyntax("value")
		}
		return nil
	}
}

// object consumes an object, calling field for each key; field must
// consume the value.
func (l *lexer) object(field func(key []byte) error) error {
	if l.peek() == 'n' && l.literal("null") {
		return nil
	}
	if l.peek() != '{' {
		return l.errSyntax("object")
	}
	l.i++
	if l.peek() == '}' {
		l.i++
		return nil
	}
	for {
		key, esc, err := l.rawString()
		if err != nil {
			return err
		}
		if esc {
			var k string
			if err := json.Unmarshal(l.b[l.i-len(key)-2:l.i], &k); err != nil {
				return fmt.Errorf("json key: %w", err)
			}
			key = []byte(k)
		}
		if l.peek() != ':' {
			return l.errSyntax("colon")
		}
		l.i++
		if err := field(key); err != nil {
			return err
		}
		switch l.peek() {
		case ',':
			l.i++
		case '}':
			l.i++
			return nil
		default:
			return l.errSyntax("comma or end of object")
		}
	}
}

// array consumes an array, calling elem for each element; elem must
// consume it.
func (l *lexer) array(elem func() error) error {
	if l.peek() == 'n' && l.literal("null") {
		return nil
	}
	if l.peek() != '[' {
		return l.errSyntax("array")
	}
	l.i++
	if l.peek() == ']' {
		l.i++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch l.peek() {
		case ',':
			l.i++
		case ']':
			l.i++
			return nil
		default:
			return l.errSyntax("comma or end of array")
		}
	}
}

// kindName returns the item kind, sharing the strings of known kinds so
// decoding them allocates nothing.
func kindName(raw []byte) string {
	for _, k := range [...]string{"event", "data", "join", "leave", "dissolve", "reset"} {
		if string(raw) == k {
			return k
		}
	}
	return string(raw)
}

// item consumes one stream item.
func (l *lexer) item(it *item) error {
	*it = item{}
	return l.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "cursor":
			it.Cursor, err = l.int()
		case "kind":
			var raw []byte
			var esc bool
			if raw, esc, err = l.rawString(); err == nil && !esc {
				it.Kind = kindName(raw)
			} else if err == nil {
				l.i -= len(raw) + 2
				it.Kind, err = l.str()
			}
		case "payload":
			if l.peek() != '"' && l.peek() != 'n' {
				return l.skip() // a non-string payload is not one of ours
			}
			it.Payload, err = l.str()
		case "data":
			if l.peek() != '{' {
				return l.skip()
			}
			it.Data = map[string]string{}
			err = l.object(func(k []byte) error {
				if l.peek() != '"' {
					return l.skip()
				}
				v, err := l.str()
				it.Data[string(k)] = v
				return err
			})
		default:
			err = l.skip()
		}
		return err
	})
}

// items consumes an array of items, appending to dst.
func (l *lexer) items(dst []item) ([]item, error) {
	err := l.array(func() error {
		dst = append(dst, item{})
		return l.item(&dst[len(dst)-1])
	})
	return dst, err
}

// decodeItem decodes one item (an SSE event's data).
func decodeItem(b []byte, it *item) error {
	l := lexer{b: b}
	if err := l.item(it); err != nil {
		return err
	}
	return l.end()
}

// decodeWSMessage decodes a server→client WebSocket message, reusing
// msg.Items' storage.
func decodeWSMessage(b []byte, msg *wsMessage) error {
	l := lexer{b: b}
	items := msg.Items[:0]
	*msg = wsMessage{}
	err := l.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "type":
			msg.Type, err = l.str()
		case "items":
			items, err = l.items(items)
		case "next":
			msg.Next, err = l.int()
		default:
			err = l.skip()
		}
		return err
	})
	msg.Items = items
	if err != nil {
		return err
	}
	return l.end()
}

// decodePollAnswer decodes a long-poll answer, reusing a.Items' storage.
func decodePollAnswer(b []byte, a *pollAnswer) error {
	l := lexer{b: b}
	items := a.Items[:0]
	*a = pollAnswer{}
	err := l.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "items":
			items, err = l.items(items)
		case "next":
			a.Next, err = l.int()
		case "truncated":
			a.Truncated, err = l.boolean()
		default:
			err = l.skip()
		}
		return err
	})
	a.Items = items
	if err != nil {
		return err
	}
	return l.end()
}

// end checks that only whitespace follows the document.
func (l *lexer) end() error {
	if l.peek() != 0 {
		return l.errSyntax("end of document")
	}
	return nil
}
