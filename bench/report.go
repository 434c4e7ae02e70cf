package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
)

// Result is what one scenario measured; -json prints it as is.
type Result struct {
	Scenario   string  `json:"scenario"`
	Server     string  `json:"server"`
	API        string  `json:"api,omitempty"`
	Transport  string  `json:"transport,omitempty"`
	Groups     int     `json:"groups,omitempty"`
	Readers    int     `json:"readers,omitempty"`
	Publishers int     `json:"publishers,omitempty"`
	Seconds    float64 `json:"seconds"` // how long load was applied

	Published     int64            `json:"published"` // items acknowledged
	PublishRate   float64          `json:"publishedPerSecond"`
	PublishErrors map[string]int64 `json:"publishErrors,omitempty"`
	AckLatency    *LatencySummary  `json:"ackLatency,omitempty"`

	Expected     int64            `json:"expectedDeliveries,omitempty"`
	Delivered    int64            `json:"delivered,omitempty"`
	DeliveryRate float64          `json:"deliveriesPerSecond,omitempty"`
	Missing      int64            `json:"missing"`
	Duplicate    int64            `json:"duplicate"`
	OutOfOrder   int64            `json:"outOfOrder"`
	Unexpected   int64            `json:"unexpected"` // deliveries beyond the acked items (a publish failed late)
	Resets       int64            `json:"resets"`
	Frames       int64            `json:"frames,omitempty"`
	Reconnects   int64            `json:"reconnects"`
	ReaderErrors map[string]int64 `json:"readerErrors,omitempty"`
	Latency      *LatencySummary  `json:"latency,omitempty"`

	ReadySeconds   float64 `json:"readySeconds,omitempty"` // readers connected and caught up with setup
	Connections    int     `json:"connections,omitempty"`  // idle scenario
	ConnectSeconds float64 `json:"connectSeconds,omitempty"`

	// MachineBusy is the share of all CPUs busy just before the run
	// (-1 unknown); on a box shared with other work the figures are
	// only as good as this.
	MachineBusy float64 `json:"machineBusyBefore"`
	CPUs        int     `json:"cpus"`

	ServerProcess *ProcUsage `json:"serverProcess,omitempty"`
	// Processes are the processes given with --pids (instances, NATS nodes), in that order.
	Processes []ProcUsage `json:"processes,omitempty"`
	// AllCPUPerDelivery and AllCPUPerPublish are the CPU of --pid and every --pids process
	// together, per delivery (when readers ran) or per acknowledged publish: what the whole
	// installation spends on one unit of work.
	AllCPUPerDelivery float64 `json:"allCpuMicrosPerDelivery,omitempty"`
	AllCPUPerPublish  float64 `json:"allCpuMicrosPerPublish,omitempty"`
	// LivePerConn is the growth of the server's live memory (heap after a forced collection
	// plus stacks, read from /debug/pprof) per connection; 0 when the server does not serve it.
	LivePerConn  float64  `json:"liveBytesPerConnection,omitempty"`
	ToolCPUCores float64  `json:"toolCpuCores"` // CPU the load generator itself used, in cores
	Notes        []string `json:"notes,omitempty"`
}

// ProcUsage is the server process's resource use over a scenario.
type ProcUsage struct {
	Name       string  `json:"name,omitempty"` // --pids: the name given, or the command's
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpuSeconds"`
	CPUCores   float64 `json:"cpuCores"` // CPU seconds per wall second; 1 = one core busy
	RSSBefore  int64   `json:"rssBytesBefore"`
	RSSAfter   int64   `json:"rssBytesAfter"`
	RSSPerConn float64 `json:"rssBytesPerConnection,omitempty"`
	// CPU per unit of work: per delivery when readers ran, per
	// acknowledged publish otherwise.
	CPUPerDelivery float64 `json:"cpuMicrosPerDelivery,omitempty"`
	CPUPerPublish  float64 `json:"cpuMicrosPerPublish,omitempty"`
	WallSeconds    float64 `json:"wallSeconds"`
}

// perItem fills the server's CPU per delivery or per publish.
func (r *Result) perItem() {
	all, n := 0.0, 0
	each := func(p *ProcUsage) {
		all += p.CPUSeconds
		n++
		switch {
		case r.Delivered > 0:
			p.CPUPerDelivery = round3(p.CPUSeconds * 1e6 / float64(r.Delivered))
		case r.Published > 0:
			p.CPUPerPublish = round3(p.CPUSeconds * 1e6 / float64(r.Published))
		}
	}
	if r.ServerProcess != nil {
		each(r.ServerProcess)
	}
	for i := range r.Processes {
		each(&r.Processes[i])
	}
	if n < 2 {
		return
	}
	switch {
	case r.Delivered > 0:
		r.AllCPUPerDelivery = round3(all * 1e6 / float64(r.Delivered))
	case r.Published > 0:
		r.AllCPUPerPublish = round3(all * 1e6 / float64(r.Published))
	}
}

// errorTally counts errors by a short label; safe for concurrent use.
type errorTally struct {
	mu sync.Mutex
	n  map[string]int64
}

// add counts err under its code label; nil is ignored.
func (t *errorTally) add(err error) {
	if err != nil {
		t.addCode(errorCode(err))
	}
}

// addCode counts one error under label.
func (t *errorTally) addCode(label string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.n == nil {
		t.n = map[string]int64{}
	}
	t.n[label]++
}

// snapshot returns a copy of the counts, or nil when there are none.
func (t *errorTally) snapshot() map[string]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.n) == 0 {
		return nil
	}
	return maps.Clone(t.n)
}

// writeResult prints r as JSON or as a two-column table.
func writeResult(w io.Writer, r *Result, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("scenario", "%s", describe(r))
	row("server", "%s", r.Server)
	row("machine", "%d CPUs, %.0f%% busy just before the run", r.CPUs, 100*r.MachineBusy)
	if r.Connections > 0 {
		row("connections", "%d open (took %.1f s)", r.Connections, r.ConnectSeconds)
	}
	if r.ReadySeconds > 0 {
		row("readers ready", "%.1f s to connect and catch up", r.ReadySeconds)
	}
	if r.Published > 0 || r.PublishErrors != nil {
		row("published", "%d items in %.1f s = %.0f/s", r.Published, r.Seconds, r.PublishRate)
	}
	if r.PublishErrors != nil {
		row("publish errors", "%s", tally(r.PublishErrors))
	}
	if l := r.AckLatency; l != nil {
		row("ack latency", "p50 %s  p90 %s  p99 %s  max %s  (mean %s ms)", fms(l.P50), fms(l.P90), fms(l.P99), fms(l.Max), fms(l.Mean))
	}
	if r.Expected > 0 {
		pct := 100 * float64(r.Delivered) / float64(r.Expected)
		row("delivered", "%d of %d (%.3f%%) = %.0f deliveries/s", r.Delivered, r.Expected, pct, r.DeliveryRate)
		verdict := "none"
		if r.Missing+r.Duplicate+r.OutOfOrder+r.Unexpected+r.Resets > 0 {
			verdict = "LOSS OR DISORDER"
		}
		row("loss", "%s: missing %d, duplicate %d, out of order %d, unexpected %d, resets %d",
			verdict, r.Missing, r.Duplicate, r.OutOfOrder, r.Unexpected, r.Resets)
		row("frames", "%d (%.1f items per frame)", r.Frames, float64(r.Delivered)/max(1, float64(r.Frames)))
	}
	if l := r.Latency; l != nil {
		row("latency ms", "p50 %s  p90 %s  p99 %s  max %s  (mean %s)", fms(l.P50), fms(l.P90), fms(l.P99), fms(l.Max), fms(l.Mean))
	}
	if r.Reconnects > 0 || r.ReaderErrors != nil {
		row("reader errors", "%d reconnects; %s", r.Reconnects, tally(r.ReaderErrors))
	}
	if p := r.ServerProcess; p != nil {
		row("server cpu", "%.2f s in %.1f s = %.1f%% of one core", p.CPUSeconds, p.WallSeconds, 100*p.CPUCores)
		row("server rss", "%s before, %s after", mib(p.RSSBefore), mib(p.RSSAfter))
		if p.RSSPerConn != 0 {
			row("rss per connection", "%.1f KiB", p.RSSPerConn/1024)
		}
		if p.CPUPerDelivery > 0 {
			row("cpu per delivery", "%.2f µs", p.CPUPerDelivery)
		} else if p.CPUPerPublish > 0 {
			row("cpu per publish", "%.1f µs", p.CPUPerPublish)
		}
	}
	for _, p := range r.Processes {
		row(p.Name, "cpu %.2f s = %.1f%% of one core; rss %s → %s", p.CPUSeconds, 100*p.CPUCores, mib(p.RSSBefore), mib(p.RSSAfter))
	}
	if r.AllCPUPerDelivery > 0 {
		row("all processes", "%.2f µs cpu per delivery", r.AllCPUPerDelivery)
	} else if r.AllCPUPerPublish > 0 {
		row("all processes", "%.1f µs cpu per publish", r.AllCPUPerPublish)
	}
	if r.LivePerConn != 0 {
		row("live per connection", "%.1f KiB (heap after GC + stacks)", r.LivePerConn/1024)
	}
	if r.ToolCPUCores > 0 {
		row("bench cpu", "%.1f%% of one core (the load generator itself)", 100*r.ToolCPUCores)
	}
	for _, n := range r.Notes {
		row("note", "%s", n)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// describe is the scenario line of the table.
func describe(r *Result) string {
	var b strings.Builder
	b.WriteString(r.Scenario)
	if r.Transport != "" {
		fmt.Fprintf(&b, " over %s", r.Transport)
	}
	if r.Groups > 1 {
		fmt.Fprintf(&b, ", %d groups", r.Groups)
	}
	if r.Readers > 0 {
		fmt.Fprintf(&b, ", %d readers", r.Readers)
	}
	if r.Publishers > 0 {
		fmt.Fprintf(&b, ", %d publishers", r.Publishers)
	}
	return b.String()
}

// tally formats error counts in a stable order.
func tally(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s ×%d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// fms formats milliseconds compactly.
func fms(v float64) string {
	switch {
	case v < 10:
		return fmt.Sprintf("%.2f", v)
	case v < 100:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.0f", v)
	}
}

// mib formats bytes as MiB.
func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
