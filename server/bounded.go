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

// UnmarshalJSON decodes the array one event at a time.
func (l *eventList) UnmarshalJSON(b []byte) error {
	l.events = l.events[:0]
	if string(b) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := expectDelim(dec, '[', "events", "an array"); err != nil {
		return err
	}
	for dec.More() {
		if err := l.limits.CheckEventCount(len(l.events) + 1); err != nil {
			return err
		}
		var e eventIn
		if err := dec.Decode(&e); err != nil {
			return fieldContext(err, fmt.Sprintf("events[%d]", len(l.events)))
		}
		l.events = append(l.events, e)
	}
	return nil
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
