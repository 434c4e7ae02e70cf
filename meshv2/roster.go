package meshv2

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Transports under which Mesh v2 nodes appear in presence (the dashboard's transport column).
const (
	transportRealtime = "graphql_ws"
	transportPolling  = "graphql_poll"
)

// pollTokenSep separates the cursor from the node id in the poll positions meshbox hands to a
// polling node: "<cursor>~<nodeId>". The client treats them as opaque strings.
const pollTokenSep = "~"

// roster remembers, in memory and bounded, which Mesh v2 node reads a group how. The protocol's
// polls (getEventsSince, pollGroupData) and its subscription name no node, so meshbox
// attributes them:
//
//   - createGroup and joinGroup register the node as expected, with the client's address,
//     the mode it will use (polling or WebSocket) and the stream position right after its join.
//   - A polling node's first poll carries a time (the client's own clock). It is matched to the
//     oldest expected polling node of that group from the same address, and from then on
//     every position handed to it (event cursors, recordEventsByNode's nextSince) names the
//     node: "<cursor>~<nodeId>". Each later poll says which node polls and what it has
//     fetched; the roster keeps that position.
//   - recordEventsByNode answers the recording node's own fetch position as nextSince, so the
//     client (which moves its poll position to nextSince) never jumps over events it has not
//     received, and gets its own events once, with its next poll.
//   - A subscription claims the newest expected WebSocket node of that group from the same
//     address that has no subscription open, and releases it when it ends.
//
// Attributed nodes are present (Backend.Attend) while subscribed, or while they poll within
// their interval. Limits, all between polling tabs behind one address: tabs that join
// within one polling interval can be matched in the wrong order (each then starts from the
// other's position), and two first polls with the very same time string (to the
// millisecond) are taken for one client's.
type roster struct {
	backend Backend
	now     func() time.Time
	// window is how long after its last poll a polling node counts as present.
	window time.Duration
	// expectFor is how long an expected polling node waits for its first poll, and an
	// expected WebSocket node without a subscription for its next one.
	expectFor time.Duration
	// idle is how long the position of a node that stopped polling is kept.
	idle time.Duration
	// max bounds the pollers and the expected nodes, each.
	max int

	mu       sync.Mutex
	pollers  map[nodeKey]*poller
	expected map[string][]*expectedNode // by group, in join order
	nExpect  int
	// anchors finds the node a first poll was attributed to when the client sends the same
	// time again (it keeps its position until a poll brings events).
	anchors map[anchorKey]string
}

type nodeKey struct{ group, node string }

type anchorKey struct{ group, ip, since string }

type poller struct {
	// pos is the cursor of the position the node holds: it has been handed every event up to it.
	pos  int64
	seen time.Time // last poll; zero before the first
	// anchor is the time string of the first poll, while the client may send it again.
	anchor anchorKey
	// release ends the node's presence; nil while it is not present.
	release func()
}

type expectedNode struct {
	node    string
	ip      string
	cursor  int64 // where a polling node starts: right after its join
	at      time.Time
	polling bool
	// claimed is set while a subscription is attributed to this (WebSocket) node.
	claimed bool
}

func newRoster(backend Backend, now func() time.Time, pollingInterval time.Duration, limit int) *roster {
	return &roster{
		backend:   backend,
		now:       now,
		window:    2*pollingInterval + time.Second,
		expectFor: 5*pollingInterval + 30*time.Second,
		idle:      max(10*pollingInterval, 5*time.Minute),
		max:       limit,
		pollers:   map[nodeKey]*poller{},
		expected:  map[string][]*expectedNode{},
		anchors:   map[anchorKey]string{},
	}
}

// formatPollToken is the position handed to a polling node; a node-less one is a bare cursor.
func formatPollToken(cursor int64, node string) string {
	if node == "" {
		return strconv.FormatInt(cursor, 10)
	}
	return strconv.FormatInt(cursor, 10) + pollTokenSep + node
}

// parsePollToken reads "<cursor>" or "<cursor>~<nodeId>"; ok is false for anything else.
func parsePollToken(s string) (cursor int64, node string, ok bool) {
	num, node, tagged := strings.Cut(s, pollTokenSep)
	c, err := strconv.ParseInt(num, 10, 64)
	if err != nil || c < 0 || (tagged && (node == "" || len(node) > maxIDLen)) {
		return 0, "", false
	}
	return c, node, true
}

// expect registers a node that has just created or joined a group. A node that joins again
// (a new tab with the same id, or a reload) starts over.
func (ro *roster) expect(group, node, ip string, cursor int64, polling bool) {
	ro.mu.Lock()
	ro.dropLocked(group, node)
	if ro.nExpect >= ro.max {
		ro.sweepLocked(ro.now())
	}
	if ro.nExpect >= ro.max {
		ro.evictExpectedLocked()
	}
	ro.expected[group] = append(ro.expected[group], &expectedNode{node: node, ip: ip, cursor: cursor, at: ro.now(), polling: polling})
	ro.nExpect++
	releases := ro.takeReleaseLocked(group, node)
	ro.mu.Unlock()
	runAll(releases)
}

// claimPoller attributes a first poll (since, a time) from ip to the oldest expected polling
// node of the group from that address, and returns it with the position it holds: where it
// starts, until a poll brings it events.
func (ro *roster) claimPoller(group, ip, since string) (node string, pos int64, ok bool) {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	ak := anchorKey{group, ip, since}
	if node, ok := ro.anchors[ak]; ok {
		if p := ro.pollers[nodeKey{group, node}]; p != nil && p.anchor == ak {
			return node, p.pos, true
		}
		delete(ro.anchors, ak)
	}
	list := ro.expected[group]
	for i, e := range list {
		if !e.polling || e.ip != ip {
			continue
		}
		ro.removeExpectedLocked(group, i)
		p := ro.pollerLocked(group, e.node)
		p.pos = e.cursor
		ro.setAnchorLocked(group, e.node, p, ak)
		return e.node, e.cursor, true
	}
	return "", 0, false
}

func (ro *roster) setAnchorLocked(group, node string, p *poller, ak anchorKey) {
	if p.anchor != (anchorKey{}) {
		delete(ro.anchors, p.anchor)
	}
	p.anchor = ak
	if ak != (anchorKey{}) {
		ro.anchors[ak] = node
	}
}

// deleteLocked forgets a poller and returns its presence's release, if any.
func (ro *roster) deleteLocked(k nodeKey, p *poller) func() {
	ro.setAnchorLocked(k.group, k.node, p, anchorKey{})
	delete(ro.pollers, k)
	return p.release
}

// position returns the position a node holds for recordEventsByNode's nextSince: what its polls
// have fetched, or where it starts when it records before its first poll. A node the roster
// does not know (after a restart) holds fallback, the position before its events.
func (ro *roster) position(group, node string, fallback int64) int64 {
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if p := ro.pollers[nodeKey{group, node}]; p != nil {
		return p.pos
	}
	for i, e := range ro.expected[group] {
		if e.node == node && e.polling {
			ro.removeExpectedLocked(group, i)
			ro.pollerLocked(group, node).pos = e.cursor
			return e.cursor
		}
	}
	ro.pollerLocked(group, node).pos = fallback
	return fallback
}

// polled records that node's poll left it holding pos, and makes it present. A poll that
// brought events moves the client off its first-poll time.
func (ro *roster) polled(group, node string, pos int64) {
	ro.mu.Lock()
	p := ro.pollerLocked(group, node)
	if pos != p.pos {
		ro.setAnchorLocked(group, node, p, anchorKey{})
	}
	p.pos, p.seen = pos, ro.now()
	attend := p.release == nil
	ro.mu.Unlock()
	if !attend {
		return
	}
	release := ro.backend.Attend(group, node, transportPolling)
	ro.mu.Lock()
	p = ro.pollers[nodeKey{group, node}]
	if p == nil || p.release != nil {
		ro.mu.Unlock()
		release() // forgotten meanwhile, or a concurrent poll attended first
		return
	}
	p.release = release
	ro.mu.Unlock()
}

// claimRealtime attributes a subscription from ip to the newest expected WebSocket node of the
// group from that address that has none open. ok is false when there is none; release ends
// the claim and the node's presence.
func (ro *roster) claimRealtime(group, ip string) (node string, release func(), ok bool) {
	ro.mu.Lock()
	var claimed *expectedNode
	list := ro.expected[group]
	for i := len(list) - 1; i >= 0; i-- {
		if e := list[i]; !e.polling && !e.claimed && e.ip == ip {
			claimed = e
			break
		}
	}
	if claimed == nil {
		ro.mu.Unlock()
		return "", nil, false
	}
	claimed.claimed = true
	ro.mu.Unlock()
	present := ro.backend.Attend(group, claimed.node, transportRealtime)
	var once sync.Once
	return claimed.node, func() {
		once.Do(func() {
			present()
			ro.mu.Lock()
			claimed.claimed = false
			claimed.at = ro.now() // a reconnecting client has expectFor to claim it again
			ro.mu.Unlock()
		})
	}, true
}

// forget drops a node that left.
func (ro *roster) forget(group, node string) {
	ro.mu.Lock()
	ro.dropLocked(group, node)
	releases := ro.takeReleaseLocked(group, node)
	ro.mu.Unlock()
	runAll(releases)
}

// forgetGroup drops every node of a group that ended.
func (ro *roster) forgetGroup(group string) {
	ro.mu.Lock()
	ro.nExpect -= len(ro.expected[group])
	delete(ro.expected, group)
	var releases []func()
	for k, p := range ro.pollers {
		if k.group == group {
			if rel := ro.deleteLocked(k, p); rel != nil {
				releases = append(releases, rel)
			}
		}
	}
	ro.mu.Unlock()
	runAll(releases)
}

// run sweeps every interval until ctx ends, then ends every presence it holds.
func (ro *roster) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			ro.mu.Lock()
			var releases []func()
			for k, p := range ro.pollers {
				if rel := ro.deleteLocked(k, p); rel != nil {
					releases = append(releases, rel)
				}
			}
			ro.mu.Unlock()
			runAll(releases)
			return
		case <-tick.C:
			ro.sweep()
		}
	}
}

