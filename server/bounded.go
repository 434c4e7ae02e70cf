package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"

	"meshbox/rules"
)

// The two parts of a request that a client makes as long as it likes — a publish's events
// and a data change's keys — are decoded one element at a time and refused, with the rules'
// own error, as soon as they pass the rules' count or sizes. Decoded whole, a 4 MiB body of
// 300,000 keys or a million empty events became about five times its size in maps and
// structs before the rules saw it; now nothing beyond the limit is ever built. Both types
// are json.Unmarshalers, so the HTTP body and a WebSocket message decode them alike: the
// outer decode checks the syntax without allocating and hands over the value's bytes.

// eventList is a publish's events, at most the rules' MaxEventsPerPublish of them.
type eventList struct {
	limits rules.Limits
	events []eventIn
}

// UnmarshalJSON decodes the array one event at a time. encoding/json hands an Unmarshaler
// only a value it has already checked whole, so an array's elements are found by their
// nesting and strings alone (nextElement) and each is decoded on its own, with no Decoder,
// its buffer and its token reads per publish. Anything but an array takes the Decoder, for
// its exact type error.
func (l *eventList) UnmarshalJSON(b []byte) error {
	l.events = l.events[:0]
	if string(b) == "null" {
		return nil
	}
	if len(b) == 0 || b[0] != '[' {
		dec := json.NewDecoder(bytes.NewReader(b))
		return expectDelim(dec, '[', "events", "an array")
	}
	for rest := b[1:]; ; {
		elem, after, err := nextElement(rest)
		if err != nil || elem == nil {
			return err
		}
		if err := l.limits.CheckEventCount(len(l.events) + 1); err != nil {
			return err
		}
		var e eventIn
		if err := json.Unmarshal(elem, &e); err != nil {
			return fieldContext(err, fmt.Sprintf("events[%d]", len(l.events)))
		}
		l.events = append(l.events, e)
		rest = after
	}
}

// errNotArray answers bytes that do not hold the rest of a well-formed array; encoding/json
// never hands such bytes to an Unmarshaler.
var errNotArray = errors.New("malformed JSON array")

// nextElement returns the next element of an array whose opening bracket (or previous
// element) was consumed, and the bytes after it: nil at the closing bracket. It relies on the
// array being valid JSON, checking only what it needs not to run past the end.
func nextElement(b []byte) (elem, rest []byte, err error) {
	i := skipSpace(b, 0)
	if i < len(b) && b[i] == ',' {
		i = skipSpace(b, i+1)
	}
	if i >= len(b) {
		return nil, nil, errNotArray
	}
	if b[i] == ']' {
		return nil, b[i+1:], nil
	}
	start, depth := i, 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return b[start:i], b[i:], nil
			}
			depth--
		case ',':
			if depth == 0 {
				return b[start:i], b[i:], nil
			}
		}
	}
	return nil, nil, errNotArray
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// dataMap is a data change, at most the rules' MaxDataKeys keys (repeats counted) within
// their key and value sizes. A null value is "" (the key's deletion), as it was for a
// decoded map[string]string.
type dataMap struct {
	limits rules.Limits
	data   map[string]string
}

// UnmarshalJSON decodes the object one key at a time.
func (m *dataMap) UnmarshalJSON(b []byte) error {
	m.data = nil
	if string(b) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := expectDelim(dec, '{', "data", "an object"); err != nil {
		return err
	}
	m.data = map[string]string{}
	for n := 1; dec.More(); n++ {
		t, err := dec.Token()
		if err != nil {
			return err
		}
		k, _ := t.(string) // an object's keys are always strings
		if t, err = dec.Token(); err != nil {
			return err
		}
		var v string
		switch t := t.(type) {
		case string:
			v = t
		case nil:
		default:
			// A nested value was opened: report it without reading it.
			return &json.UnmarshalTypeError{Value: jsonKind(t), Type: reflect.TypeFor[string](), Field: "data." + k}
		}
		if err := m.limits.CheckDataEntry(n, k, v); err != nil {
			return err
		}
		m.data[k] = v
	}
	return nil
}

// expectDelim reads the opening delimiter of a value that must be an array or object.
func expectDelim(dec *json.Decoder, want json.Delim, field, kind string) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return &json.UnmarshalTypeError{Value: jsonKind(t), Type: typeOfKind(kind), Field: field}
	}
	return nil
}

// fieldContext names the element an element's type error is in.
func fieldContext(err error, at string) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		te2 := *te
		if te2.Field == "" {
			te2.Field = at
		} else {
			te2.Field = at + "." + te2.Field
		}
		return &te2
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// jsonKind names a token's JSON type the way json.UnmarshalTypeError does.
func jsonKind(t json.Token) string {
	switch t := t.(type) {
	case json.Delim:
		if t == '[' {
			return "array"
		}
		return "object"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// typeOfKind is a Go type of the JSON kind, for decodeError's wording.
func typeOfKind(kind string) reflect.Type {
	if kind == "an array" {
		return reflect.TypeFor[[]string]()
	}
	return reflect.TypeFor[map[string]string]()
}
