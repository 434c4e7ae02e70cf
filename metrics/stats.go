package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// statsTimeout bounds one StatsSource call so a busy database cannot hang a scrape.
const statsTimeout = 5 * time.Second

// statsCollector samples a StatsSource once per scrape and turns it into gauges.
type statsCollector struct {
	src    StatsSource
	errors prometheus.Counter

	groups, nodes, retained, oldest, dbBytes, walBytes, queue, followed *prometheus.Desc
	storage, storageSince, budget                                       *prometheus.Desc
}

func newStatsCollector(src StatsSource) *statsCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, nil, nil)
	}
	return &statsCollector{
		src: src,
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Name: "stats_errors_total",
			Help: "Scrapes where reading groups, items and file sizes failed; those gauges are missing from such a scrape.",
		}),
		groups:   desc("groups_live", "Groups that have not ended."),
		nodes:    desc("nodes_live", "Nodes in groups that have not ended."),
		retained: desc("retained_items", "Stream items not yet purged."),
		oldest:   desc("oldest_retained_item_age_seconds", "Age of the oldest retained stream item; 0 when none is retained."),
		dbBytes:  desc("database_size_bytes", "Size of the SQLite database file."),
		walBytes: desc("database_wal_size_bytes", "Size of the SQLite write-ahead log file."),
		queue:    desc("writer_queue_depth", "Write operations waiting for the single writer."),
		followed: desc("followed_groups", "Groups whose items this instance follows on a shared log (NATS): those its clients read or wrote lately. Not reported by a box with a log of its own, which holds every group."),
		storage: prometheus.NewDesc(prometheus.BuildFQName(namespace, "storage", "state"),
			"1 for the storage state the box is in (ok: items kept for their TTL; pressure: near the budget, items purged before their TTL; full: writes refused; recovering: writes accepted again, still making room), 0 for the others.",
			[]string{"state"}, nil),
		storageSince: desc("storage_state_since_seconds", "When the current storage state began, in seconds since the Unix epoch."),
		budget:       desc("storage_budget_bytes", "The database size budget in force (--max-db-size, at most half the space meshbox can use on its disk); 0: none."),
	}
}

// Describe sends every descriptor this collector can emit.
func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	c.errors.Describe(ch)
	for _, d := range []*prometheus.Desc{c.groups, c.nodes, c.retained, c.oldest, c.dbBytes, c.walBytes, c.queue, c.followed, c.storage, c.storageSince, c.budget} {
		ch <- d
	}
}

// Collect reads the source once and emits its values.
func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	s, err := c.src.MetricsStats(ctx)
	if err != nil {
		c.errors.Inc()
		c.errors.Collect(ch)
		return
	}
	c.errors.Collect(ch)
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(c.groups, float64(s.GroupsLive))
	gauge(c.nodes, float64(s.NodesLive))
	gauge(c.retained, float64(s.RetainedItems))
	gauge(c.oldest, s.OldestRetainedAge.Seconds())
	gauge(c.dbBytes, float64(s.DatabaseBytes))
	gauge(c.walBytes, float64(s.WALBytes))
	gauge(c.queue, float64(s.WriterQueueDepth))
	if s.FollowedGroups >= 0 {
		gauge(c.followed, float64(s.FollowedGroups))
	}
	if s.StorageState == "" {
		return
	}
	for _, st := range StorageStates {
		v := 0.0
		if st == s.StorageState {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(c.storage, prometheus.GaugeValue, v, st)
	}
	if !s.StorageSince.IsZero() {
		gauge(c.storageSince, float64(s.StorageSince.UnixMilli())/1000)
	}
	gauge(c.budget, float64(s.StorageBudget))
}
