// Package web serves what a browser opens: the teacher dashboard at /, the /try page, the
// /meshbox.js client and the other embedded files (with ETags, so reloads are 304s), plus the
// dashboard's read side: an overview snapshot, one live stream for the whole dashboard (the
// overview feed), the join helper and a QR code of the box's address. The dashboard's admin
// actions go through the native API (/api/v1) with the admin token. web/API.md documents it.
package web

import (
	"context"
	"fmt"
	"log/slog"
	"meshbox/hub"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/apierror"
	"meshbox/auth"
	"meshbox/live"
	"meshbox/metrics"
	"meshbox/rules"
	"meshbox/stream"
)

// Store is the part of *rules.Engine the dashboard reads.
type Store interface {
	Groups(domain string) []rules.Group
	Nodes(gid string) ([]rules.Node, error)
	Stats(ctx context.Context) rules.Stats
	LastCursor() int64
}

// Hub is the part of *hub.Hub the dashboard reads: presence and the global feed of every
// group's committed items.
type Hub interface {
	// Transports returns, per node of a group, the streaming transports it has open now.
	Transports(gid string) map[string][]string
	// Links returns each present node's round-trip summary (hub/link.go).
	Links(gid string) map[string]hub.Link
	// ReadAll returns up to limit items of every group after since, in cursor order;
	// truncated reports that items after since were dropped from the bounded feed.
	ReadAll(since int64, limit int) (items []stream.Item, next int64, truncated bool)
	// WaitAll blocks until an item after since is committed, or ctx ends.
	WaitAll(ctx context.Context, since int64) error
	// ReadAllThrough returns the newest items (at most limit) of every group with cursor <=
	// through still in the feed, in cursor order: a teacher's dashboard opens with them.
	ReadAllThrough(through int64, limit int) []stream.Item
}

// Meter is the part of *metrics.Metrics the dashboard charts and reports refusals to.
type Meter interface {
	Totals() metrics.Totals
	ObserveRejected(reason string)
}

// Config holds the settings the web handlers need.
type Config struct {
	// AdminToken opens the dashboard's details (group and node names, data, items) and the
	// admin actions. Without it the dashboard shows the join page and aggregate figures only;
	// when empty, nobody sees the details and admin actions are disabled.
	AdminToken string
	// Admin is the one admin check, shared with the native API (its back-off counts wrong
	// tokens on every entrance together); nil builds one from AdminToken.
	Admin *auth.Admin
	// Version is shown on the dashboard.
	Version string
	// StartedAt is when the process started, for uptime.
	StartedAt time.Time
	// PublicURL, when set, is the one address the join helper offers (the --public-url
	// setting: behind a port mapping or a reverse proxy); otherwise the addresses are worked
	// out from the request, the listen address and the interfaces.
	PublicURL string
	// ListenAddr is the address the server listens on (the --addr setting), so the join
	// helper knows whether other computers can connect at all, and on which addresses.
	ListenAddr string
	// Machine describes this computer's network; nil means the real one.
	Machine *Machine
	// LANHost, when set, is the box's mDNS name (meshbox.local), offered among the join
	// addresses.
	LANHost string
	// MaxStreams bounds concurrent dashboard streams without the admin token; 0 means 64.
	MaxStreams int
	// AdminStreams are slots kept for streams with the admin token, whatever the others do;
	// 0 means 8.
	AdminStreams int
	// Clients identifies callers (their address, for the per-address connection cap).
	Clients auth.Clients
	// Smalruby, when set, is the path of the Smalruby editor this box serves (/smalruby/):
	// the join box offers it per domain.
	Smalruby string
	// Conns manages the dashboard streams with every other long-lived connection; nil gives
	// the handler its own, without a cap.
	Conns *live.Manager
}

