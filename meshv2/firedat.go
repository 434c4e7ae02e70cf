package meshv2

import (
	"hash/maphash"
	"sync"
	"time"
)

// firedAtCache remembers the client's firedAt of recently published events. The store keeps
// only the server time, but Mesh v2 receivers replay a batch with the gaps between the
// firedAt times, so readers in this process look the original time up here. Entries are
// keyed by what identifies an event of one node (the client never queues the same name and
// payload twice in one batch, and newer clients add an orderKey), and the oldest entries are
// dropped past a fixed count so memory stays bounded.
type firedAtCache struct {
	seed maphash.Seed

	mu   sync.Mutex
	at   map[uint64]time.Time
	ring []uint64
	next int
}

func newFiredAtCache(size int) *firedAtCache {
	return &firedAtCache{
		seed: maphash.MakeSeed(),
		at:   make(map[uint64]time.Time, size),
		ring: make([]uint64, 0, size),
	}
}

func (c *firedAtCache) key(group, node, name, payload, orderKey string) uint64 {
	var h maphash.Hash
	h.SetSeed(c.seed)
	for _, s := range [...]string{group, node, name, payload, orderKey} {
		h.WriteString(s)
		h.WriteByte(0)
	}
	return h.Sum64()
}

func (c *firedAtCache) put(group, node, name, payload, orderKey string, t time.Time) {
	if t.IsZero() {
		return
	}
	k := c.key(group, node, name, payload, orderKey)
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.at[k]; !ok {
		if len(c.ring) < cap(c.ring) {
			c.ring = append(c.ring, k)
		} else {
			delete(c.at, c.ring[c.next])
			c.ring[c.next] = k
			c.next = (c.next + 1) % len(c.ring)
		}
	}
	c.at[k] = t
}

func (c *firedAtCache) get(group, node, name, payload, orderKey string) (time.Time, bool) {
	k := c.key(group, node, name, payload, orderKey)
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.at[k]
	return t, ok
}
