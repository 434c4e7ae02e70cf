package meshv2

import (
	"fmt"
	"net/http"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

var awsTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

func TestGroupLifecycle(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{MaxConnectionTime: time.Hour}, b)

		if d := s.ok(t, "createDomain", qCreateDomain, nil); d != "classroom" {
			t.Fatalf("createDomain = %v", d)
		}
		before := time.Now()
		g := obj(t, s.ok(t, "createGroup", qCreateGroup, map[string]any{
			"name": "host-1", "hostId": "host-1", "domain": "classroom", "maxConnectionTimeSeconds": 600, "useWebSocket": false,
		}))
		gid := g["id"].(string)
		if g["fullId"] != gid+"@classroom" || g["hostId"] != "host-1" || g["useWebSocket"] != false || g["__typename"] != "Group" {
			t.Fatalf("group = %v", g)
		}
		if g["heartbeatIntervalSeconds"] != 60.0 || g["pollingIntervalSeconds"] != 2.0 {
			t.Fatalf("intervals = %v, %v", g["heartbeatIntervalSeconds"], g["pollingIntervalSeconds"])
		}
		exp := g["expiresAt"].(string)
		if !awsTime.MatchString(exp) {
			t.Fatalf("expiresAt %q is not an AWSDateTime with milliseconds", exp)
		}
		expT, _ := time.Parse(time.RFC3339, exp)
		if d := expT.Sub(before); d < 599*time.Second || d > 602*time.Second {
			t.Fatalf("expiresAt is %v after creation, want 600s", d)
		}

		// Idempotent per host and domain.
		again := obj(t, s.ok(t, "createGroup", qCreateGroup, map[string]any{
			"name": "host-1", "hostId": "host-1", "domain": "classroom", "useWebSocket": false,
		}))
		if again["id"] != gid || again["expiresAt"] != exp {
			t.Fatalf("second createGroup = %v, want the same group", again)
		}

		// A member that asks for WebSocket is told the group's mode, and the group's expiry
		// (the client's leave timer), not its own.
		n := obj(t, s.ok(t, "joinGroup", qJoin, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1", "useWebSocket": true}))
		if n["id"] != "m1" || n["groupId"] != gid || n["heartbeatIntervalSeconds"] != 120.0 || n["useWebSocket"] != false ||
			n["pollingIntervalSeconds"] != 2.0 || n["expiresAt"] != exp {
			t.Fatalf("joinGroup = %v", n)
		}
		s.join(t, gid, "m2")

		groups := list(t, s.ok(t, "listGroupsByDomain", qListGroups, map[string]any{"domain": "classroom"}))
		if len(groups) != 1 || obj(t, groups[0])["id"] != gid {
			t.Fatalf("listGroupsByDomain = %v", groups)
		}
		if other := list(t, s.ok(t, "listGroupsByDomain", qListGroups, map[string]any{"domain": "other"})); len(other) != 0 {
			t.Fatalf("other domain lists %v", other)
		}
		found := list(t, s.ok(t, "searchGroupsByNamePrefix", qSearch, map[string]any{"namePrefix": "host-", "limit": 5}))
		if len(found) != 1 || obj(t, found[0])["name"] != "host-1" {
			t.Fatalf("search = %v", found)
		}

		hb := obj(t, s.ok(t, "renewHeartbeat", qRenew, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host-1"}))
		if hb["expiresAt"] != exp {
			t.Fatalf("renewHeartbeat moved expiresAt: %v != %v", hb["expiresAt"], exp)
		}
		mhb := obj(t, s.ok(t, "sendMemberHeartbeat", qMemberHB, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1"}))
		if mhb["nodeId"] != "m1" || mhb["heartbeatIntervalSeconds"] != 120.0 || !awsTime.MatchString(mhb["expiresAt"].(string)) {
			t.Fatalf("sendMemberHeartbeat = %v", mhb)
		}

		rep := obj(t, s.ok(t, "reportDataByNode", qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"data": []map[string]string{{"key": "score", "value": "1"}, {"key": "x", "value": "5"}, {"key": "score", "value": "2"}}}))
		st := obj(t, rep["nodeStatus"])
		if fmt.Sprint(st["data"]) != "[map[key:score value:2] map[key:x value:5]]" {
			t.Fatalf("reportDataByNode data = %v", st["data"])
		}
		// Replacing drops keys that are not sent again.
		s.ok(t, "reportDataByNode", qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"data": []map[string]string{{"key": "score", "value": "3"}}})
		ns := obj(t, s.ok(t, "getNodeStatus", qNodeStatus, map[string]any{"nodeId": "m1"}))
		if fmt.Sprint(ns["data"]) != "[map[key:score value:3]]" || ns["groupId"] != gid {
			t.Fatalf("getNodeStatus = %v", ns)
		}
		if v := s.ok(t, "getNodeStatus", qNodeStatus, map[string]any{"nodeId": "nobody"}); v != nil {
			t.Fatalf("getNodeStatus of unknown node = %v, want null", v)
		}
		// Only nodes that reported data have a status; the host is not a member.
		statuses := list(t, s.ok(t, "listGroupStatuses", qStatuses, map[string]any{"groupId": gid, "domain": "classroom"}))
		if len(statuses) != 1 || obj(t, statuses[0])["nodeId"] != "m1" {
			t.Fatalf("listGroupStatuses = %v", statuses)
		}
		nodes := list(t, s.ok(t, "listNodesInGroup", qNodes, map[string]any{"groupId": gid, "domain": "classroom"}))
		if len(nodes) != 2 || obj(t, nodes[0])["id"] == "host-1" || obj(t, nodes[1])["id"] == "host-1" {
			t.Fatalf("listNodesInGroup = %v", nodes)
		}

		since := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
		for time.Now().UTC().Format("2006-01-02T15:04:05.000Z") == since {
			runtime.Gosched() // until the next millisecond: what follows is stamped after since
		}
		fired := time.Date(2026, 1, 2, 3, 4, 5, 678e6, time.UTC)
		fire := obj(t, s.ok(t, "fireEventsByNode", qFire, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m1",
			"events": []map[string]any{{"eventName": "go", "payload": "p1", "firedAt": fired.Format(time.RFC3339Nano), "orderKey": "k1"}}}))
		be := obj(t, fire["batchEvent"])
		ev := obj(t, list(t, be["events"])[0])
		if ev["name"] != "go" || ev["payload"] != "p1" || ev["timestamp"] != "2026-01-02T03:04:05.678Z" || ev["orderKey"] != "k1" || be["firedByNodeId"] != "m1" {
			t.Fatalf("fireEventsByNode = %v", fire)
		}
		recBefore := time.Now().Truncate(time.Millisecond)
		rec := obj(t, s.ok(t, "recordEventsByNode", qRecord, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m2",
			"events": []map[string]any{
				{"eventName": "a", "firedAt": "2026-01-02T03:04:06.000Z", "orderKey": "k2"},
				{"eventName": "b", "payload": "", "firedAt": "2026-01-02T03:04:06.250Z", "orderKey": "k3"},
			}}))
		if rec["recordedCount"] != 2.0 {
			t.Fatalf("recordEventsByNode = %v", rec)
		}

		// An ISO time as since: everything after it, fired and recorded alike, in order.
		evs := list(t, s.ok(t, "getEventsSince", qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": since}))
		var names []string
		for _, e := range evs {
			names = append(names, obj(t, e)["name"].(string))
		}
		if strings.Join(names, ",") != "go,a,b" {
			t.Fatalf("getEventsSince(time) = %v", names)
		}
		// Recorded events carry the server's time, as in the cloud; m2 has not polled, so
		// its nextSince is where it joined: its next poll brings everything since.
		last := obj(t, evs[2])
		ts, _ := time.Parse(time.RFC3339, last["timestamp"].(string))
		if ts.Before(recBefore) || ts.After(time.Now()) || last["payload"] != nil {
			t.Fatalf("last event %v", last)
		}
		nc, node, ok := parsePollToken(rec["nextSince"].(string))
		fc, _, _ := parsePollToken(obj(t, evs[0])["cursor"].(string))
		if !ok || node != "m2" || nc >= fc {
			t.Fatalf("nextSince %v, first event cursor %v", rec["nextSince"], fc)
		}
		// A cursor as since.
		first := obj(t, evs[0])["cursor"].(string)
		evs = list(t, s.ok(t, "getEventsSince", qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": first}))
		if len(evs) != 2 || obj(t, evs[0])["name"] != "a" {
			t.Fatalf("getEventsSince(cursor) = %v", evs)
		}
		poll := obj(t, s.ok(t, "pollGroupData", qPoll, map[string]any{"groupId": gid, "domain": "classroom", "since": first}))
		if len(list(t, poll["events"])) != 2 || len(list(t, poll["nodeStatuses"])) != 1 {
			t.Fatalf("pollGroupData = %v", poll)
		}

		lv := obj(t, s.ok(t, "leaveGroup", qLeave, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "m2"}))
		if lv["peerId"] != "m2" || lv["message"] == "" {
			t.Fatalf("leaveGroup = %v", lv)
		}
		if nodes := list(t, s.ok(t, "listNodesInGroup", qNodes, map[string]any{"groupId": gid, "domain": "classroom"})); len(nodes) != 1 {
			t.Fatalf("after leave, nodes = %v", nodes)
		}
		dis := obj(t, s.ok(t, "dissolveGroup", qDissolve, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host-1"}))
		if obj(t, dis["groupDissolve"])["message"] == "" {
			t.Fatalf("dissolveGroup = %v", dis)
		}
		s.fails(t, errGroupNotFound, qRenew, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "host-1"})
		if groups := list(t, s.ok(t, "listGroupsByDomain", qListGroups, map[string]any{"domain": "classroom"})); len(groups) != 0 {
			t.Fatalf("dissolved group still listed: %v", groups)
		}
	})
}

func TestErrorTypes(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{MaxConnectionTime: 1500 * time.Second}, b)
		gid := s.group(t, true)
		s.join(t, gid, "m1")
		cases := []struct {
			name, kind, query string
			vars              map[string]any
		}{
			{"unknown group", errGroupNotFound, qRenew, map[string]any{"groupId": "nope", "domain": "classroom", "hostId": "host"}},
			{"group in another domain", errGroupNotFound, qJoin, map[string]any{"groupId": gid, "domain": "elsewhere", "nodeId": "m9"}},
			{"member renews host heartbeat", errUnauthorized, qRenew, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "m1"}},
			{"member dissolves", errUnauthorized, qDissolve, map[string]any{"groupId": gid, "domain": "classroom", "hostId": "m1"}},
			{"heartbeat of a stranger", errNodeNotFound, qMemberHB, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "ghost"}},
			{"data of a stranger", errNodeNotFound, qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "ghost", "data": []any{}}},
			{"domain with a slash", errValidation, qListGroups, map[string]any{"domain": "a/b"}},
			{"domain too long", errValidation, qListGroups, map[string]any{"domain": strings.Repeat("d", 257)}},
			{"lifetime zero", errValidation, qCreateGroup, map[string]any{"name": "n", "hostId": "h2", "domain": "classroom", "maxConnectionTimeSeconds": 0, "useWebSocket": true}},
			{"lifetime over max", errValidation, qCreateGroup, map[string]any{"name": "n", "hostId": "h2", "domain": "classroom", "maxConnectionTimeSeconds": 1501, "useWebSocket": true}},
			{"empty prefix", errValidation, qSearch, map[string]any{"namePrefix": ""}},
			{"prefix of 7", errValidation, qSearch, map[string]any{"namePrefix": "abcdefg"}},
			{"since garbage", errValidation, qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": "yesterday"}},
			{"unknown field", errValidation, `query { nothingHere }`, nil},
			{"syntax error", errValidation, `query {`, nil},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { s.fails(t, c.kind, c.query, c.vars) })
		}
		// The longest allowed values pass.
		s.ok(t, "listGroupsByDomain", qListGroups, map[string]any{"domain": strings.Repeat("d", 256)})
		s.ok(t, "searchGroupsByNamePrefix", qSearch, map[string]any{"namePrefix": "ほすとあいう"})
		s.ok(t, "createGroup", qCreateGroup, map[string]any{"name": "n", "hostId": "h3", "domain": "classroom", "maxConnectionTimeSeconds": 1500, "useWebSocket": true})
	})
}

