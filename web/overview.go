package web

import (
	"context"
	"meshbox/hub"
	"net/http"
	"sort"
	"sync"
	"time"

	"meshbox/apierror"
	"meshbox/metrics"
)

// Overview is the dashboard's snapshot of the whole box; web/API.md documents each field.
type Overview struct {
	Version       string    `json:"version"`
	Now           time.Time `json:"now"`
	StartedAt     time.Time `json:"startedAt"`
	UptimeSeconds float64   `json:"uptimeSeconds"`
	AdminEnabled  bool      `json:"adminEnabled"`
	// Details tells whether Domains (names, nodes, data) are included: only for the admin.
	Details     bool             `json:"details"`
	JoinURLs    []string         `json:"joinURLs,omitempty"`
	Join        *JoinInfo        `json:"join,omitempty"`
	Connections map[string]int64 `json:"connections"`
	Accepted    int64            `json:"connectionsAccepted"`
	Totals      TotalsView       `json:"totals"`
	Rates       RatesView        `json:"rates"`
	Storage     StorageView      `json:"storage"`
	Purge       PurgeView        `json:"purge"`
	GroupsLive  int              `json:"groupsLive"`
	NodesLive   int              `json:"nodesLive"`
	Domains     []DomainView     `json:"domains"`
}

// TotalsView are counters since the process started.
type TotalsView struct {
	Items     int64 `json:"items"`
	Events    int64 `json:"events"`
	Delivered int64 `json:"delivered"`
	Publishes int64 `json:"publishes"`
	Rejected  int64 `json:"rejected"`
}

// RatesView are per-second rates, oldest first, one sample per IntervalSeconds.
type RatesView struct {
	IntervalSeconds float64   `json:"intervalSeconds"`
	Events          []float64 `json:"events"`
	Deliveries      []float64 `json:"deliveries"`
}

// StorageView describes the SQLite files and what they retain.
type StorageView struct {
	DatabaseBytes    int64   `json:"databaseBytes"`
	WALBytes         int64   `json:"walBytes"`
	RetainedItems    int64   `json:"retainedItems"`
	OldestItemAgeSec float64 `json:"oldestItemAgeSeconds"`
	Cursor           int64   `json:"cursor"`
	WriterQueue      int     `json:"writerQueue"`
	// State is ok, pressure, full or recovering; StateSince when it began, BudgetBytes the
	// size budget in force (0: none).
	State       string     `json:"state"`
	StateSince  *time.Time `json:"stateSince"`
	BudgetBytes int64      `json:"budgetBytes"`
}

// PurgeView is the retention activity since start.
type PurgeView struct {
	Runs           int64      `json:"runs"`
	Items          int64      `json:"items"`
	Groups         int64      `json:"groups"`
	Nodes          int64      `json:"nodes"`
	LastAt         *time.Time `json:"lastAt"`
	LastDurationMs float64    `json:"lastDurationMs"`
}

// DomainView lists the live groups of one domain.
type DomainView struct {
	Domain string      `json:"domain"`
	Groups []GroupView `json:"groups"`
}

// GroupView is one live group with its members.
type GroupView struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Domain    string     `json:"domain"`
	Host      string     `json:"host"`
	CreatedAt time.Time  `json:"createdAt"`
	ExpiresAt time.Time  `json:"expiresAt"`
	Nodes     []NodeView `json:"nodes"`
}

// NodeView is one member as the dashboard shows it.
type NodeView struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	Host       bool      `json:"host"`
	JoinedAt   time.Time `json:"joinedAt"`
	LastSeen   time.Time `json:"lastSeen"`
	ExpiresAt  time.Time `json:"expiresAt"`
	Transports []string  `json:"transports"`
	// Link is the node's round-trip summary, when it has one.
	Link *hub.Link         `json:"link,omitempty"`
	Data map[string]string `json:"data"`
}

// rateWindow is how many one-second samples the chart keeps: five minutes.
const rateWindow = 300

// rates turns counter totals sampled about once a second into per-second rates.
type rates struct {
	mu         sync.Mutex
	lastAt     time.Time
	lastEvents int64
	lastDeliv  int64
	events     []float64
	deliveries []float64
}

func (r *rates) sample(now time.Time, t metrics.Totals) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ev, dv := t.Appended["event"], t.Delivered
	if !r.lastAt.IsZero() {
		dt := now.Sub(r.lastAt).Seconds()
		if dt <= 0 {
			return
		}
		r.events = appendWindow(r.events, float64(ev-r.lastEvents)/dt)
		r.deliveries = appendWindow(r.deliveries, float64(dv-r.lastDeliv)/dt)
	}
	r.lastAt, r.lastEvents, r.lastDeliv = now, ev, dv
}

func appendWindow(s []float64, v float64) []float64 {
	if len(s) >= rateWindow {
		s = append(s[:0], s[len(s)-rateWindow+1:]...)
	}
	return append(s, v)
}

func (r *rates) view() RatesView {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RatesView{
		IntervalSeconds: 1,
		Events:          append([]float64{}, r.events...),
		Deliveries:      append([]float64{}, r.deliveries...),
	}
}

// overview assembles the snapshot; it reads the store's in-memory state plus one small query.
func (h *Handler) overview(ctx context.Context) Overview {
	now := time.Now()
	t := h.meter.Totals()
	st := h.store.Stats(ctx)
	o := Overview{
		Version:       h.cfg.Version,
		Now:           now.UTC(),
		StartedAt:     h.cfg.StartedAt.UTC(),
		UptimeSeconds: now.Sub(h.cfg.StartedAt).Seconds(),
		AdminEnabled:  h.cfg.AdminToken != "",
		Details:       true,
		Connections:   t.Connections,
		Accepted:      t.Accepted,
		Totals: TotalsView{
			Events: t.Appended["event"], Delivered: t.Delivered, Rejected: t.Rejected,
			Publishes: t.Publishes["ok"] + t.Publishes["rejected"] + t.Publishes["error"],
		},
		Rates: h.hub.rates.view(),
		Storage: StorageView{
			DatabaseBytes: st.DBBytes, WALBytes: st.WALBytes, RetainedItems: st.RetainedItems,
			OldestItemAgeSec: st.OldestItemAge.Seconds(), Cursor: st.Cursor, WriterQueue: st.QueueDepth,
			State: string(st.Storage.State), BudgetBytes: st.Storage.Budget,
		},
		Purge: PurgeView{
			Runs: t.PurgeRuns, Items: t.PurgedItems, Groups: t.PurgedGroups, Nodes: t.PurgedNodes,
			LastDurationMs: float64(t.LastPurgeTook) / float64(time.Millisecond),
		},
		Domains: []DomainView{},
	}
	for _, n := range t.Appended {
		o.Totals.Items += n
	}
	if !t.LastPurgeAt.IsZero() {
		at := t.LastPurgeAt.UTC()
		o.Purge.LastAt = &at
	}
	if since := st.Storage.Since; !since.IsZero() {
		since = since.UTC()
		o.Storage.StateSince = &since
	}

	byDomain := map[string]*DomainView{}
	for _, g := range h.store.Groups("") {
		nodes, err := h.store.Nodes(g.ID)
		if err != nil {
			continue // ended between the two reads
		}
		transports := h.feed.Transports(g.ID)
		links := h.feed.Links(g.ID)
		gv := GroupView{
			ID: g.ID, Name: g.Name, Domain: g.Domain, Host: g.Host,
			CreatedAt: g.CreatedAt, ExpiresAt: g.ExpiresAt, Nodes: make([]NodeView, 0, len(nodes)),
		}
		for _, n := range nodes {
			nv := NodeView{
				ID: n.ID, Name: n.Name, Host: n.Host || n.ID == g.Host, JoinedAt: n.JoinedAt,
				LastSeen: n.LastSeen, ExpiresAt: n.ExpiresAt, Data: n.Data, Transports: []string{},
			}
			if nv.Data == nil {
				nv.Data = map[string]string{}
			}
			if ts := transports[n.ID]; len(ts) > 0 {
				nv.Transports = ts
			}
			if l, ok := links[n.ID]; ok {
				nv.Link = &l
			}
			gv.Nodes = append(gv.Nodes, nv)
		}
		d := byDomain[g.Domain]
		if d == nil {
			d = &DomainView{Domain: g.Domain}
			byDomain[g.Domain] = d
		}
		d.Groups = append(d.Groups, gv)
		o.GroupsLive++
		o.NodesLive += len(gv.Nodes)
	}
	for _, d := range byDomain {
		o.Domains = append(o.Domains, *d)
	}
	sort.Slice(o.Domains, func(i, j int) bool { return o.Domains[i].Domain < o.Domains[j].Domain })
	return o
}

// aggregate is the overview for anyone without the admin token: the figures, without a single
// name, datum or payload.
func (o Overview) aggregate() Overview {
	o.Domains = []DomainView{}
	o.Details = false
	return o
}

func (h *Handler) overviewJSON(w http.ResponseWriter, r *http.Request) {
	o := h.overview(r.Context())
	if !h.isAdmin(r) {
		o = o.aggregate()
	}
	j := h.join(r)
	o.JoinURLs, o.Join = j.URLs, &j
	apierror.WriteJSON(w, http.StatusOK, o)
}
