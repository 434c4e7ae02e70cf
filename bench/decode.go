package bench

import (
	"errors"
	"fmt"
	"math"

	"github.com/valyala/fastjson"
)

// The readers decode every item they receive, and the tool shares the machine with the server
// it measures, so decoding must be cheap: encoding/json's reflection would take a noticeable
// share of a 2-core box at 100,000 deliveries/s. github.com/valyala/fastjson parses without
// reflection and, with one parser per reader reused for every message, without allocating
// per value; it replaced a hand-written lexer of the same purpose. Only the fields the tool
// needs are read.

// decoder decodes what the server sends to one reader; it is not safe for concurrent use.
type decoder struct{ p fastjson.Parser }

// kindName returns the item kind, sharing the strings of known kinds so decoding them
// allocates nothing.
func kindName(raw []byte) string {
	for _, k := range [...]string{"event", "data", "join", "leave", "dissolve", "reset"} {
		if string(raw) == k {
			return k
		}
	}
	return string(raw)
}

// int64Of reads an integer, also written as a number with an exponent (4.5e1).
func int64Of(v *fastjson.Value, what string) (int64, error) {
	if v == nil {
		return 0, nil
	}
	if n, err := v.Int64(); err == nil {
		return n, nil
	}
	f, err := v.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("json: %s is not an integer", what)
	}
	return int64(f), nil
}

// itemOf fills it from one item value.
func itemOf(v *fastjson.Value, it *item) error {
	*it = item{}
	if v.Type() != fastjson.TypeObject {
		return errors.New("json: an item must be an object")
	}
	var err error
	if it.Cursor, err = int64Of(v.Get("cursor"), "cursor"); err != nil {
		return err
	}
	if k := v.Get("kind"); k != nil {
		raw, err := k.StringBytes()
		if err != nil {
			return fmt.Errorf("json: kind: %w", err)
		}
		it.Kind = kindName(raw)
	}
	if p := v.Get("payload"); p != nil && p.Type() == fastjson.TypeString {
		it.Payload = string(p.GetStringBytes()) // a non-string payload is not one of ours
	}
	if d := v.Get("data"); d != nil && d.Type() == fastjson.TypeObject {
		it.Data = map[string]string{}
		d.GetObject().Visit(func(k []byte, val *fastjson.Value) {
			if val.Type() == fastjson.TypeString {
				it.Data[string(k)] = string(val.GetStringBytes())
			}
		})
	}
	return nil
}

// itemsOf appends the items of an array value to dst.
func itemsOf(v *fastjson.Value, dst []item) ([]item, error) {
	if v == nil {
		return dst, nil
	}
	arr, err := v.Array()
	if err != nil {
		return dst, fmt.Errorf("json: items: %w", err)
	}
	for _, e := range arr {
		dst = append(dst, item{})
		if err := itemOf(e, &dst[len(dst)-1]); err != nil {
			return dst, err
		}
	}
	return dst, nil
}

// object parses b, which must be one JSON object.
func (d *decoder) object(b []byte) (*fastjson.Value, error) {
	v, err := d.p.ParseBytes(b)
	if err != nil {
		return nil, err
	}
	if v.Type() != fastjson.TypeObject {
		return nil, errors.New("json: want an object")
	}
	return v, nil
}

// item decodes one item (an SSE event's data).
func (d *decoder) item(b []byte, it *item) error {
	v, err := d.p.ParseBytes(b)
	if err != nil {
		return err
	}
	return itemOf(v, it)
}

// wsMessage decodes a server→client WebSocket message, reusing msg.Items' storage.
func (d *decoder) wsMessage(b []byte, msg *wsMessage) error {
	items := msg.Items[:0]
	*msg = wsMessage{Items: items}
	v, err := d.object(b)
	if err != nil {
		return err
	}
	if t := v.Get("type"); t != nil {
		raw, err := t.StringBytes()
		if err != nil {
			return fmt.Errorf("json: type: %w", err)
		}
		msg.Type = string(raw)
	}
	if msg.Items, err = itemsOf(v.Get("items"), items); err != nil {
		return err
	}
	msg.Next, err = int64Of(v.Get("next"), "next")
	return err
}

// pollAnswer decodes a long-poll answer, reusing a.Items' storage.
func (d *decoder) pollAnswer(b []byte, a *pollAnswer) error {
	items := a.Items[:0]
	*a = pollAnswer{Items: items}
	v, err := d.object(b)
	if err != nil {
		return err
	}
	if a.Items, err = itemsOf(v.Get("items"), items); err != nil {
		return err
	}
	if a.Next, err = int64Of(v.Get("next"), "next"); err != nil {
		return err
	}
	if t := v.Get("truncated"); t != nil {
		if a.Truncated, err = t.Bool(); err != nil {
			return fmt.Errorf("json: truncated: %w", err)
		}
	}
	return nil
}

// decodeItem, decodeWSMessage and decodePollAnswer decode with a decoder of their own; a
// reader keeps one decoder instead.
func decodeItem(b []byte, it *item) error { var d decoder; return d.item(b, it) }

func decodeWSMessage(b []byte, msg *wsMessage) error { var d decoder; return d.wsMessage(b, msg) }

func decodePollAnswer(b []byte, a *pollAnswer) error { var d decoder; return d.pollAnswer(b, a) }
