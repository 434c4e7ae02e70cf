package stream

import "testing"

func TestPurgeMarks(t *testing.T) {
	var m PurgeMarks
	m.Set(map[string]int64{"a": 0}, 0)
	m.Apply([]Change{{Kind: PutGroup, Group: GroupRecord{ID: "b"}}, {Kind: PutGroup, Group: GroupRecord{ID: "gone"}}})
	m.Apply([]Change{{Kind: DeleteGroup, Group: GroupRecord{ID: "gone"}}})
	m.Purged(map[string]int64{"a": 10, "gone": 12}, 12)
	m.Purged(map[string]int64{"a": 5}, 3) // marks never go back
	for _, c := range []struct {
		gid   string
		since int64
		want  bool
	}{
		{"a", 9, true}, {"a", 10, false}, // behind its own mark, or not
		{"b", 0, false},    // nothing of b was purged
		{"gone", 11, true}, // forgotten: the overall mark decides
		{"unknown", 12, false},
	} {
		if got := m.Truncated(c.gid, c.since); got != c.want {
			t.Errorf("Truncated(%s, %d) = %v, want %v", c.gid, c.since, got, c.want)
		}
	}
	if m.Through() != 12 || m.Mark("a") != 10 {
		t.Errorf("through %d, mark of a %d", m.Through(), m.Mark("a"))
	}
}
