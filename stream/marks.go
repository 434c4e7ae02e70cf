package stream

import "sync"

// PurgeMarks is what a log knows of its purges, for readers: per known group, the newest of its
// items that a purge deleted, and the newest item deleted overall. A reader behind its own
// group's mark has missed items (truncated); one that is not has not, whatever was purged of
// other groups. A group the log does not know (forgotten) falls back to the overall mark. Every
// Log implementation keeps one, so truncation is detected the same way in all of them.
type PurgeMarks struct {
	mu      sync.RWMutex
	groups  map[string]int64
	through int64
}

// Set replaces the marks, as loaded at start: groups holds every known group (0: nothing of it
// purged yet).
func (m *PurgeMarks) Set(groups map[string]int64, through int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.groups = groups
	m.through = max(m.through, through)
}

// Apply takes in a committed batch's changes: a stored group becomes known, a deleted one is
// forgotten.
func (m *PurgeMarks) Apply(changes []Change) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range changes {
		switch c.Kind {
		case PutGroup:
			m.knowLocked(c.Group.ID)
		case DeleteGroup:
			delete(m.groups, c.Group.ID)
		}
	}
}

// Know makes a group known (its records were stored).
func (m *PurgeMarks) Know(gid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.knowLocked(gid)
}

// Forget drops a group (its records were deleted).
func (m *PurgeMarks) Forget(gid string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.groups, gid)
}

func (m *PurgeMarks) knowLocked(gid string) {
	if m.groups == nil {
		m.groups = map[string]int64{}
	}
	if _, ok := m.groups[gid]; !ok {
		m.groups[gid] = 0
	}
}

// Purged records a purge: each known group's newest deleted item (marks never go back), and
// the newest deleted overall.
func (m *PurgeMarks) Purged(perGroup map[string]int64, through int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for gid, c := range perGroup {
		if old, known := m.groups[gid]; known {
			m.groups[gid] = max(old, c)
		}
	}
	m.through = max(m.through, through)
}

// Truncated reports whether a reader of group gid at cursor since has missed purged items.
func (m *PurgeMarks) Truncated(gid string, since int64) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if mark, known := m.groups[gid]; known {
		return since < mark
	}
	return since < m.through
}

// Through is the newest item deleted by any purge (0: none).
func (m *PurgeMarks) Through() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.through
}

// Mark is a known group's newest deleted item (0 when none, or the group is unknown).
func (m *PurgeMarks) Mark(gid string) int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.groups[gid]
}