func TestEventsSinceCapsAt100(t *testing.T) {
	t.Parallel()
	backends(t, func(t *testing.T, b Backend) {
		s := newTestServer(t, Config{}, b)
		gid := s.group(t, false)
		var events []map[string]any
		for i := range 150 {
			events = append(events, map[string]any{"eventName": "e" + strconv.Itoa(i), "firedAt": "2026-01-01T00:00:00.000Z"})
			if i%10 == 0 {
				// Data items in between must not count towards the cap.
				s.ok(t, "reportDataByNode", qReport, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "host",
					"data": []map[string]string{{"key": "i", "value": strconv.Itoa(i)}}})
			}
		}
		s.ok(t, "recordEventsByNode", qRecord, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": "host", "events": events})
		page := list(t, s.ok(t, "getEventsSince", qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": "0"}))
		if len(page) != 100 {
			t.Fatalf("first page has %d events", len(page))
		}
		next := obj(t, page[99])["cursor"].(string)
		rest := list(t, s.ok(t, "getEventsSince", qEventsSince, map[string]any{"groupId": gid, "domain": "classroom", "since": next}))
		if len(rest) != 50 || obj(t, rest[0])["name"] != "e100" || obj(t, rest[49])["name"] != "e149" {
			t.Fatalf("second page: %d events", len(rest))
		}
		prev := int64(0)
		for _, e := range append(page, rest...) {
			c, _ := strconv.ParseInt(obj(t, e)["cursor"].(string), 10, 64)
			if c <= prev {
				t.Fatalf("cursors not ascending: %d after %d", c, prev)
			}
			prev = c
		}
	})
}

func TestAPIKeyAndCORS(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, Config{APIKey: "secret"}, newFakeBackend())
	for _, key := range []string{"", "wrong"} {
		s.apiKey = key
		res := s.do(t, qCreateDomain, nil)
		if res.Status != http.StatusUnauthorized || res.Errors[0]["errorType"] != errUnauthenticated {
			t.Fatalf("key %q: status %d %v", key, res.Status, res.Errors)
		}
		// Amplify 6 reads the type from this header only (issue 24: it said "Unknown error").
		if got := res.Header.Get("x-amzn-ErrorType"); got != "UnauthorizedException" {
			t.Fatalf("key %q: x-amzn-ErrorType %q, want UnauthorizedException", key, got)
		}
	}
	s.apiKey = "secret"
	s.ok(t, "createDomain", qCreateDomain, nil)

	for _, path := range []string{"/graphql", "/graphql/realtime"} {
		req, _ := http.NewRequest(http.MethodOptions, s.URL+path, nil)
		req.Header.Set("Origin", "https://smalruby.app")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "content-type,x-api-key,x-amz-date,x-amz-user-agent")
		req.Header.Set("Access-Control-Request-Private-Network", "true")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != http.StatusNoContent ||
			h.Get("Access-Control-Allow-Origin") != "https://smalruby.app" ||
			h.Get("Access-Control-Allow-Private-Network") != "true" ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "x-api-key") ||
			!strings.Contains(strings.ToLower(h.Get("Access-Control-Allow-Headers")), "x-amz-user-agent") {
			t.Fatalf("%s preflight: %d %v", path, resp.StatusCode, h)
		}
	}
	// Actual responses carry the origin too, errors included.
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/graphql", strings.NewReader("{"))
	req.Header.Set("Origin", "https://smalruby.app")
	req.Header.Set("x-api-key", "secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Access-Control-Allow-Origin") != "https://smalruby.app" {
		t.Fatalf("malformed body: %d %v", resp.StatusCode, resp.Header)
	}
	// A page of another origin may read the error type, as from AppSync.
	if !strings.Contains(strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers")), "x-amzn-errortype") {
		t.Fatalf("x-amzn-ErrorType not exposed: %v", resp.Header)
	}
}

func TestCreateDomainUsesRemoteIPByDefault(t *testing.T) {
	t.Parallel()
	h, err := New(Config{}, newFakeBackend(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r1, _ := http.NewRequest(http.MethodPost, "/", nil)
	r1.RemoteAddr = "192.0.2.1:1234"
	r2, _ := http.NewRequest(http.MethodPost, "/", nil)
	r2.RemoteAddr = "192.0.2.1:9999"
	r3, _ := http.NewRequest(http.MethodPost, "/", nil)
	r3.RemoteAddr = "192.0.2.2:1234"
	d1, d2, d3 := h.cfg.DomainFor(r1), h.cfg.DomainFor(r2), h.cfg.DomainFor(r3)
	if d1 != d2 || d1 == d3 || validDomain(d1) != nil {
		t.Fatalf("domains %q %q %q", d1, d2, d3)
	}
}
