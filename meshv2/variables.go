package meshv2

import (
	"bytes"
	"encoding/json"
	"errors"

	"meshbox/rules"
)

// A request's variables stay raw (json.RawMessage) until the request holds an execution slot
// and its document passed its bounds; only then are they decoded, one token at a time, and
// refused as soon as they nest or run longer than any input of the schema can use. Decoded
// on arrival, 4 MiB of `{"x":[{},{},…]}` became a million maps before any bound or the
// execution limit applied, and eight such requests took the box past a gigabyte.

// Variables' shapes the schema can use: the variables object holds a request's arguments
// (createGroup has the most, five); the deepest input is a list of input objects
// (fireEventsByNode's events, reportDataByNode's data) whose type has at most four fields.
const (
	// maxVarDepth counts the variables object, a list and an input object in it.
	maxVarDepth = 3
	// maxVarKeys bounds the fields of the variables object and of each input object in it.
	maxVarKeys = 16
	// defaultMaxVarItems bounds a list when the rules' limits are not known.
	defaultMaxVarItems = 1000
)

// errVariables is wrapped by the errors of variables beyond what the schema can use.
var errVariables = errors.New("variables exceed what the schema's inputs can use")

// varDecoder decodes one request's variables within the bounds.
type varDecoder struct {
	dec      *json.Decoder
	maxItems int
	values   int // every value decoded so far, against maxValues
	maxVals  int
}

// decodeVariables decodes raw variables (absent or null: none) as encoding/json would into a
// map[string]any, or refuses them with a validation error once they pass a bound.
func decodeVariables(raw json.RawMessage, maxItems int) (map[string]any, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if raw[0] != '{' {
		return nil, newError(errValidation, "variables must be an object")
	}
	d := &varDecoder{dec: json.NewDecoder(bytes.NewReader(raw)), maxItems: maxItems, maxVals: maxItems*(maxVarKeys+1) + maxVarKeys}
	v, err := d.value(1)
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// value decodes the next value at depth (1: the variables object itself).
func (d *varDecoder) value(depth int) (any, error) {
	t, err := d.dec.Token()
	if err != nil {
		return nil, newError(errValidation, "variables are not valid JSON")
	}
	if d.values++; d.values > d.maxVals {
		return nil, newError(errValidation, "%v: more than %d values", errVariables, d.maxVals)
	}
	delim, ok := t.(json.Delim)
	if !ok {
		return t, nil // string, float64, bool or nil, as encoding/json decodes into any
	}
	if depth > maxVarDepth {
		return nil, newError(errValidation, "%v: nested deeper than %d", errVariables, maxVarDepth)
	}
	if delim == '[' {
		list := []any{}
		for d.dec.More() {
			if len(list) == d.maxItems {
				return nil, newError(errValidation, "%v: a list longer than %d", errVariables, d.maxItems)
			}
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		_, err := d.dec.Token() // ']'
		return list, err
	}
	obj := map[string]any{}
	for d.dec.More() {
		kt, err := d.dec.Token()
		if err != nil {
			return nil, newError(errValidation, "variables are not valid JSON")
		}
		if len(obj) == maxVarKeys {
			return nil, newError(errValidation, "%v: an object of more than %d fields", errVariables, maxVarKeys)
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		obj[kt.(string)] = v
	}
	_, err = d.dec.Token() // '}'
	return obj, err
}

// maxVarItemsFor is the longest list a request's variables may hold under the rules' limits:
// a publish's events or a data change's keys.
func maxVarItemsFor(l rules.Limits) int {
	if n := max(l.MaxEventsPerPublish, l.MaxDataKeys); n > 0 {
		return n
	}
	return defaultMaxVarItems
}

// bodyBoundFor is the largest body a legitimate request needs under the rules' limits (0:
// the limits are not known): the larger of a full publish (every event at the largest
// payload, with its name, order key, time and the JSON around them) and a full data change,
// plus the document (the library's 64 KiB) and the ids beside them.
func bodyBoundFor(l rules.Limits) int64 {
	if l.MaxEventsPerPublish <= 0 || l.MaxPayloadBytes <= 0 {
		return 0
	}
	const perEvent = 2*256 + 256 // eventName and orderKey (256 bytes each), firedAt and JSON
	publish := int64(l.MaxEventsPerPublish) * int64(l.MaxPayloadBytes+perEvent)
	data := int64(l.MaxDataKeys) * int64(l.MaxDataKeyBytes+l.MaxDataValueBytes+64)
	return max(publish, data) + 64<<10 + 4<<10
}
