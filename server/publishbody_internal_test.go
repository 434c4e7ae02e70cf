package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"meshbox/rules"
)

// publishBodySeeds are bodies the fast path reads and bodies it must leave to encoding/json.
var publishBodySeeds = []string{
	`{"events":[{"name":"go","payload":"x"}]}`,
	` { "events" : [ { "name" : "a" , "payload" : null } , {"payload":"p","name":"b"} ] } `,
	`{"events":[]}`,
	`{"events":[{}]}`,
	`{"events":[{"name":""}]}`,
	`{"events":[{"name":"a","name":"b","payload":"1","payload":null}]}`,
	`{"events":[{"name":"日本語","payload":"ü"}]}`,
	`{"events":[{"name":"a"},{"name":"b"},{"name":"c"},{"name":"d"}]}`,
	`{"events":[{"name":"a\"b"}]}`,
	`{"events":[{"name":"a\u0041"}]}`,
	"{\"events\":[{\"name\":\"a\xffb\"}]}",
	"{\"events\":[{\"name\":\"a\tb\"}]}",
	`{"Events":[{"name":"a"}]}`,
	`{"events":[{"Name":"a"}]}`,
	`{"events":[{"name":"a","other":1}]}`,
	`{"events":[{"name":1}]}`,
	`{"events":[{"name":"a","payload":{"a":1}}]}`,
	`{"events":[{"name":null}]}`,
	`{"events":{"name":"x"}}`,
	`{"events":null}`,
	`{"events":[{"name":"a"}],"events":[]}`,
	`{"events":[{"name":"a"}]} x`,
	`{"events":[{"name":"a"},]}`,
	`{"events":[{"name":"a"}`,
	`{"events":[{"name":"a",}]}`,
	`[]`,
	`nul`,
}

// checkPublishBody decodes body both ways, with at most three events per publish: where the
// fast path reads it, encoding/json must read it without an error and to the same events.
func checkPublishBody(t *testing.T, body string) {
	limits := rules.Limits{MaxEventsPerPublish: 3}
	fast := publishBody{Events: eventList{limits: limits}}
	if !fast.decodeFast([]byte(body)) {
		return
	}
	slow := publishBody{Events: eventList{limits: limits}}
	if err := json.Unmarshal([]byte(body), &slow); err != nil {
		t.Fatalf("%q: the fast path read it, encoding/json refuses it: %v", body, err)
	}
	if !reflect.DeepEqual(fast.Events.events, slow.Events.events) && (len(fast.Events.events) > 0 || len(slow.Events.events) > 0) {
		t.Fatalf("%q: fast %+v, encoding/json %+v", body, fast.Events.events, slow.Events.events)
	}
}

// The fast path reads a publish exactly as encoding/json does, or leaves it to it.
func TestPublishBodyFastPathAgreesWithEncodingJSON(t *testing.T) {
	t.Parallel()
	read := 0
	for _, body := range publishBodySeeds {
		checkPublishBody(t, body)
		p := publishBody{Events: eventList{limits: rules.Limits{MaxEventsPerPublish: 3}}}
		if p.decodeFast([]byte(body)) {
			read++
		}
	}
	if read != 7 { // the first seven seeds are the ordinary forms
		t.Errorf("the fast path read %d of the seeds, want 7", read)
	}
}

func FuzzPublishBodyFastPath(f *testing.F) {
	for _, s := range publishBodySeeds {
		f.Add(s)
	}
	f.Fuzz(checkPublishBody)
}