// sweep ends the presence of nodes that stopped polling and forgets stale state.
func (ro *roster) sweep() {
	ro.mu.Lock()
	releases := ro.sweepLocked(ro.now())
	ro.mu.Unlock()
	runAll(releases)
}

func (ro *roster) sweepLocked(now time.Time) []func() {
	var releases []func()
	for k, p := range ro.pollers {
		if p.release != nil && now.Sub(p.seen) > ro.window {
			releases = append(releases, p.release)
			p.release = nil
		}
		last := p.seen
		if last.IsZero() {
			last = now // not yet polled: kept until evicted by size
		}
		if now.Sub(last) > ro.idle {
			ro.deleteLocked(k, p) // its presence ended above
		}
	}
	for g, list := range ro.expected {
		kept := list[:0]
		for _, e := range list {
			if e.claimed || now.Sub(e.at) <= ro.expectFor {
				kept = append(kept, e)
			}
		}
		clear(list[len(kept):])
		ro.nExpect -= len(list) - len(kept)
		if len(kept) == 0 {
			delete(ro.expected, g)
		} else {
			ro.expected[g] = kept
		}
	}
	return releases
}

// pollerLocked returns the node's poller, creating it (and making room) when needed.
func (ro *roster) pollerLocked(group, node string) *poller {
	k := nodeKey{group, node}
	if p := ro.pollers[k]; p != nil {
		return p
	}
	if len(ro.pollers) >= ro.max {
		// Full of nodes that polled recently: forget the one silent longest. Its presence is
		// ended; if it polls again it is tracked from the position its token names.
		var oldK nodeKey
		var old *poller
		for k2, p2 := range ro.pollers {
			if old == nil || p2.seen.Before(old.seen) {
				oldK, old = k2, p2
			}
		}
		if old != nil {
			if rel := ro.deleteLocked(oldK, old); rel != nil {
				rel() // a hub call that never calls back into the roster
			}
		}
	}
	p := &poller{}
	ro.pollers[k] = p
	return p
}

