package rules

import (
	"fmt"
	"regexp"
	"strconv"
	"unicode"
	"unicode/utf8"
)

var domainPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,256}$`)

// ValidDomain reports whether d is a usable domain name: 1–256 characters of [A-Za-z0-9._-].
func ValidDomain(d string) bool { return domainPattern.MatchString(d) }

// ValidID reports whether a client-chosen node id is usable: printable, without spaces or
// '/', and readable (see unreadable): Mesh v2 shows a node's id as its name.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f || r == '/' {
			return false
		}
	}
	r, _ := unreadable(id)
	return r < 0
}

// unreadable returns the first character of a name that a person cannot read, and what kind
// of character it is; -1 when there is none. Names (of groups, nodes, events and data keys)
// are shown to the class, on the dashboard, on /try and in the editors, so they must show what
// they hold: no control characters (C0 with NUL and ESC, DEL, C1: terminal escapes, cut
// strings), no bidirectional controls (U+202E makes "Teacher" of "rehcaeT", and marks and
// isolates reorder what surrounds them), no line separators, and no invisible formatting
// characters (zero-width spaces, word joiners, the byte order mark, soft hyphens, tag
// characters that carry hidden text). Kept: the zero-width joiner and non-joiner, which
// emoji sequences and scripts such as Persian and Devanagari need, variation selectors, and
// tag characters inside an emoji flag's tag sequence (U+1F3F4 … U+E007F).
func unreadable(s string) (rune, string) {
	flag := false // inside the tag sequence of an emoji flag
	for _, r := range s {
		if r < utf8.RuneSelf && r >= 0x20 && r != 0x7f {
			flag = false // printable ASCII, most names: no table to look up
			continue
		}
		switch {
		case unicode.IsControl(r):
			return r, "a control character"
		case r == 0x061c || r == 0x200e || r == 0x200f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069:
			return r, "a bidirectional control character"
		case r == 0x2028 || r == 0x2029:
			return r, "a line or paragraph separator"
		case r >= 0xe0020 && r <= 0xe007f:
			if !flag {
				return r, "an invisible tag character"
			}
			flag = r != 0xe007f // the cancel tag ends the sequence
			continue
		case r == 0x200c || r == 0x200d: // the joiners, kept (above)
		case unicode.Is(unicode.Cf, r):
			return r, "an invisible formatting character"
		}
		flag = r == 0x1f3f4
	}
	return -1, ""
}

// checkName validates a name (what says which): 1–256 bytes of UTF-8 a person can read.
func checkName(what, n string) error {
	if n == "" || len(n) > 256 || !utf8.ValidString(n) {
		return invalid("%s must be 1-256 characters", what)
	}
	return checkReadable(what, n)
}

// checkReadable refuses a name with a character a person cannot read, saying which.
func checkReadable(what, n string) error {
	if r, kind := unreadable(n); r >= 0 {
		return invalid("%s contains %U, %s; names must be text a person can read (no control, bidirectional or invisible formatting characters)", what, r, kind)
	}
	return nil
}

// checkNode validates a node's optional client-chosen id and its name, which defaults to def.
func checkNode(id, name, def string) (string, error) {
	if id != "" && !ValidID(id) {
		if err := checkReadable("node id", id); err != nil && utf8.ValidString(id) {
			return "", err
		}
		return "", invalid("node id must be 1-128 printable characters without spaces or '/'")
	}
	if name == "" {
		name = def
	}
	if err := checkName("node name", name); err != nil {
		return "", err
	}
	return name, nil
}

// checkEvents applies the limits on one publish.
func (l Limits) checkEvents(events []EventIn) error {
	if len(events) == 0 {
		return invalid("events must hold at least one event")
	}
	if err := l.CheckEventCount(len(events)); err != nil {
		return err
	}
	for i, e := range events {
		// Event names are names too: the dashboard's feed, /try and the editors show them.
		if err := checkName("event "+strconv.Itoa(i)+": name", e.Name); err != nil {
			return err
		}
		if e.Payload != nil && len(*e.Payload) > l.MaxPayloadBytes {
			return tooLarge("event %d: payload is larger than %d bytes", i, l.MaxPayloadBytes)
		}
		if len(e.OrderKey) > 256 {
			return tooLarge("event %d: orderKey is longer than 256 bytes", i)
		}
	}
	return nil
}

// checkData applies the limits on one data change. Keys are names (the dashboard and the
// editors show them); values are data and may hold any valid UTF-8.
func (l Limits) checkData(data map[string]string, replace bool) error {
	if len(data) == 0 && !replace {
		return invalid("data must name at least one key")
	}
	if err := l.CheckDataEntry(len(data), "", ""); err != nil {
		return err
	}
	for k, v := range data {
		if k == "" || !utf8.ValidString(k) || !utf8.ValidString(v) {
			return invalid("data keys must be non-empty and keys and values valid UTF-8")
		}
		if err := l.CheckDataEntry(1, k, v); err != nil {
			return err
		}
		if err := checkReadable(fmt.Sprintf("data key %.32q", k), k); err != nil {
			return err
		}
	}
	return nil
}
