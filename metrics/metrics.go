// Package metrics holds meshbox's private Prometheus registry and the collectors the other
// packages report to. Those packages define small interfaces with the methods of *Metrics, so
// they never import this package and tests can pass nil-safe fakes.
package metrics

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// namespace prefixes every meshbox metric so they group together in Prometheus and Grafana.
const namespace = "meshbox"

// Transports are the connection kinds meshbox serves; they are pre-declared so every series
// exists (at zero) from the first scrape, which keeps rate() and dashboards simple.
var Transports = []string{"ws", "sse", "longpoll", "graphql_ws"}

// preset label values, so a fresh server exposes zero-valued series instead of none.
var (
	itemKinds       = []string{"event", "data", "join", "leave", "dissolve"}
	publishOutcomes = []string{"ok", "rejected", "error"}
	rejectReasons   = []string{"too_large", "rate_limited", "unauthorized", "bad_request", "limit"}
)

// Stats are the values read from the store and hub at scrape time: they are state, not events,
// so they are sampled rather than counted.
type Stats struct {
	GroupsLive        int           // groups not yet ended
	NodesLive         int           // nodes in live groups
	RetainedItems     int64         // stream items not yet purged
	OldestRetainedAge time.Duration // age of the oldest retained item, 0 when there is none
	DatabaseBytes     int64         // size of the main SQLite file
	WALBytes          int64         // size of the -wal file
	WriterQueueDepth  int           // ops waiting for the single writer
	// FollowedGroups is how many groups' items the instance follows on a shared log; -1 (not
	// reported) for a box with a log of its own, which holds every group.
	FollowedGroups int
	// StorageState is the log's storage state (ok, pressure, full, recovering; "" when the
	// log tracks none), StorageSince when it began, StorageBudget the size budget in force.
	StorageState  string
	StorageSince  time.Time
	StorageBudget int64
}

// StorageStates are the values StorageState takes, each a series of meshbox_storage_state.
var StorageStates = []string{"ok", "pressure", "full", "recovering"}

// StatsSource supplies Stats at scrape time. It is given a context bounded by the scrape
// timeout; an error leaves the sampled gauges out of that scrape and is counted.
type StatsSource interface {
	MetricsStats(ctx context.Context) (Stats, error)
}

// StatsFunc adapts a function to StatsSource.
type StatsFunc func(ctx context.Context) (Stats, error)

// MetricsStats calls f.
func (f StatsFunc) MetricsStats(ctx context.Context) (Stats, error) { return f(ctx) }

// Totals is a cheap snapshot of the counters the dashboard charts; it reads atomics, not the
// registry, so it can be taken every second.
type Totals struct {
	Connections   map[string]int64 // open connections by transport
	Accepted      int64            // connections accepted since start
	Appended      map[string]int64 // items appended by kind
	Delivered     int64            // items written to sockets, all transports
	Publishes     map[string]int64 // publish requests by outcome
	Rejected      int64            // rejected requests, all reasons
	PurgeRuns     int64            // purge passes that ran
	PurgedItems   int64            // items purged since start
	PurgedGroups  int64            // groups purged since start
	PurgedNodes   int64            // nodes purged since start
	LastPurgeAt   time.Time        // end of the last purge pass, zero when none ran
	LastPurgeTook time.Duration    // duration of the last purge pass
}

