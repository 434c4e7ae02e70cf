package hub

import (
	"slices"
	"sync/atomic"
	"time"
)

// linkWindow is how many round-trip samples a node keeps: the median and worst of the last
// few pings say how the link is now, not how it was ten minutes ago.
const linkWindow = 8

// Link is a node's link quality as its readers measured it: the transport of the last
// sample, what that transport's round trip measures, the median and worst of the last
// samples, and whether its socket has stopped reading (a write blocked at the last check).
type Link struct {
	Transport string `json:"transport"`
	// Measure names what was timed: "ping" (a WebSocket ping until its pong), "echo" (an SSE
	// ping event until the node's echo request arrives), "poll gap" (a long-poll answer
	// written until the node's next poll arrives).
	Measure  string  `json:"measure"`
	Samples  int     `json:"samples"`
	MedianMS float64 `json:"medianMs"`
	WorstMS  float64 `json:"worstMs"`
	Stalled  bool    `json:"stalled"`
}

// linkStats is one node's bounded window of samples.
type linkStats struct {
	transport, measure string
	samples            [linkWindow]time.Duration
	n, next            int
	stalled            bool
	// answered is when the node's last long-poll answer was written, as time since
	// Hub.epoch plus one (zero: none pending). Atomic: the node's readers set and take it
	// without the group's lock.
	answered atomic.Int64
}

// statsLocked returns the node's window, created; p.mu is held.
func (p *presence) statsLocked(nid string) *linkStats {
	l := p.links[nid]
	if l == nil {
		l = &linkStats{}
		p.links[nid] = l
	}
	return l
}

// ObserveRTT records one round trip of node nid of group gid over transport, measured as
// measure. A sample from another transport than the window's starts a fresh window: a node
// that fell back to compatibility mode has a different link.
func (h *Hub) ObserveRTT(gid, nid, transport, measure string, d time.Duration) {
	if nid == "" || d < 0 {
		return
	}
	p := h.presenceOf(gid)
	defer h.pmu.RUnlock()
	p.observeRTT(nid, transport, measure, d)
}

func (p *presence) observeRTT(nid, transport, measure string, d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.statsLocked(nid)
	if l.transport != transport || l.measure != measure {
		// A fresh window; stalled and a pending answer carry over.
		l.transport, l.measure = transport, measure
		l.samples, l.n, l.next = [linkWindow]time.Duration{}, 0, 0
	}
	l.samples[l.next] = d
	l.next = (l.next + 1) % linkWindow
	l.n = min(l.n+1, linkWindow)
}

// SetStalled flags (or clears) a node whose socket stopped reading: its writes block.
func (h *Hub) SetStalled(gid, nid string, stalled bool) {
	if nid == "" {
		return
	}
	if !stalled {
		if p := h.lookup(gid); p != nil {
			if l := p.links[nid]; l != nil {
				l.stalled = false
			}
			p.mu.Unlock()
		}
		return
	}
	p := h.presenceOf(gid)
	defer h.pmu.RUnlock()
	p.mu.Lock()
	p.statsLocked(nid).stalled = true
	p.mu.Unlock()
}

// Links returns the link summary of every node of a group that has one.
func (h *Hub) Links(gid string) map[string]Link {
	p := h.lookup(gid)
	if p == nil {
		return map[string]Link{}
	}
	defer p.mu.Unlock()
	out := make(map[string]Link, len(p.links))
	for nid, l := range p.links {
		if l.n == 0 && !l.stalled {
			continue
		}
		s := slices.Clone(l.samples[:l.n])
		slices.Sort(s)
		k := Link{Transport: l.transport, Measure: l.measure, Samples: l.n, Stalled: l.stalled}
		if l.n > 0 {
			k.MedianMS = ms(s[(l.n-1)/2])
			k.WorstMS = ms(s[l.n-1])
		}
		out[nid] = k
	}
	return out
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// ObserveRTT records a round trip of the reader's node over the reader's transport.
func (s *Sub) ObserveRTT(measure string, d time.Duration) {
	if s.node == "" || d < 0 {
		return
	}
	s.p.observeRTT(s.node, s.transport, measure, d)
}

// Stalled flags (or clears) the reader's node as no longer reading.
func (s *Sub) Stalled(stalled bool) { s.h.SetStalled(s.group, s.node, stalled) }

// Answered notes that a long-poll answer was just written to the reader's node, at.
func (s *Sub) Answered(at time.Time) {
	if s.link == nil {
		return
	}
	s.link.answered.Store(int64(at.Sub(s.h.epoch)) + 1)
}

// PollGap returns the time from the node's last long-poll answer to now (its next poll), if
// one is pending and came within within; the answer is consumed.
func (s *Sub) PollGap(now time.Time, within time.Duration) (time.Duration, bool) {
	if s.link == nil {
		return 0, false
	}
	at := s.link.answered.Swap(0)
	if at == 0 {
		return 0, false
	}
	d := now.Sub(s.h.epoch) - time.Duration(at-1)
	return d, d >= 0 && d <= within
}
