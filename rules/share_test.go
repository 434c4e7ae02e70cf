package rules_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"meshbox/jetstream/natstest"
	"meshbox/rules"
)

// Issue 22, row 4: one laptop filled a classmate's group with made-up members. One client
// address holds a share of a group's members, and of all members, whatever the rest of the
// group; its classmates' joins go on.
func TestClientShareOfMembers(t *testing.T) {
	t.Parallel()
	o := rules.Options{Limits: rules.Limits{MaxNodesPerGroup: 10, MaxNodesPerClientGroup: 3, MaxNodesPerClient: 5}}
	b := newBox(t, o)
	pupil := rules.WithClient(context.Background(), "10.0.0.2")
	class := rules.WithClient(context.Background(), "10.0.0.3")
	join := func(ctx context.Context, gid string) (rules.Joined, error) {
		return b.Join(ctx, gid, rules.NewNode{Name: "Teacher"})
	}
	refused := func(err error, what string) {
		t.Helper()
		var rl *rules.RateLimitError
		if !errors.Is(err, rules.ErrClientShare) || !errors.As(err, &rl) || rl.RetryAfter <= 0 || !strings.Contains(err.Error(), "10.0.0.2") {
			t.Fatalf("%s: %v, want ErrClientShare with a RetryAfter naming the address", what, err)
		}
	}
	g1, err := b.CreateGroup(class, rules.NewGroup{Domain: "d", Name: "class"})
	if err != nil {
		t.Fatal(err)
	}
	var first rules.Joined
	for i := range 3 {
		j, err := join(pupil, g1.Group.ID)
		if err != nil {
			t.Fatalf("pupil's join %d: %v", i, err)
		}
		if i == 0 {
			first = j
		}
	}
	_, err = join(pupil, g1.Group.ID)
	refused(err, "a fourth member from one address")
	if _, err := join(class, g1.Group.ID); err != nil {
		t.Fatalf("a classmate's join beside the pupil's share: %v", err)
	}
	// A member that leaves frees its place in the share.
	if err := b.Leave(pupil, g1.Group.ID, first.Node.ID, "left"); err != nil {
		t.Fatal(err)
	}
	if _, err := join(pupil, g1.Group.ID); err != nil {
		t.Fatalf("a join after one of the pupil's members left: %v", err)
	}
	// In all groups together: two more in a second group make five, then none anywhere, a
	// group's host included.
	g2, err := b.CreateGroup(class, rules.NewGroup{Domain: "d2", Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := join(pupil, g2.Group.ID); err != nil {
			t.Fatal(err)
		}
	}
	_, err = join(pupil, g2.Group.ID)
	refused(err, "a sixth member in all groups")
	_, err = b.CreateGroup(pupil, rules.NewGroup{Domain: "d3", Name: "mine"})
	refused(err, "a group (its host is a sixth member)")
	// A dissolved group's members count no more.
	if err := b.Dissolve(class, g2.Group.ID, "host"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.CreateGroup(pupil, rules.NewGroup{Domain: "d3", Name: "mine"}); err != nil {
		t.Fatalf("a group once two members ended with theirs: %v", err)
	}
	// Calls that name no client (tests, tools in process) are not counted.
	if _, err := join(context.Background(), g1.Group.ID); err != nil {
		t.Fatalf("a join without a client: %v", err)
	}

	// The clients are kept in memory only: after a restart the members that survived count
	// for nobody, and the group's own cap still holds.
	b = b.reopen(t, o, rules.Hooks{})
	for range 3 {
		if _, err := join(pupil, g1.Group.ID); err != nil {
			t.Fatalf("a join after a restart: %v", err)
		}
	}
	_, err = join(pupil, g1.Group.ID)
	refused(err, "a fourth member from one address after a restart")
}

// Issue 22, row 5: four laptops filled the shared domain. One client address holds a share
// of a domain's groups; others still create there, and it still creates in other domains up
// to its share of the server.
func TestClientShareOfADomain(t *testing.T) {
	t.Parallel()
	b := newBox(t, rules.Options{Limits: rules.Limits{MaxGroupsPerDomain: 5, MaxGroupsPerClientDomain: 2, MaxGroupsPerClient: 3}})
	pupil := rules.WithClient(context.Background(), "10.0.0.2")
	for i := range 2 {
		if _, err := b.CreateGroup(pupil, rules.NewGroup{Domain: "classroom", Name: "g"}); err != nil {
			t.Fatalf("pupil's group %d: %v", i, err)
		}
	}
	_, err := b.CreateGroup(pupil, rules.NewGroup{Domain: "classroom", Name: "g"})
	if !errors.Is(err, rules.ErrClientShare) || !strings.Contains(err.Error(), "classroom") {
		t.Fatalf("a third group in one domain: %v, want ErrClientShare", err)
	}
	for _, ip := range []string{"10.0.0.3", "10.0.0.4", "10.0.0.5"} {
		if _, err := b.CreateGroup(rules.WithClient(context.Background(), ip), rules.NewGroup{Domain: "classroom", Name: "g"}); err != nil {
			t.Fatalf("a group of the classmate at %s: %v", ip, err)
		}
	}
	if _, err := b.CreateGroup(pupil, rules.NewGroup{Domain: "elsewhere", Name: "g"}); err != nil {
		t.Fatalf("a group in another domain: %v", err)
	}
	if _, err := b.CreateGroup(pupil, rules.NewGroup{Domain: "third", Name: "g"}); !errors.Is(err, rules.ErrClientShare) {
		t.Fatalf("a fourth group in all domains: %v, want ErrClientShare", err)
	}
}

// Over a shared log the share counts what this instance served; a record another instance
// writes about one of those members (its heartbeat there) keeps it counted here.
func TestSharedStreamClientShareSurvivesOthersRecords(t *testing.T) {
	t.Parallel()
	in := instances(t, natstest.Run(t), 2, rules.Options{Limits: rules.Limits{MaxNodesPerClientGroup: 2}})
	pupil := rules.WithClient(context.Background(), "10.0.0.2")
	host := mustCreateOn(t, in[0].Engine, rules.NewGroup{Domain: "d", Name: "class"})
	gid := host.Group.ID
	var ids []string
	for range 2 {
		j, err := in[0].Join(pupil, gid, rules.NewNode{Name: "m"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, j.Node.ID)
	}
	for _, nid := range ids {
		if _, _, err := in[1].Heartbeat(context.Background(), gid, nid); err != nil {
			t.Fatal(err)
		}
	}
	if err := in[0].Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := in[0].Join(pupil, gid, rules.NewNode{Name: "m"}); !errors.Is(err, rules.ErrClientShare) {
		t.Fatalf("a third member after the others' records of the first two: %v, want ErrClientShare", err)
	}
}

// Issue 22, row 7: names are text a person can read, on every call that takes one.
func TestNamesAreReadable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newBox(t, rules.Options{})
	h := mustCreate(t, b)
	gid, nid := h.Group.ID, h.Node.ID
	bad := map[string]string{
		"NUL":                     "a\x00b",
		"ESC":                     "\x1b[2J\x1b[31mTeacher",
		"tab":                     "a\tb",
		"DEL":                     "a\x7fb",
		"C1 (NEL)":                "a\u0085b",
		"right-to-left override":  "\u202eTeacher",
		"left-to-right embedding": "\u202aTeacher",
		"isolate":                 "\u2066x\u2069",
		"left-to-right mark":      "x\u200e",
		"right-to-left mark":      "x\u200f",
		"Arabic letter mark":      "x\u061c",
		"zero-width space":        "Tea\u200bcher",
		"byte order mark":         "\ufeffTeacher",
		"word joiner":             "a\u2060b",
		"line separator":          "a\u2028b",
		"hidden tag text":         "hi\U000E0041\U000E0042",
	}
	good := []string{"Teacher", "クラス 1", "été", "👨‍👩‍👧", "❤️", "🏴\U000E0067\U000E0062\U000E0065\U000E006E\U000E0067\U000E007F", "می\u200cخواهم", "a b"}
	calls := map[string]func(s string) error{
		"group name": func(s string) error {
			_, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: s})
			return err
		},
		"node name": func(s string) error { _, err := b.Join(ctx, gid, rules.NewNode{Name: s}); return err },
		"host name": func(s string) error {
			_, err := b.CreateGroup(ctx, rules.NewGroup{Domain: "d", Name: "g", HostName: s})
			return err
		},
		"event name": func(s string) error { _, err := b.Publish(ctx, gid, nid, []rules.EventIn{{Name: s}}); return err },
		"data key": func(s string) error {
			_, err := b.SetData(ctx, gid, nid, map[string]string{s: "1"}, false)
			return err
		},
	}
	for call, do := range calls {
		for what, s := range bad {
			err := do(s)
			if !errors.Is(err, rules.ErrInvalid) || !strings.Contains(err.Error(), "U+") || !strings.Contains(err.Error(), "read") {
				t.Errorf("%s with %s: %v, want ErrInvalid naming the character", call, what, err)
			}
		}
		for _, s := range good {
			if err := do(s); err != nil {
				t.Errorf("%s %q: %v", call, s, err)
			}
		}
	}
	// Mesh v2 shows a node's id as its name.
	for what, s := range bad {
		if _, err := b.Join(ctx, gid, rules.NewNode{ID: "n" + s, MeshV2: true}); !errors.Is(err, rules.ErrInvalid) {
			t.Errorf("node id with %s: %v, want ErrInvalid", what, err)
		}
	}
	// Data values are data, not names.
	if _, err := b.SetData(ctx, gid, nid, map[string]string{"k": "line 1\nline 2\t\u202e"}, false); err != nil {
		t.Errorf("a value with a newline, a tab and an override: %v", err)
	}
}

