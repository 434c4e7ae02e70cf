package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// Comparison is what -compare measured: every run in the order they ran
// (A B A B …) and, per figure, each side's median and the ratio B/A.
type Comparison struct {
	A       string    `json:"a"`
	B       string    `json:"b"`
	Runs    []*Result `json:"runs"`
	Figures []Figure  `json:"figures"`
}

// Figure is one measured quantity on both sides.
type Figure struct {
	Name  string    `json:"name"`
	A     []float64 `json:"a"` // one value per round
	B     []float64 `json:"b"`
	MedA  float64   `json:"medianA"`
	MedB  float64   `json:"medianB"`
	Ratio float64   `json:"ratioBOverA,omitempty"` // medianB / medianA
}

// figures lists what is compared and how to read it from a result; a
// figure missing on both sides is left out.
var figures = []struct {
	name string
	get  func(*Result) (float64, bool)
}{
	{"published/s", func(r *Result) (float64, bool) { return r.PublishRate, r.Published > 0 }},
	{"ack p50 ms", func(r *Result) (float64, bool) { return latency(r.AckLatency, false) }},
	{"ack p99 ms", func(r *Result) (float64, bool) { return latency(r.AckLatency, true) }},
	{"deliveries/s", func(r *Result) (float64, bool) { return r.DeliveryRate, r.Expected > 0 }},
	{"latency p50 ms", func(r *Result) (float64, bool) { return latency(r.Latency, false) }},
	{"latency p99 ms", func(r *Result) (float64, bool) { return latency(r.Latency, true) }},
	{"lost+dup+disorder", func(r *Result) (float64, bool) {
		return float64(r.Missing + r.Duplicate + r.OutOfOrder + r.Unexpected + r.Resets), r.Expected > 0
	}},
	{"server cpu cores", func(r *Result) (float64, bool) { return proc(r, func(p *ProcUsage) float64 { return p.CPUCores }) }},
	{"cpu µs/delivery", func(r *Result) (float64, bool) {
		return proc(r, func(p *ProcUsage) float64 { return p.CPUPerDelivery })
	}},
	{"cpu µs/publish", func(r *Result) (float64, bool) { return proc(r, func(p *ProcUsage) float64 { return p.CPUPerPublish }) }},
	{"rss KiB/connection", func(r *Result) (float64, bool) {
		return proc(r, func(p *ProcUsage) float64 { return p.RSSPerConn / 1024 })
	}},
	{"live KiB/connection", func(r *Result) (float64, bool) { return r.LivePerConn / 1024, r.LivePerConn != 0 }},
	{"bench cpu cores", func(r *Result) (float64, bool) { return r.ToolCPUCores, true }},
}

// latency reads p50 or p99 of a summary.
func latency(l *LatencySummary, p99 bool) (float64, bool) {
	if l == nil {
		return 0, false
	}
	if p99 {
		return l.P99, true
	}
	return l.P50, true
}

// proc reads a non-zero server process figure.
func proc(r *Result, f func(*ProcUsage) float64) (float64, bool) {
	if r.ServerProcess == nil {
		return 0, false
	}
	v := f(r.ServerProcess)
	return v, v != 0
}

// compare runs cfg's scenario on cfg.url and cfg.compare alternately and
// writes the comparison. A failed run ends the comparison: a figure from a
// run that broke down says nothing about the relay.
func compare(ctx context.Context, cfg settings, stdout io.Writer) error {
	b := cfg
	b.url, b.pid, b.api, b.transport, b.cpuprofile = cfg.compare, cfg.comparePID, cfg.compareAPI, cfg.compareTr, ""
	sides := [2]settings{cfg, b}
	cmp := &Comparison{A: cfg.url + " (" + cfg.api + " " + cfg.transport + ")", B: b.url + " (" + b.api + " " + b.transport + ")"}
	var runs [2][]*Result
	for round := range cfg.rounds {
		order := []int{0, 1}
		if cfg.order == "abba" && round%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			s := sides[i]
			if round > 0 {
				s.cpuprofile = "" // one profile, from the first run
			}
			res, err := runOnce(ctx, s)
			if res != nil {
				cmp.Runs = append(cmp.Runs, res)
				runs[i] = append(runs[i], res)
				if !cfg.json {
					fmt.Fprintf(stdout, "round %d %s: %s\n", round+1, "AB"[i:i+1], oneLine(res))
				}
			}
			if err != nil {
				return err
			}
		}
	}
	for _, f := range figures {
		fig := Figure{Name: f.name}
		for i, rs := range runs {
			for _, r := range rs {
				if v, ok := f.get(r); ok {
					if i == 0 {
						fig.A = append(fig.A, v)
					} else {
						fig.B = append(fig.B, v)
					}
				}
			}
		}
		if len(fig.A) == 0 && len(fig.B) == 0 {
			continue
		}
		fig.MedA, fig.MedB = median(fig.A), median(fig.B)
		if fig.MedA != 0 {
			fig.Ratio = round3(fig.MedB / fig.MedA)
		}
		cmp.Figures = append(cmp.Figures, fig)
	}
	return writeComparison(stdout, cmp, cfg.json)
}

// oneLine condenses a run for the progress lines of a comparison.
func oneLine(r *Result) string {
	s := fmt.Sprintf("%s, %.0f published/s", describe(r), r.PublishRate)
	if l := r.AckLatency; l != nil {
		s += fmt.Sprintf(", ack p99 %s ms", fms(l.P99))
	}
	if l := r.Latency; l != nil {
		s += fmt.Sprintf(", latency p50 %s p99 %s ms, lost+dup+disorder %d", fms(l.P50), fms(l.P99),
			r.Missing+r.Duplicate+r.OutOfOrder+r.Unexpected+r.Resets)
	}
	if p := r.ServerProcess; p != nil {
		s += fmt.Sprintf(", server %.0f%% of a core", 100*p.CPUCores)
		if p.RSSPerConn != 0 {
			s += fmt.Sprintf(", %.1f KiB/conn", p.RSSPerConn/1024)
		}
	}
	return s + fmt.Sprintf(", machine %.0f%% busy before", 100*r.MachineBusy)
}

// median of vs (0 when empty).
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	if n := len(s); n%2 == 0 {
		return round3((s[n/2-1] + s[n/2]) / 2)
	}
	return s[len(s)/2]
}

// writeComparison prints the comparison as JSON or as a table.
func writeComparison(w io.Writer, c *Comparison, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(c); err != nil {
			return fmt.Errorf("write json: %w", err)
		}
		return nil
	}
	fmt.Fprintf(w, "A = %s\nB = %s\n", c.A, c.B)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "figure\tmedian A\tmedian B\tB/A\truns A\truns B\t")
	for _, f := range c.Figures {
		ratio := "–"
		if f.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f", f.Ratio)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Name, num(f.MedA), num(f.MedB), ratio, nums(f.A), nums(f.B))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// num formats a figure compactly.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// nums formats one figure of every round.
func nums(vs []float64) string {
	out := ""
	for i, v := range vs {
		if i > 0 {
			out += " "
		}
		out += num(v)
	}
	return out
}