// Handler serves the dashboard, the static files and the dashboard API.
type Handler struct {
	cfg     Config
	store   Store
	feed    Hub
	meter   Meter
	log     *slog.Logger
	assets  *assets
	hub     *broadcaster
	machine *Machine
	// adminCheck is the one admin token check (auth.Admin), shared with the native API.
	adminCheck *auth.Admin
	conns      *live.Manager
	errs       apierror.Writer
	// backfillLim bounds the recent activity a teacher's stream opens with (backfill.go).
	backfillLim backfillLimits
}

// New builds the handlers. Run must be running for the dashboard stream and the rate chart.
func New(cfg Config, store Store, hub Hub, meter Meter, log *slog.Logger) (*Handler, error) {
	if cfg.StartedAt.IsZero() {
		cfg.StartedAt = time.Now()
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 64
	}
	if cfg.AdminStreams <= 0 {
		cfg.AdminStreams = 8
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a, err := loadAssets()
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	machine := cfg.Machine
	if machine == nil {
		machine = RealMachine()
	}
	h := &Handler{
		cfg: cfg, store: store, feed: hub, meter: meter,
		log: log.With("component", "web"), assets: a, machine: machine,
		adminCheck: cfg.Admin, conns: cfg.Conns,
		backfillLim: backfillLimits{perGroup: backfillPerGroup, items: backfillItems, bytes: backfillBytes},
	}
	if h.adminCheck == nil {
		h.adminCheck = auth.NewAdmin(cfg.AdminToken, nil)
	}
	h.errs = apierror.Writer{Log: h.log}
	if meter != nil {
		h.errs.Rejected = meter.ObserveRejected
	}
	if h.conns == nil {
		h.conns = live.New(context.Background(), live.Config{})
	}
	h.hub = newBroadcaster(h)
	return h, nil
}

// Run samples the counters for the rate chart and feeds the dashboard streams until ctx ends.
func (h *Handler) Run(ctx context.Context) {
	h.hub.run(ctx)
}

// Routes registers every route of the package on r, with absolute paths.
func (h *Handler) Routes(r chi.Router) {
	static := func(pattern string, fn http.HandlerFunc) {
		r.Get(pattern, fn)
		r.Head(pattern, fn) // monitoring probes and link checkers use HEAD
	}
	static("/", h.serveAsset("index.html", true))
	static("/try", h.serveAsset("try.html", false))
	static("/meshbox.js", h.serveAsset("meshbox.js", false))
	static("/meshbox.d.ts", h.serveAsset("meshbox.d.ts", false))
	// The native API's own description (embed/assets/openapi.json), beside the API it describes.
	static("/api/v1/openapi.json", h.serveAsset("openapi.json", false))
	static("/favicon.svg", h.serveAsset("favicon.svg", false))
	static("/assets/*", h.serveAssetDir)

	r.Get("/api/v1/dashboard/overview", h.overviewJSON)
	r.Get("/api/v1/dashboard/stream", h.stream)
	r.Get("/api/v1/dashboard/qr.svg", h.qrSVG)
	r.Get("/api/v1/dashboard/join", h.joinJSON)
	// Admin actions are the native API's (DELETE /api/v1/groups/… with the admin token, and
	// GET /api/v1/admin/check): the dashboard calls them like any other client.
}

// StatsSource adapts the store to metrics.StatsSource, for metrics.Metrics.RegisterStats.
func StatsSource(store Store) metrics.StatsSource {
	return metrics.StatsFunc(func(ctx context.Context) (metrics.Stats, error) {
		st := store.Stats(ctx)
		return metrics.Stats{
			GroupsLive: st.Groups, NodesLive: st.Nodes, RetainedItems: st.RetainedItems,
			OldestRetainedAge: st.OldestItemAge, DatabaseBytes: st.DBBytes, WALBytes: st.WALBytes,
			WriterQueueDepth: st.QueueDepth, FollowedGroups: st.FollowedGroups,
			StorageState: string(st.Storage.State), StorageSince: st.Storage.Since, StorageBudget: st.Storage.Budget,
		}, nil
	})
}