// A member that lapses and is purged frees its place in its client's shares too.
func TestClientShareFreedByExpiry(t *testing.T) {
	t.Parallel()
	clk := newClock()
	b := newBox(t, rules.Options{Now: clk.Now, MemberTTL: time.Minute, HostTTL: time.Hour,
		Limits: rules.Limits{MaxNodesPerClientGroup: 1, MaxNodesPerClient: 1}})
	pupil := rules.WithClient(context.Background(), "10.0.0.2")
	g, err := b.CreateGroup(rules.WithClient(context.Background(), "10.0.0.3"), rules.NewGroup{Domain: "d", Name: "class"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(pupil, g.Group.ID, rules.NewNode{Name: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Join(pupil, g.Group.ID, rules.NewNode{Name: "m"}); !errors.Is(err, rules.ErrClientShare) {
		t.Fatalf("a second member: %v, want ErrClientShare", err)
	}
	clk.Add(2 * time.Minute)
	if res, err := b.Purge(context.Background()); err != nil || res.Nodes != 1 {
		t.Fatalf("purge: %+v %v, want the lapsed member removed", res, err)
	}
	if _, err := b.Join(pupil, g.Group.ID, rules.NewNode{Name: "m"}); err != nil {
		t.Fatalf("a join once the first member lapsed: %v", err)
	}
}