// Metrics is the registry plus every collector meshbox reports to. All methods are safe for
// concurrent use and cheap enough for hot paths.
type Metrics struct {
	reg *prometheus.Registry

	connOpen     *prometheus.GaugeVec
	connAccepted *prometheus.CounterVec
	appended     *prometheus.CounterVec
	publishes    *prometheus.CounterVec
	delivered    *prometheus.CounterVec
	writes       *prometheus.CounterVec
	slowWrites   *prometheus.CounterVec
	latency      *prometheus.HistogramVec
	rtt          *prometheus.HistogramVec
	rejected     *prometheus.CounterVec
	commitOps    prometheus.Histogram
	commitItems  prometheus.Histogram
	commitDur    prometheus.Histogram
	purgeItems   prometheus.Counter
	purgeGroups  prometheus.Counter
	purgeNodes   prometheus.Counter
	purgeDur     prometheus.Histogram
	purgeLast    prometheus.Gauge
	httpRequests *prometheus.CounterVec
	httpDuration *prometheus.HistogramVec

	// hot-path children, resolved once so ObserveDelivered does no label hashing.
	deliveredBy map[string]deliveryChildren
	// connBy is the same for connections (every long-poll request opens and closes one, and
	// measures a round trip), with the open count: no label hashing and no lock shared by
	// all connections. Read-only after New.
	connBy map[string]*connChildren
	// httpBy caches the HTTP request series by route, method and status (http.go); httpMu
	// serialises its copies.
	httpBy atomic.Pointer[map[httpKey]httpChildren]
	httpMu sync.Mutex

	mu         sync.Mutex // guards the maps below (per-label totals)
	appendedBy map[string]int64
	publishBy  map[string]int64

	accepted      atomic.Int64
	deliveredN    atomic.Int64
	rejectedN     atomic.Int64
	purgeRuns     atomic.Int64
	purgedItems   atomic.Int64
	purgedGroups  atomic.Int64
	purgedNodes   atomic.Int64
	lastPurgeAt   atomic.Int64 // unix nanoseconds
	lastPurgeTook atomic.Int64 // nanoseconds
}

type connChildren struct {
	open     prometheus.Gauge
	accepted prometheus.Counter
	rtt      prometheus.Observer
	n        atomic.Int64 // open connections, for Totals
}

type deliveryChildren struct {
	items   prometheus.Counter
	writes  prometheus.Counter
	slow    prometheus.Counter
	latency prometheus.Observer
}

// Build names the binary for meshbox_build_info.
type Build struct {
	Version string // the release, such as v1.4.0, or "dev"
	Commit  string // the source commit; "" is reported as "unknown"
}

// New is NewBuild for a version whose commit is unknown.
func New(version string, src StatsSource) *Metrics {
	return NewBuild(Build{Version: version}, src)
}

// NewBuild builds the registry with the Go and process collectors, a build-info metric
// carrying the version, commit and Go version, and gauges sampled from src at scrape time (src
// may be nil).
func NewBuild(build Build, src StatsSource) *Metrics {
	m := &Metrics{
		reg:         prometheus.NewRegistry(),
		deliveredBy: make(map[string]deliveryChildren),
		connBy:      make(map[string]*connChildren),
		appendedBy:  make(map[string]int64),
		publishBy:   make(map[string]int64),
	}
	m.connOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "connections_open",
		Help: "Streaming connections currently open, by transport.",
	}, []string{"transport"})
	m.connAccepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "connections_accepted_total",
		Help: "Streaming connections accepted since start, by transport.",
	}, []string{"transport"})
	m.appended = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "items_appended_total",
		Help: "Stream items committed, by kind.",
	}, []string{"kind"})
	m.publishes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "publish_requests_total",
		Help: "Publish requests answered, by outcome (ok, rejected, error).",
	}, []string{"outcome"})
	m.delivered = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "items_delivered_total",
		Help: "Stream items written to client connections, by transport.",
	}, []string{"transport"})
	m.writes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "delivery_writes_total",
		Help: "Writes to client connections carrying stream items, by transport; items per write is items_delivered_total over this.",
	}, []string{"transport"})
	m.slowWrites = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "slow_writes_total",
		Help: "Deliveries the client's socket did not take at once (a client reading slowly or not at all), by transport; each went on on a goroutine of the connection's own.",
	}, []string{"transport"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "delivery_latency_seconds",
		Help:    "Time from commit of the oldest item in a write to the write to the client, by transport.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"transport"})
	m.rtt = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "link_rtt_seconds",
		Help:    "Round trips of client links, by transport: WebSocket ping to pong (ws, graphql_ws), SSE ping event to the node's echo (sse), long-poll answer to the node's next poll (longpoll).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .2, .4, .8, 1.6, 3.2, 6.4},
	}, []string{"transport"})
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "rejected_requests_total",
		Help: "Requests refused before doing work, by reason.",
	}, []string{"reason"})
	m.commitOps = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "commit_batch_ops",
		Help:    "Write operations sharing one group-commit transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 12),
	})
	m.commitItems = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "commit_batch_items",
		Help:    "Stream items appended by one group-commit transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14),
	})
	m.commitDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "commit_duration_seconds",
		Help:    "Duration of one group-commit transaction, from begin to commit.",
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, 1},
	})
	m.purgeItems = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "purged_items_total",
		Help: "Stream items removed by retention.",
	})
	m.purgeGroups = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "purged_groups_total",
		Help: "Ended groups removed by retention.",
	})
	m.purgeNodes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: namespace, Name: "purged_nodes_total",
		Help: "Lapsed nodes removed by retention.",
	})
	m.purgeDur = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: namespace, Name: "purge_duration_seconds",
		Help:    "Duration of one purge pass.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
	})
	m.purgeLast = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace, Name: "purge_last_run_timestamp_seconds",
		Help: "Unix time the last purge pass ended.",
	})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "http_requests_total",
		Help: "HTTP requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "code"})
	m.httpDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: namespace, Name: "http_request_duration_seconds",
		Help:    "HTTP request duration by route pattern and method; streaming routes last as long as the connection.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"route", "method"})

	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: namespace, Name: "build_info",
		Help: "Always 1; labels carry the meshbox version, the commit and the Go version it was built with.",
	}, []string{"version", "commit", "goversion"})
	commit := build.Commit
	if commit == "" {
		commit = "unknown"
	}
	buildInfo.WithLabelValues(build.Version, commit, runtime.Version()).Set(1)

	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		m.connOpen, m.connAccepted, m.appended, m.publishes, m.delivered, m.writes, m.slowWrites, m.latency, m.rtt,
		m.rejected, m.commitOps, m.commitItems, m.commitDur,
		m.purgeItems, m.purgeGroups, m.purgeNodes, m.purgeDur, m.purgeLast,
		m.httpRequests, m.httpDuration,
	)
	if src != nil {
		_ = m.RegisterStats(src) // cannot collide on a fresh registry
	}

	for _, t := range Transports {
		m.connBy[t] = &connChildren{
			open:     m.connOpen.WithLabelValues(t),
			accepted: m.connAccepted.WithLabelValues(t),
			rtt:      m.rtt.WithLabelValues(t),
		}
		m.deliveredBy[t] = deliveryChildren{
			items:   m.delivered.WithLabelValues(t),
			writes:  m.writes.WithLabelValues(t),
			slow:    m.slowWrites.WithLabelValues(t),
			latency: m.latency.WithLabelValues(t),
		}
	}
	for _, k := range itemKinds {
		m.appended.WithLabelValues(k)
	}
	for _, o := range publishOutcomes {
		m.publishes.WithLabelValues(o)
	}
	for _, r := range rejectReasons {
		m.rejected.WithLabelValues(r)
	}
	return m
}

