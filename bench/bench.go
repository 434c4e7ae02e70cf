// Package bench is meshbox's load tool (`meshbox bench`): a pure HTTP,
// WebSocket and SSE client that drives a running meshbox through the native
// API and reports publish and delivery rates, publish→receive latency and
// loss, so anyone can check what their own box carries (DESIGN.md §7).
package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"meshbox/config"
	"runtime"
	"strings"
	"time"
)

// Scenario names.
const (
	scenarioFanout    = "fanout"
	scenarioPublish   = "publish"
	scenarioSaturate  = "saturate"
	scenarioClassroom = "classroom"
	scenarioIdle      = "idle"
	scenarioDistrict  = "district"
)

// settings holds the parsed flags.
type settings struct {
	url        string
	readURLs   []string // readers spread over these (default: url)
	writeURLs  []string // district: classes write to these in turn (default: url)
	scenario   string
	transport  string
	readers    int
	rate       float64
	duration   time.Duration
	publishers int
	batch      int
	perNode    int
	payload    int
	groups     int
	nodes      int
	dataRate   float64
	eventRate  float64
	eventBatch int
	window     int
	pid        int
	pids       []procLabel // more processes to measure (instances, NATS nodes)
	cpuprofile string

	classes       int           // district: classes of nodes pupils
	burstInterval time.Duration // district: a pupil's bursts of broadcasts, this far apart
	burstMin      int           // district: broadcasts in a burst, at least
	burstMax      int           // district: and at most
	dataInterval  time.Duration // district: a pupil's variable updates, this far apart
	json          bool
	warmup        time.Duration
	drain         time.Duration
	dial          int
	domain        string
	keep          bool

	api        string // apiMeshbox or apiNtfy
	compare    string // second server: run both, alternated, and report ratios
	comparePID int
	compareAPI string
	compareTr  string // transport on the -compare side (default: -transport)
	rounds     int
	order      string // "abab" or "abba": which side runs first in each round
}

