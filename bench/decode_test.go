package bench

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
)

func TestDecodeWSMessage(t *testing.T) {
	t.Parallel()
	frame := `{ "type" : "items", "extra": {"a":[1,{"b":"]}"}],"c":null},
		"items": [
			{"cursor":41,"kind":"join","node":"n1","name":"Ann \"A\"","at":"2026-11-23T08:00:00.123Z"},
			{"cursor":42,"kind":"event","node":"n1","name":"go","payload":"r1:5:\u00e9\\","at":"x","orderKey":7},
			{"cursor":43,"kind":"data","node":"n2","data":{"k":"r1:6:","gone":""}},
			{"cursor":44,"kind":"event","payload":null},
			{"cursor":4.5e1,"kind":"ev\u0065nt","payload":{"not":"a string"}}
		], "next": 45}`
	var msg wsMessage
	msg.Items = make([]item, 0, 1) // reused storage must not leak old items
	if err := decodeWSMessage([]byte(frame), &msg); err != nil {
		t.Fatal(err)
	}
	want := wsMessage{Type: "items", Next: 45, Items: []item{
		{Cursor: 41, Kind: "join"},
		{Cursor: 42, Kind: "event", Payload: "r1:5:é\\"},
		{Cursor: 43, Kind: "data", Data: map[string]string{"k": "r1:6:", "gone": ""}},
		{Cursor: 44, Kind: "event"},
		{Cursor: 45, Kind: "event"},
	}}
	if !reflect.DeepEqual(msg, want) {
		t.Fatalf("got  %+v\nwant %+v", msg, want)
	}
	for _, bad := range []string{``, `{`, `{"items":[{"cursor":1}`, `{"type":"items"} x`, `{"type":}`, `[1]`, `{"items":[{"cursor":"x"}]}`} {
		if err := decodeWSMessage([]byte(bad), &msg); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestDecodePollAnswer(t *testing.T) {
	t.Parallel()
	var a pollAnswer
	if err := decodePollAnswer([]byte(`{"items":[{"cursor":7,"kind":"event","payload":"p"}],"next":7,"truncated":true}`), &a); err != nil {
		t.Fatal(err)
	}
	if len(a.Items) != 1 || a.Items[0].Payload != "p" || a.Next != 7 || !a.Truncated {
		t.Fatalf("%+v", a)
	}
	if err := decodePollAnswer([]byte(`{"items":[],"next":7,"truncated":false}`), &a); err != nil || len(a.Items) != 0 || a.Truncated {
		t.Fatalf("%+v %v", a, err)
	}
}

// FuzzDecodeItem checks the scanner against encoding/json on every item
// encoding/json can produce from the fuzzed fields.
func FuzzDecodeItem(f *testing.F) {
	f.Add(int64(42), "event", "r1:123:xx", "k", "v", "name")
	f.Add(int64(-1), "d\"ata", "\\\"\u2028\x00", "\"", "\\", "")
	f.Fuzz(func(t *testing.T, cursor int64, kind, payload, key, value, name string) {
		in := map[string]any{"cursor": cursor, "kind": kind, "payload": payload, "name": name,
			"data": map[string]string{key: value}, "at": "2026-11-23T08:00:00Z", "nested": []any{map[string]any{"x": name}}}
		b, err := json.Marshal(in)
		if err != nil {
			t.Skip()
		}
		var want, got item
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if err := decodeItem(b, &got); err != nil {
			t.Fatalf("decode %s: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s:\ngot  %+v\nwant %+v", b, got, want)
		}
		frame := fmt.Sprintf(`{"type":"items","items":[%s,%s],"next":%d}`, b, b, cursor)
		var msg wsMessage
		if err := decodeWSMessage([]byte(frame), &msg); err != nil || len(msg.Items) != 2 || !reflect.DeepEqual(msg.Items[1], want) {
			t.Fatalf("frame %s: %+v %v", frame, msg, err)
		}
	})
}

// FuzzDecodeArbitrary feeds any bytes: the scanner must return, not panic.
func FuzzDecodeArbitrary(f *testing.F) {
	f.Add([]byte(`{"type":"items","items":[{"cursor":1}],"next":1}`))
	f.Add([]byte(`{"items":[{"data":{"a":"\`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var msg wsMessage
		_ = decodeWSMessage(b, &msg)
		var a pollAnswer
		_ = decodePollAnswer(b, &a)
		var it item
		_ = decodeItem(b, &it)
	})
}
