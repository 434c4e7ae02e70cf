package stream

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeLayout is how every timestamp meshbox sends is written: UTC with milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// EncodeItem writes the item's JSON by hand: it runs once per item on the writer's hot path.
func EncodeItem(it Item) []byte {
	b := make([]byte, 0, 96+len(it.Name)+len(it.Node)+payloadLen(it.Payload)+16*len(it.Data))
	b = append(b, `{"cursor":`...)
	b = strconv.AppendInt(b, it.Cursor, 10)
	b = append(b, `,"kind":`...)
	b = appendString(b, it.Kind)
	if it.Node != "" {
		b = append(b, `,"node":`...)
		b = appendString(b, it.Node)
	}
	if it.Name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, it.Name)
	}
	if it.Payload != nil {
		b = append(b, `,"payload":`...)
		b = appendString(b, *it.Payload)
	}
	if it.OrderKey != "" {
		b = append(b, `,"orderKey":`...)
		b = appendString(b, it.OrderKey)
	}
	if !it.FiredAt.IsZero() {
		b = append(b, `,"firedAt":"`...)
		b = it.FiredAt.UTC().AppendFormat(b, TimeLayout)
		b = append(b, '"')
	}
	if it.Data != nil {
		b = append(b, `,"data":{`...)
		keys := make([]string, 0, len(it.Data))
		for k := range it.Data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, it.Data[k])
		}
		b = append(b, '}')
	}
	if it.Reason != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, it.Reason)
	}
	b = append(b, `,"at":"`...)
	b = it.At.UTC().AppendFormat(b, TimeLayout)
	b = append(b, `"}`...)
	return b
}

func payloadLen(p *string) int {
	if p == nil {
		return 0
	}
	return len(*p)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, byte for byte as encoding/json writes it without
// HTML escaping: invalid UTF-8 becomes U+FFFD, \b and \f are short escapes (Go 1.22 on).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		// U+2028 and U+2029 break JavaScript parsers that eval JSON.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// DecodeItem parses an item as stored; the JSON is kept so it can be served again as-is.
func DecodeItem(body []byte) (Item, error) {
	var it Item
	if err := json.Unmarshal(body, &it); err != nil {
		return it, fmt.Errorf("decode item: %w", err)
	}
	it.JSON = body
	return it, nil
}

// FormatTime writes t the way every meshbox timestamp is written.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }
