package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// laptop is a client with its own loopback address, standing in for one pupil's laptop
// (Linux routes all of 127/8 to lo).
type laptop struct {
	t    testing.TB
	base string
	http *http.Client
}

func newLaptop(t testing.TB, base, ip string) *laptop {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 32}
	t.Cleanup(tr.CloseIdleConnections)
	return &laptop{t: t, base: base, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// answer is one response as a test looks at it.
type answer struct {
	status int
	code   string
	msg    string
	retry  string
	joined joined
}

func (l *laptop) post(path string, body any) answer {
	l.t.Helper()
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", l.base+path, strings.NewReader(string(raw)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := l.http.Do(req)
	if err != nil {
		l.t.Errorf("POST %s: %v", path, err)
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, retry: resp.Header.Get("Retry-After")}
	if a.status == http.StatusCreated {
		json.Unmarshal(b, &a.joined)
		return a
	}
	var e struct {
		Error struct{ Code, Message string }
	}
	json.Unmarshal(b, &e)
	a.code, a.msg = e.Error.Code, e.Error.Message
	return a
}

// flood sends n requests of one kind from the laptop, eight at a time, and returns every answer.
func (l *laptop) flood(n int, send func(i int) answer) []answer {
	out := make([]answer, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i] = send(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return out
}

// tally counts the answers that created something and checks that every other one is the
// share's refusal: 429 client_share_exceeded with a Retry-After and a message naming why.
func tally(t *testing.T, what string, as []answer) int {
	t.Helper()
	created := 0
	for _, a := range as {
		switch {
		case a.status == http.StatusCreated:
			created++
		case a.status == http.StatusTooManyRequests && a.code == "client_share_exceeded" && a.retry != "" && strings.Contains(a.msg, "share"):
		default:
			t.Fatalf("%s: %d %s %q (Retry-After %q), want 201 or 429 client_share_exceeded", what, a.status, a.code, a.msg, a.retry)
		}
	}
	return created
}

// TestOneLaptopCannotFillAClassmatesGroup is issue 22, row 4 with the shipped settings: one
// laptop sends 260 joins named "Teacher" to a classmate's group, no token needed. It gets its
// share of the group (--max-nodes-per-client-group, 50) and no more, and the classmates keep
// joining; before, 249 fake members filled the group and classmates got group_full.
func TestOneLaptopCannotFillAClassmatesGroup(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t, nil)
	pupil := newLaptop(t, a.URL(), "127.0.0.2")
	class := newLaptop(t, a.URL(), "127.0.0.3")
	g := class.post("/api/v1/groups", map[string]any{"name": "5B"})
	if g.status != http.StatusCreated {
		t.Fatalf("create: %d %s", g.status, g.msg)
	}
	path := "/api/v1/groups/" + g.joined.Group.ID + "/nodes"
	got := tally(t, "the pupil's joins", pupil.flood(260, func(int) answer {
		return pupil.post(path, map[string]any{"name": "Teacher"})
	}))
	if got != 50 {
		t.Fatalf("the pupil joined %d fake members, want its share of 50", got)
	}
	for i := range 5 {
		if j := class.post(path, map[string]any{"name": fmt.Sprint("pupil ", i)}); j.status != http.StatusCreated {
			t.Fatalf("a classmate's join during the attack: %d %s %s", j.status, j.code, j.msg)
		}
	}
}

// TestOneLaptopCannotSpreadMembersOverEveryGroup: below its share of each group, one laptop
// still holds at most --max-nodes-per-client (200) members in all groups together.
func TestOneLaptopCannotSpreadMembersOverEveryGroup(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t, nil)
	pupil := newLaptop(t, a.URL(), "127.0.0.2")
	class := newLaptop(t, a.URL(), "127.0.0.3")
	var paths []string
	for i := range 5 {
		g := class.post("/api/v1/groups", map[string]any{"name": fmt.Sprint("table ", i)})
		if g.status != http.StatusCreated {
			t.Fatalf("create: %d %s", g.status, g.msg)
		}
		paths = append(paths, "/api/v1/groups/"+g.joined.Group.ID+"/nodes")
	}
	got := tally(t, "the pupil's joins", pupil.flood(225, func(i int) answer {
		return pupil.post(paths[i/45], map[string]any{"name": "Teacher"})
	}))
	if got != 200 {
		t.Fatalf("the pupil holds %d members in all groups, want 200", got)
	}
	if j := class.post(paths[4], map[string]any{"name": "pupil"}); j.status != http.StatusCreated {
		t.Fatalf("a classmate's join during the attack: %d %s %s", j.status, j.code, j.msg)
	}
}

// TestFourLaptopsCannotFillTheSharedDomain is issue 22, row 5 with the shipped settings: four
// laptops create 60 groups each in the shared domain (200 groups). Each gets its share of the
// domain (--max-groups-per-client-domain, 40), so a classmate still creates a group; before,
// the domain filled and classmates got domain_full.
func TestFourLaptopsCannotFillTheSharedDomain(t *testing.T) {
	t.Parallel()
	a, _ := newServer(t, nil)
	for _, ip := range []string{"127.0.0.2", "127.0.0.4", "127.0.0.5", "127.0.0.6"} {
		pupil := newLaptop(t, a.URL(), ip)
		got := tally(t, ip+"'s creations", pupil.flood(60, func(int) answer {
			return pupil.post("/api/v1/groups", map[string]any{"name": "spam"})
		}))
		if got != 40 {
			t.Fatalf("%s created %d groups in the shared domain, want its share of 40", ip, got)
		}
	}
	class := newLaptop(t, a.URL(), "127.0.0.3")
	if g := class.post("/api/v1/groups", map[string]any{"name": "5B"}); g.status != http.StatusCreated {
		t.Fatalf("a classmate's group after the attack: %d %s %s", g.status, g.code, g.msg)
	}
}

// TestUnreadableNamesAreRefused is issue 22, row 7 on the native API and its WebSocket: group,
// node, event and data key names with control, bidirectional or invisible formatting
// characters are refused with 400 and the reason, and nothing of them is stored.
func TestUnreadableNamesAreRefused(t *testing.T) {
	t.Parallel()
	a, c := newServer(t, unlimited)
	g := c.create("5B")
	gp := "/api/v1/groups/" + g.Group.ID
	for _, tc := range []struct {
		what, method, path, token string
		body                      any
		char                      string
	}{
		{"group name with U+202E", "POST", "/api/v1/groups", "", map[string]any{"name": "\u202eTeacher"}, "U+202E"},
		{"group name with ESC", "POST", "/api/v1/groups", "", map[string]any{"name": "\x1b[2J5B"}, "U+001B"},
		{"host name with NUL", "POST", "/api/v1/groups", "", map[string]any{"name": "5B", "nodeName": "a\x00b"}, "U+0000"},
		{"node name with U+2066", "POST", gp + "/nodes", "", map[string]any{"name": "\u2066Teacher\u2069"}, "U+2066"},
		{"node name with U+200F", "POST", gp + "/nodes", "", map[string]any{"name": "Teacher\u200f"}, "U+200F"},
		{"node name with C1", "POST", gp + "/nodes", "", map[string]any{"name": "a\u009bb"}, "U+009B"},
		{"event name with U+202D", "POST", gp + "/events", g.Token, map[string]any{"events": []any{map[string]any{"name": "\u202dgo"}}}, "U+202D"},
		{"data key with DEL", "PUT", gp + "/data", g.Token, map[string]any{"data": map[string]string{"score\x7f": "1"}}, "U+007F"},
	} {
		st, raw := c.call(tc.method, tc.path, tc.token, tc.body, nil)
		if st != http.StatusBadRequest || !strings.Contains(string(raw), `"invalid"`) || !strings.Contains(string(raw), tc.char) {
			t.Errorf("%s: %d %s, want 400 invalid naming %s", tc.what, st, raw, tc.char)
		}
	}
	s := openWS(t, a.URL(), g, readerOpts{acksOnly: true})
	defer s.close()
	for _, msg := range []string{
		`{"type":"publish","id":1,"events":[{"name":"\u202egro"}]}`,
		`{"type":"data","id":1,"data":{"\u0000k":"v"}}`,
	} {
		s.send(t, msg)
		if f := s.reply(t); f.Type != "error" || f.Error == nil || f.Error.Code != "invalid" || !strings.Contains(f.Error.Message, "U+") {
			t.Errorf("WebSocket %s: %+v %+v, want an invalid error naming the character", msg, f, f.Error)
		}
	}
	// Nothing refused reached the stream: only the host's join is there.
	var p page
	c.call("GET", fmt.Sprintf("%s/events?since=0", gp), g.Token, nil, &p)
	for _, it := range p.Items {
		if it.Kind != "join" || it.Node != g.Node.ID {
			t.Fatalf("stream after the refusals holds %+v", p.Items)
		}
	}
	var groups struct {
		Groups []struct{ Name string } `json:"groups"`
	}
	c.call("GET", "/api/v1/groups?domain="+g.Group.Domain, "", nil, &groups)
	if len(groups.Groups) != 1 {
		t.Fatalf("groups after the refusals: %+v", groups.Groups)
	}
}