// RegisterStats adds gauges sampled from src at scrape time. It exists besides New's argument
// because the store reports to Metrics and is also the source: build Metrics first, open the
// store with it, then register the store as the source.
func (m *Metrics) RegisterStats(src StatsSource) error {
	if err := m.reg.Register(newStatsCollector(src)); err != nil {
		return fmt.Errorf("register stats source: %w", err)
	}
	return nil
}

// Registry returns the private registry, for tests and for callers adding their own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:          m.reg, // counts scrape errors in promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// RegisterDB adds connection-pool statistics for one *sql.DB; name tells pools apart
// (for example "writer" and "reader").
func (m *Metrics) RegisterDB(db *sql.DB, name string) error {
	if err := m.reg.Register(collectors.NewDBStatsCollector(db, name)); err != nil {
		return fmt.Errorf("register db stats %q: %w", name, err)
	}
	return nil
}

// ConnOpened records a streaming connection being accepted. Only the client transports
// (Transports) are counted: the connection layer also registers the dashboard's own stream,
// which is not a client of the relay.
func (m *Metrics) ConnOpened(transport string) {
	c := m.connBy[transport]
	if c == nil {
		return
	}
	c.open.Inc()
	c.accepted.Inc()
	m.accepted.Add(1)
	c.n.Add(1)
}

// ObserveRTT records one round trip of a client link (see live.Conn.ObserveRTT); only client
// transports count, and no node is named: the per-node numbers are the hub's.
func (m *Metrics) ObserveRTT(transport string, d time.Duration) {
	if c := m.connBy[transport]; c != nil {
		c.rtt.Observe(d.Seconds())
	}
}

// ConnClosed records a streaming connection ending.
func (m *Metrics) ConnClosed(transport string) {
	c := m.connBy[transport]
	if c == nil {
		return
	}
	c.open.Dec()
	c.n.Add(-1)
}