func (ro *roster) dropLocked(group, node string) {
	list := ro.expected[group]
	for i := 0; i < len(list); {
		if list[i].node == node {
			ro.removeExpectedLocked(group, i)
			list = ro.expected[group]
			continue
		}
		i++
	}
}

func (ro *roster) takeReleaseLocked(group, node string) []func() {
	k := nodeKey{group, node}
	p := ro.pollers[k]
	if p == nil {
		return nil
	}
	if rel := ro.deleteLocked(k, p); rel != nil {
		return []func(){rel}
	}
	return nil
}

func (ro *roster) removeExpectedLocked(group string, i int) {
	list := ro.expected[group]
	list = append(list[:i], list[i+1:]...)
	ro.nExpect--
	if len(list) == 0 {
		delete(ro.expected, group)
		return
	}
	ro.expected[group] = list
}

// evictExpectedLocked drops the oldest unclaimed expected node of any group.
func (ro *roster) evictExpectedLocked() {
	var og string
	oi := -1
	var oat time.Time
	for g, list := range ro.expected {
		for i, e := range list {
			if !e.claimed && (oi < 0 || e.at.Before(oat)) {
				og, oi, oat = g, i, e.at
			}
		}
	}
	if oi >= 0 {
		ro.removeExpectedLocked(og, oi)
	}
}

func runAll(fns []func()) {
	for _, f := range fns {
		f()
	}
}
