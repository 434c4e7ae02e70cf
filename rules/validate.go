package rules

import (
	"regexp"
	"strconv"
	"unicode/utf8"
)

var domainPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,256}$`)

// ValidDomain reports whether d is a usable domain name: 1–256 characters of [A-Za-z0-9._-].
func ValidDomain(d string) bool { return domainPattern.MatchString(d) }

// ValidID reports whether a client-chosen node id is usable.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 || !utf8.ValidString(id) {
		return false
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f || r == '/' {
			return false
		}
	}
	return true
}

func validName(n string) bool { return n != "" && len(n) <= 256 && utf8.ValidString(n) }

// checkNode validates a node's optional client-chosen id and its name, which defaults to def.
func checkNode(id, name, def string) (string, error) {
	if id != "" && !ValidID(id) {
		return "", invalid("node id must be 1-128 printable characters without '/'")
	}
	if name == "" {
		name = def
	}
	if !validName(name) {
		return "", invalid("node name must be 1-256 characters")
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
		if !validName(e.Name) {
			return invalid("event " + strconv.Itoa(i) + ": name must be 1-256 characters")
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

// checkData applies the limits on one data change.
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
	}
	return nil
}