// Run parses args (the words after `meshbox bench`), runs one scenario
// against a running meshbox and writes the report to stdout.
func Run(ctx context.Context, args []string, stdout io.Writer) error {
	cfg, err := parseFlags(args, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	if cfg.compare != "" {
		return compare(ctx, cfg, stdout)
	}
	res, err := runOnce(ctx, cfg)
	if res != nil {
		// A partial result (say, some connections refused) still tells
		// the user what the server carried before it failed.
		if werr := writeResult(stdout, res, cfg.json); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

// runOnce runs the scenario once against cfg.url and returns what it
// measured, possibly partial alongside an error.
func runOnce(ctx context.Context, cfg settings) (*Result, error) {
	conns := max(cfg.readers, cfg.groups*cfg.nodes) + cfg.publishers + 64
	c, err := newClient(cfg.url, cfg.api, conns)
	if err != nil {
		return nil, err
	}
	defer c.close()
	b := &bench{cfg: cfg, c: c, run: runID()}
	busy := machineBusy(ctx, 300*time.Millisecond)
	if b.cfg.domain == "" {
		b.cfg.domain = "bench-" + b.run
	}
	res, err := b.scenario(ctx)
	if cerr := b.cleanup(ctx); cerr != nil && res != nil {
		res.Notes = append(res.Notes, cerr.Error())
	}
	if res != nil {
		res.Scenario, res.Server, res.API = cfg.scenario, cfg.url, cfg.api
		res.MachineBusy, res.CPUs = round3(busy), runtime.NumCPU()
		res.perItem()
	}
	if err != nil {
		return res, fmt.Errorf("bench %s %s: %w", cfg.scenario, cfg.url, err)
	}
	return res, nil
}

// parseFlags reads the command line; scenario-dependent defaults are filled
// in for counts left at zero.
func parseFlags(args []string, out io.Writer) (settings, error) {
	var cfg settings
	fs := flag.NewFlagSet("meshbox bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.url, "url", "http://127.0.0.1:8080", "meshbox server base URL")
	fs.Func("read-urls", "comma-separated base URLs that readers connect to, spread in turn (several instances sharing groups; default --url); groups are created and events published on --url", func(v string) error {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
				cfg.readURLs = append(cfg.readURLs, u)
			}
		}
		return nil
	})
	fs.Func("write-urls", "district: comma-separated base URLs that classes write to (and read from, unless --read-urls), class c on the c-th in turn; publish: publisher i on the i-th in turn, each instance's on a group created through it (default --url)", func(v string) error {
		for _, u := range strings.Split(v, ",") {
			if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
				cfg.writeURLs = append(cfg.writeURLs, u)
			}
		}
		return nil
	})
	fs.Func("pids", "more processes on this machine to measure, comma-separated, each pid or name=pid (several instances, NATS nodes): CPU time and RSS of each", func(v string) error {
		p, err := parsePIDs(v)
		cfg.pids = append(cfg.pids, p...)
		return err
	})
	fs.IntVar(&cfg.classes, "classes", 4, "district: classes of --nodes pupils each")
	fs.DurationVar(&cfg.burstInterval, "burst-interval", 5*time.Second, "district: each pupil fires a burst of broadcasts this often")
	fs.IntVar(&cfg.burstMin, "burst-min", 3, "district: broadcasts in a burst, at least (one event per request)")
	fs.IntVar(&cfg.burstMax, "burst-max", 5, "district: broadcasts in a burst, at most")
	fs.DurationVar(&cfg.dataInterval, "data-interval", time.Second, "district: each pupil updates a variable (data) this often")
	fs.StringVar(&cfg.scenario, "scenario", scenarioFanout, "fanout | publish | saturate | classroom | idle | district")
	fs.StringVar(&cfg.transport, "transport", transportWS, "reader transport: ws | sse | poll")
	fs.IntVar(&cfg.readers, "readers", 0, "stream readers (default 1000; idle: 10000 connections)")
	fs.Float64Var(&cfg.rate, "rate", 50, "fanout: events published per second")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "how long to apply load")
	fs.IntVar(&cfg.publishers, "publishers", 0, "concurrent publishers (default publish: 32, saturate: 8)")
	fs.IntVar(&cfg.batch, "batch", 0, "publish, saturate: events per publish request (default publish: 1, saturate: 10)")
	fs.IntVar(&cfg.perNode, "streams-per-node", 50, "streams opened with one node token (keeps node counts under group limits)")
	fs.IntVar(&cfg.payload, "payload", 64, "event payload size in bytes")
	fs.IntVar(&cfg.groups, "groups", 0, "classroom: groups (default 10); fanout: groups sharing the readers, each publishing --rate (default 1)")
	fs.IntVar(&cfg.nodes, "nodes", 40, "classroom: nodes per group, each with one stream; district: pupils per class; idle: max nodes per group")
	fs.Float64Var(&cfg.dataRate, "data-rate", 15, "classroom: data updates per second per group")
	fs.Float64Var(&cfg.eventRate, "event-rate", 2, "classroom: event batches per second per group")
	fs.IntVar(&cfg.eventBatch, "event-batch", 5, "classroom: events per batch")
	fs.IntVar(&cfg.window, "window", 2000, "saturate: max items published ahead of the slowest reader")
	fs.IntVar(&cfg.pid, "pid", 0, "server process id on this machine: report its CPU time and RSS")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the server during the load to this file (server needs /debug/pprof)")
	fs.BoolVar(&cfg.json, "json", false, "print the result as JSON")
	fs.DurationVar(&cfg.warmup, "warmup", time.Second, "pause after readers connect, before publishing")
	fs.DurationVar(&cfg.drain, "drain", 10*time.Second, "max wait for readers to catch up after publishing stops")
	fs.IntVar(&cfg.dial, "dial-concurrency", 64, "connections being opened at once")
	fs.StringVar(&cfg.domain, "domain", "", "domain for the bench groups (default a fresh bench-RUNID)")
	fs.BoolVar(&cfg.keep, "keep", false, "leave the bench groups instead of dissolving them")
	fs.StringVar(&cfg.api, "api", apiMeshbox, "API of --url: meshbox (native; the bench/floor server speaks it too) | ntfy")
	fs.StringVar(&cfg.compare, "compare", "", "second server URL: run the scenario on --url and on it alternately (A B A B …) and report B/A ratios")
	fs.IntVar(&cfg.comparePID, "compare-pid", 0, "process id of the --compare server (CPU and RSS, like --pid)")
	fs.StringVar(&cfg.compareAPI, "compare-api", apiMeshbox, "API of the --compare server: meshbox | ntfy")
	fs.StringVar(&cfg.compareTr, "compare-transport", "", "reader transport on the --compare side (default --transport); with --compare equal to --url this puts two transports of one server side by side")
	fs.IntVar(&cfg.rounds, "rounds", 2, "with --compare: runs on each server, alternated")
	fs.StringVar(&cfg.order, "order", "abab", "with --compare: abab (A first in every round) or abba (the first side alternates, which cancels any advantage of running first)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: meshbox bench [flags]

Load-test a running meshbox over its native API and report rates,
publish→receive latency and loss (every reader must get every item once,
in order). Scenarios:
  fanout     one group, --readers over --transport, --rate events/s
  publish    --publishers posting single events as fast as acks come
             (spread over --write-urls if given)
  saturate   --readers while --publishers post batches as fast as acks allow
  classroom  --groups × --nodes, each group --data-rate updates/s and
             --event-rate batches/s, every node subscribed
  idle       --readers idle --transport (ws or sse) connections; server
             RSS per connection
  district   --classes × --nodes pupils at a Smalruby lesson's rates (a
             burst of --burst-min..--burst-max broadcasts every
             --burst-interval and a variable every --data-interval per
             pupil), every pupil subscribed; classes spread over
             --write-urls (reading from --read-urls if given); --pids adds
             each instance's and NATS node's CPU and RSS

With --compare URL the scenario runs on --url (A) and on URL (B) in turn,
--rounds times each (A B A B …), and the report gives each side's median
and the ratio B/A, so two relays are measured in one sitting on the same
machine. --api / --compare-api ntfy drive an ntfy server (publish = POST
/topic, readers = /topic/ws or /topic/sse); the no-storage floor is
  go run ./bench/floor --addr 127.0.0.1:8090

The server's per-node and per-IP limits protect classrooms and would
throttle the tool; start the server under test with them lifted, e.g.
  meshbox --publish-rate 0 --node-byte-rate 0 --node-rate 0 --group-rate 0 --ip-rate 0 --group-create-rate 0 --max-conns-per-ip 0 \
    --max-groups-per-client-domain 0 --max-nodes-per-client-group 0 --max-nodes-per-client 0 --pprof
and give its process id with --pid to see its CPU time and memory.

Flags:
`)
		config.PrintFlags(fs)
	}
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	switch cfg.scenario {
	case scenarioFanout, scenarioSaturate, scenarioClassroom:
		cfg.readers = defaultInt(cfg.readers, 1000)
	case scenarioDistrict:
		if cfg.classes < 1 || cfg.nodes < 1 || cfg.burstMin < 0 || cfg.burstMax < cfg.burstMin || cfg.burstInterval <= 0 || cfg.dataInterval <= 0 {
			return cfg, fmt.Errorf("bench: district needs --classes and --nodes ≥ 1, 0 ≤ --burst-min ≤ --burst-max and positive intervals")
		}
		if cfg.api != apiMeshbox || cfg.compare != "" {
			return cfg, fmt.Errorf("bench: district drives meshbox instances only, without --compare")
		}
		cfg.groups = cfg.classes
		if len(cfg.writeURLs) == 0 {
			cfg.writeURLs = []string{strings.TrimRight(cfg.url, "/")}
		}
	case scenarioIdle:
		cfg.readers = defaultInt(cfg.readers, 10000)
	case scenarioPublish:
		if len(cfg.writeURLs) > 1 && (cfg.api != apiMeshbox || cfg.compare != "") {
			return cfg, fmt.Errorf("bench: publish over several --write-urls drives meshbox instances only, without --compare")
		}
		if len(cfg.writeURLs) == 0 {
			cfg.writeURLs = []string{strings.TrimRight(cfg.url, "/")}
		}
	default:
		return cfg, fmt.Errorf("bench: unknown scenario %q", cfg.scenario)
	}
	if cfg.scenario == scenarioClassroom {
		cfg.groups = defaultInt(cfg.groups, 10)
	}
	cfg.groups = defaultInt(cfg.groups, 1)
	switch cfg.scenario {
	case scenarioPublish:
		cfg.publishers = defaultInt(cfg.publishers, 32)
	case scenarioSaturate:
		cfg.publishers = defaultInt(cfg.publishers, 8)
	}
	// Saturation publishes batches so acks do not cap the offered load
	// below what readers can take.
	if cfg.scenario == scenarioSaturate {
		cfg.batch = defaultInt(cfg.batch, 10)
	}
	cfg.batch = defaultInt(cfg.batch, 1)
	switch cfg.transport {
	case transportWS, transportSSE, transportPoll:
	default:
		return cfg, fmt.Errorf("bench: unknown transport %q (ws, sse or poll)", cfg.transport)
	}
	if cfg.order != "abab" && cfg.order != "abba" {
		return cfg, fmt.Errorf("bench: -order is abab or abba")
	}
	if cfg.compareTr == "" {
		cfg.compareTr = cfg.transport
	}
	switch cfg.compareTr {
	case transportWS, transportSSE, transportPoll:
	default:
		return cfg, fmt.Errorf("bench: unknown transport %q (ws, sse or poll)", cfg.compareTr)
	}
	for _, api := range []string{cfg.api, cfg.compareAPI} {
		switch api {
		case apiMeshbox:
		case apiNtfy:
			if cfg.scenario != scenarioFanout && cfg.scenario != scenarioPublish && cfg.scenario != scenarioIdle || cfg.transport == transportPoll || cfg.compareTr == transportPoll {
				return cfg, fmt.Errorf("bench: ntfy can be driven in the fanout (ws, sse), publish and idle scenarios")
			}
		default:
			return cfg, fmt.Errorf("bench: unknown api %q (meshbox or ntfy)", api)
		}
	}
	if cfg.scenario == scenarioIdle && cfg.transport == transportPoll {
		return cfg, fmt.Errorf("bench: idle holds ws or sse connections")
	}
	if cfg.rate <= 0 || cfg.rounds < 1 || cfg.duration <= 0 || cfg.perNode < 1 || cfg.batch < 1 || cfg.dial < 1 ||
		cfg.groups < 1 || cfg.nodes < 1 || cfg.eventBatch < 1 || cfg.window < 1 || cfg.dataRate < 0 || cfg.eventRate < 0 {
		return cfg, fmt.Errorf("bench: counts, rates and durations must be positive")
	}
	return cfg, nil
}

// defaultInt returns def when v is unset.
func defaultInt(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// runID returns a short random id that tags this run's groups and payloads.
func runID() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}

// bench is one run of the tool.
type bench struct {
	cfg    settings
	c      *client
	run    string
	groups []member // host credentials of every group created, for cleanup
	// owners is the client of the instance a group was created on, when not c (district).
	owners map[string]*client
}

// scenario dispatches to the selected scenario.
func (b *bench) scenario(ctx context.Context) (*Result, error) {
	switch b.cfg.scenario {
	case scenarioFanout:
		return b.fanout(ctx)
	case scenarioPublish:
		return b.publishLoad(ctx)
	case scenarioSaturate:
		return b.saturate(ctx)
	case scenarioClassroom:
		return b.classroom(ctx)
	case scenarioDistrict:
		return b.district(ctx)
	default:
		return b.idle(ctx)
	}
}

// cleanup dissolves the groups the run created, even after ctx ended.
func (b *bench) cleanup(ctx context.Context) error {
	if b.cfg.keep || len(b.groups) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	var failed []string
	for _, g := range b.groups {
		c := b.c
		if o := b.owners[g.Group]; o != nil {
			c = o
		}
		if err := c.dissolve(ctx, g); err != nil {
			failed = append(failed, g.Group+": "+err.Error())
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("cleanup: %s", strings.Join(failed, "; "))
	}
	return nil
}