// ObserveDelivered records one write of n items to a client; latency is measured from
// committedAt (the oldest item's commit time) to now.
func (m *Metrics) ObserveDelivered(transport string, n int, committedAt time.Time) {
	if n <= 0 {
		return
	}
	c, ok := m.deliveredBy[transport]
	if !ok {
		c = deliveryChildren{
			items:   m.delivered.WithLabelValues(transport),
			writes:  m.writes.WithLabelValues(transport),
			slow:    m.slowWrites.WithLabelValues(transport),
			latency: m.latency.WithLabelValues(transport),
		}
	}
	c.items.Add(float64(n))
	c.writes.Inc()
	if !committedAt.IsZero() {
		c.latency.Observe(time.Since(committedAt).Seconds())
	}
	m.deliveredN.Add(int64(n))
}

// ObserveSlowWrite records a delivery the client's socket did not take at once.
func (m *Metrics) ObserveSlowWrite(transport string) {
	c, ok := m.deliveredBy[transport]
	if !ok {
		c.slow = m.slowWrites.WithLabelValues(transport)
	}
	c.slow.Inc()
}

// ObservePublish records the outcome of one publish request: ok, rejected or error.
func (m *Metrics) ObservePublish(outcome string) {
	m.publishes.WithLabelValues(outcome).Inc()
	m.mu.Lock()
	m.publishBy[outcome]++
	m.mu.Unlock()
}

// ObserveRejected records a request refused for reason: too_large, rate_limited,
// unauthorized, bad_request or limit.
func (m *Metrics) ObserveRejected(reason string) {
	m.rejected.WithLabelValues(reason).Inc()
	m.rejectedN.Add(1)
}

// ObserveCommit records one group-commit transaction: how many ops and items it carried and
// how long it took.
func (m *Metrics) ObserveCommit(ops, items int, d time.Duration) {
	m.commitOps.Observe(float64(ops))
	m.commitItems.Observe(float64(items))
	m.commitDur.Observe(d.Seconds())
}

// ObserveAppended records n committed items of one kind.
func (m *Metrics) ObserveAppended(kind string, n int) {
	if n <= 0 {
		return
	}
	m.appended.WithLabelValues(kind).Add(float64(n))
	m.mu.Lock()
	m.appendedBy[kind] += int64(n)
	m.mu.Unlock()
}

// ObservePurge records one retention pass and what it removed.
func (m *Metrics) ObservePurge(items, groups, nodes int, d time.Duration) {
	m.purgeItems.Add(float64(items))
	m.purgeGroups.Add(float64(groups))
	m.purgeNodes.Add(float64(nodes))
	m.purgeDur.Observe(d.Seconds())
	now := time.Now()
	m.purgeLast.Set(float64(now.UnixNano()) / 1e9)
	m.purgeRuns.Add(1)
	m.purgedItems.Add(int64(items))
	m.purgedGroups.Add(int64(groups))
	m.purgedNodes.Add(int64(nodes))
	m.lastPurgeAt.Store(now.UnixNano())
	m.lastPurgeTook.Store(int64(d))
}

// Totals returns the counters the dashboard charts, read without touching the registry.
func (m *Metrics) Totals() Totals {
	t := Totals{
		Connections:   make(map[string]int64, len(Transports)),
		Appended:      make(map[string]int64, len(itemKinds)),
		Publishes:     make(map[string]int64, len(publishOutcomes)),
		Accepted:      m.accepted.Load(),
		Delivered:     m.deliveredN.Load(),
		Rejected:      m.rejectedN.Load(),
		PurgeRuns:     m.purgeRuns.Load(),
		PurgedItems:   m.purgedItems.Load(),
		PurgedGroups:  m.purgedGroups.Load(),
		PurgedNodes:   m.purgedNodes.Load(),
		LastPurgeTook: time.Duration(m.lastPurgeTook.Load()),
	}
	if ns := m.lastPurgeAt.Load(); ns != 0 {
		t.LastPurgeAt = time.Unix(0, ns)
	}
	for tr, c := range m.connBy {
		t.Connections[tr] = c.n.Load()
	}
	m.mu.Lock()
	for k, v := range m.appendedBy {
		t.Appended[k] = v
	}
	for k, v := range m.publishBy {
		t.Publishes[k] = v
	}
	m.mu.Unlock()
	return t
}
