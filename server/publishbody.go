package server

import "unicode/utf8"

// publishBody is a publish request's body: {"events":[{"name":…,"payload":…},…]}.
type publishBody struct {
	Events eventList `json:"events"`
}

// fastDecoder is a request body that can read the form nearly every client sends without
// encoding/json's reflection; decode falls back to encoding/json for anything else.
type fastDecoder interface {
	// decodeFast decodes b and reports true, or reports false for a body it does not read
	// (having decoded anything or not): encoding/json then decodes it, with its own answer.
	decodeFast(b []byte) bool
}

// decodeFast reads {"events":[{"name":"…","payload":"…"|null},…]} with any spacing, keys
// spelled exactly, strings without escapes, within the rules' event count. Anything else —
// an escape, another key or type, a control character or invalid UTF-8 in a string, one
// event too many, a syntax error — is left to encoding/json, so every answer but the
// ordinary one (the error and its wording, a replaced invalid byte) is encoding/json's.
// Publishing was the box's most frequent request, and encoding/json's validation pass,
// reflection and per-element decode were a tenth of its CPU.
func (p *publishBody) decodeFast(b []byte) bool {
	s := scanner{b: b}
	if !s.lit('{') || string(s.plainString()) != "events" || !s.lit(':') || !s.lit('[') {
		return false
	}
	l := &p.Events
	l.events = l.events[:0]
	if !s.lit(']') {
		for {
			e, ok := s.event()
			if !ok || l.limits.CheckEventCount(len(l.events)+1) != nil {
				return false
			}
			l.events = append(l.events, e)
			if s.lit(',') {
				continue
			}
			if !s.lit(']') {
				return false
			}
			break
		}
	}
	return s.lit('}') && s.end()
}

// scanner reads the few JSON forms decodeFast accepts from b, from i on.
type scanner struct {
	b []byte
	i int
}

func (s *scanner) space() {
	for s.i < len(s.b) && (s.b[s.i] == ' ' || s.b[s.i] == '\t' || s.b[s.i] == '\n' || s.b[s.i] == '\r') {
		s.i++
	}
}

// lit consumes c after any space, if it is next.
func (s *scanner) lit(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only space is left.
func (s *scanner) end() bool {
	s.space()
	return s.i == len(s.b)
}

// plainString consumes a string without escapes or control characters, in valid UTF-8, and
// returns its bytes (nil: not such a string next; nothing is consumed that matters then,
// since the caller gives up).
func (s *scanner) plainString() []byte {
	s.space()
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return nil
	}
	start := s.i + 1
	for j := start; j < len(s.b); j++ {
		switch c := s.b[j]; {
		case c == '"':
			v := s.b[start:j:j]
			if !utf8.Valid(v) {
				return nil
			}
			s.i = j + 1
			return v
		case c == '\\' || c < 0x20:
			return nil
		}
	}
	return nil
}

// null consumes null, if it is next.
func (s *scanner) null() bool {
	s.space()
	if len(s.b)-s.i >= 4 && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// event consumes {"name":"…","payload":"…"|null} (either key may be left out or repeated; the
// last one counts, as in encoding/json).
func (s *scanner) event() (e eventIn, ok bool) {
	if !s.lit('{') {
		return e, false
	}
	if s.lit('}') {
		return e, true
	}
	for {
		k := s.plainString()
		if k == nil || !s.lit(':') {
			return e, false
		}
		switch string(k) {
		case "name":
			v := s.plainString()
			if v == nil {
				return e, false
			}
			e.Name = string(v)
		case "payload":
			if s.null() {
				e.Payload = nil
				break
			}
			v := s.plainString()
			if v == nil {
				return e, false
			}
			p := string(v)
			e.Payload = &p
		default:
			return e, false
		}
		if s.lit(',') {
			continue
		}
		return e, s.lit('}')
	}
}
