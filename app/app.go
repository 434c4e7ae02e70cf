// Package app assembles a running meshbox from its parts: store, hub, HTTP server, background
// loops. main and the end-to-end tests both start meshbox through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/auth"
	"meshbox/config"
	"meshbox/editor"
	"meshbox/hub"
	"meshbox/lan"
	"meshbox/live"
	"meshbox/meshv2"
	"meshbox/metrics"
	"meshbox/ratelimit"
	"meshbox/rules"
	"meshbox/server"
	"meshbox/stream"
	"meshbox/web"
)

// App is a running meshbox.
type App struct {
	cfg config.Config
	log *slog.Logger
	// Log is the log under the rules (SQLite, or JetStream with a NATS URL); Store the rules
	// every entrance goes through.
	Log      stream.Log
	opened   *openedLog
	Store    *rules.Engine
	Hub      *hub.Hub
	Server   *server.Server
	Metrics  *metrics.Metrics
	conns    *live.Manager
	mesh     *meshv2.Handler
	editor   *editor.Editor  // nil without --smalruby
	lan      *lan.Advertiser // nil when mDNS is off or could not start
	http     *http.Server
	ln       net.Listener
	cancel   context.CancelFunc // ends streams and background loops
	loops    sync.WaitGroup
	serveErr chan error
	stopOnce sync.Once
	stopErr  error
	started  time.Time
	version  string
}

// NewLogger builds the process logger from the settings.
func NewLogger(cfg config.Config, out io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(cfg.LogFormat, "json") {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// Options are what a start needs beyond the settings.
type Options struct {
	// Terminal receives what is meant for the person who started meshbox rather than for the
	// log: the dashboard link with a new admin token, as a QR code. nil prints nothing.
	Terminal io.Writer
	// Now is the clock of the rate limits; nil is time.Now. Tests drive it.
	Now func() time.Time
	// Commit is the source commit the binary was built from ("" when unknown), for
	// meshbox_build_info.
	Commit string
}

// Start opens the database, starts the writer, the background loops and the HTTP server on
// cfg.Addr (use 127.0.0.1:0 in tests), and returns once it accepts connections.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger, version string) (*App, error) {
	return StartWith(ctx, cfg, log, version, Options{})
}

// StartWith is Start with options.
func StartWith(ctx context.Context, cfg config.Config, log *slog.Logger, version string, opts Options) (*App, error) {
	a := &App{cfg: cfg, log: log, started: time.Now(), version: version, serveErr: make(chan error, 1)}
	// File problems in words a teacher can act on, before SQLite reports them as codes.
	if err := cfg.CheckDatabase(); err != nil {
		return nil, err
	}
	if err := cfg.CheckSmalruby(); err != nil {
		return nil, err
	}
	// The dashboard's details are the teacher's: there is always an admin token.
	tokenFile := AdminTokenFile(cfg.DB)
	var err error
	var tokenCreated bool
	tokenConfigured := cfg.AdminToken != ""
	if cfg.AdminToken, tokenCreated, err = adminToken(cfg.AdminToken, tokenFile); err != nil {
		return nil, err
	}
	a.cfg = cfg
	if cfg.Pprof {
		// Sample contended locks too, so /debug/pprof/mutex has something to show under load;
		// it is process-wide and costs little at this rate. (A block profile would record
		// every reader's wait with its stack, which changes what it measures; profiling
		// blocking needs a build that calls runtime.SetBlockProfileRate.)
		runtime.SetMutexProfileFraction(100)
	}
	a.Metrics = metrics.NewBuild(metrics.Build{Version: version, Commit: opts.Commit}, nil)
	if a.opened, err = openLog(ctx, cfg, version, log); err != nil {
		return nil, err
	}
	a.Log = a.opened.log
	a.Store, err = rules.New(ctx, a.Log, rules.Options{
		MaxBatchItems: a.opened.maxBatchItems,
		EventTTL:      cfg.EventTTL, MaxGroupLifetime: cfg.MaxGroupLifetime, HostTTL: cfg.HostTTL, MemberTTL: cfg.MemberTTL,
		Limits: rules.Limits{
			MaxNodesPerGroup: cfg.MaxNodesPerGroup, MaxGroupsPerDomain: cfg.MaxGroupsPerDomain,
			MaxDataKeys: cfg.MaxDataKeys, MaxDataKeyBytes: cfg.MaxDataKeyBytes, MaxDataValueBytes: cfg.MaxDataValueBytes,
			MaxPayloadBytes: cfg.MaxPayloadBytes, MaxEventsPerPublish: cfg.MaxEventsPerPublish, PublishRate: cfg.PublishRate, NodeByteRate: float64(cfg.NodeByteRate),
			MaxGroups: cfg.MaxGroups, MaxGroupsPerClient: cfg.MaxGroupsPerClient, GroupCreateRate: cfg.GroupCreateRate,
			MaxGroupsPerClientDomain: cfg.MaxGroupsPerClientDomain, MaxNodesPerClientGroup: cfg.MaxNodesPerClientGroup,
			MaxNodesPerClient: cfg.MaxNodesPerClient,
		},
		Now:    opts.Now,
		Logger: log.With("component", "rules"), Observer: a.Metrics,
	})
	if err != nil {
		a.opened.Close()
		return nil, err
	}
	// The store both reports to the metrics and is read by them at scrape time.
	merr := a.Metrics.RegisterStats(web.StatsSource(a.Store))
	if a.opened.db != nil {
		merr = errors.Join(merr,
			a.Metrics.RegisterDB(a.opened.db.WriterDB(), "writer"),
			a.Metrics.RegisterDB(a.opened.db.ReaderDB(), "reader"))
	}
	if err := merr; err != nil {
		a.opened.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	a.Hub = hub.New(a.Store, hub.Options{TailItems: cfg.TailItems, TailBytes: cfg.TailBytes, GlobalBytes: cfg.FeedBytes})
	a.Store.Start(rules.Hooks{OnCommit: a.Hub.Publish, Active: a.Hub.Active, OnPurge: a.Hub.Purged})

	// One context ends every long-lived connection and background loop at shutdown; one
	// manager holds every long-lived connection (native streams, Mesh v2 real-time, dashboard
	// streams) under one per-address cap; one rule identifies callers on every entrance.
	loopCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.conns = live.New(loopCtx, server.LiveConfig(cfg, a.Metrics))
	clients := server.Clients(cfg)
	// One set of request budgets for every entrance: an HTTP request, a native WebSocket
	// message and a Mesh v2 real-time message each cost one request of the same budget.
	budgets := ratelimit.NewBudgets(server.RequestRates(cfg), opts.Now)
	admin := auth.NewAdmin(cfg.AdminToken, opts.Now)
	// The school's copy of the Smalruby editor, pointed at this box, when one is given.
	var editorPath string
	if cfg.Smalruby != "" {
		a.editor, err = editor.Open(editor.Config{Path: cfg.Smalruby, PublicURL: cfg.PublicURL, APIKey: cfg.APIKey,
			Clients: clients, Logger: log.With("component", "editor")})
		if err != nil {
			cancel()
			a.close()
			return nil, &config.Error{Setting: cfg.Source("smalruby"), Value: cfg.Smalruby, Problem: "cannot be served: " + err.Error(),
				Accepted: "give the editor's ZIP (GitHub's \"Download ZIP\" of smalruby/smalruby.app) or its unpacked folder"}
		}
		editorPath = editor.Path
	}
	dash, err := web.New(web.Config{AdminToken: cfg.AdminToken, Admin: admin, Version: version, StartedAt: a.started, PublicURL: cfg.PublicURL, ListenAddr: cfg.Addr, LANHost: lanHost(cfg),
		Clients: clients, Conns: a.conns, Smalruby: editorPath}, a.Store, a.Hub, a.Metrics, log.With("component", "web"))
	if err != nil {
		cancel()
		a.close()
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	// Mesh v2 clients land in the same domains as native ones: the same rule decides.
	a.mesh, err = meshv2.New(meshv2.Config{
		APIKey: cfg.APIKey, HostHeartbeatInterval: cfg.HostHeartbeatInterval,
		MemberHeartbeatInterval: cfg.MemberHeartbeatInterval, PollingInterval: cfg.PollingInterval,
		MaxConnectionTime: cfg.MaxGroupLifetime, MaxBodyBytes: cfg.MaxBodyBytes, BodyReadTimeout: cfg.BodyTimeout,
		DomainFor: clients.Domain, ClientIP: clients.IP, Conns: a.conns, Budgets: budgets,
		// The rules' limits size the /graphql body bound and the variables' longest list.
		Limits:      a.Store.Limits(),
		NoWebSocket: cfg.NoWebSocket, Introspection: cfg.GraphQLIntrospection,
	}, meshv2.NewStoreBackend(a.Store, a.Hub), log.With("component", "meshv2"))
	if err != nil {
		cancel()
		a.close()
		return nil, fmt.Errorf("mesh v2: %w", err)
	}
	mounts := []func(chi.Router){
		dash.Routes,
		a.mesh.Routes,
		func(r chi.Router) { r.Method(http.MethodGet, "/metrics", a.Metrics.Handler()) },
	}
	if a.editor != nil {
		mounts = append(mounts, a.editor.Routes)
	}
	srv := server.New(loopCtx, cfg, server.Deps{
		Store: a.Store, Hub: a.Hub, Logger: log, Observer: a.Metrics, Middleware: a.Metrics.InstrumentHTTP, Now: opts.Now,
		Conns: a.conns, Budgets: budgets, Admin: admin, Mounts: mounts,
	})
	a.Server = srv
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		cancel()
		a.close()
		return nil, listenError(cfg, err)
	}
	a.ln = srv.Listen(ln) // the connection budget

	a.http = &http.Server{
		Handler:           a.Server.Handler(),
		ReadHeaderTimeout: cfg.HeaderTimeout, // slowloris clients are cut off
		IdleTimeout:       cfg.IdleTimeout,   // and idle keep-alive connections free their slot
		ConnState:         srv.ConnState,     // the budget closes idle connections first
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// Every request's context ends when shutdown begins, so long-lived handlers (native
		// streams, long-polls, the dashboard stream) end at once rather than holding shutdown
		// for its whole timeout; writes already queued still finish and are answered.
		BaseContext: func(net.Listener) context.Context { return loopCtx },
		ConnContext: srv.ConnContext,
	}
	a.loops.Add(4)
	go func() { defer a.loops.Done(); a.conns.Run(loopCtx) }()
	go func() { defer a.loops.Done(); a.Store.RunPurge(loopCtx, cfg.PurgeInterval) }()
	go func() { defer a.loops.Done(); a.Hub.Run(loopCtx) }()
	go func() { defer a.loops.Done(); dash.Run(loopCtx) }()
	go func() { a.serveErr <- a.http.Serve(a.ln) }()
	log.Info("meshbox listening", "addr", a.URL(), "db", cfg.DB, "version", version)
	if web.ListensOnLoopback(cfg.Addr) {
		log.Warn("listening on this computer only: students' devices cannot connect; use --addr :8080 to accept them", "addr", cfg.Addr)
	}
	// Being found by name is a convenience: without it the box still serves. A box that
	// listens on loopback only is not advertised: nobody on the LAN could reach it.
	if tcp := a.ln.Addr().(*net.TCPAddr); cfg.MDNS && !tcp.IP.IsLoopback() {
		a.lan, err = lan.Start(lan.Config{Name: cfg.MDNSName, Port: tcp.Port, Text: lanText(a.editor != nil), Logger: log.With("component", "mdns")})
		if err != nil {
			log.Warn("not advertised on the LAN", "err", err)
		} else {
			log.Info("advertised on the LAN by mDNS", "host", a.lan.Host(), "service", lan.ServiceType)
		}
	}
	a.announceAdmin(dash, tokenFile, tokenConfigured, tokenCreated, opts.Terminal)
	return a, nil
}

// lanText is the TXT record of the box's mDNS service: the dashboard, the Mesh v2 endpoint
// and, when one is served, the Smalruby editor.
func lanText(smalruby bool) [][2]string {
	txt := [][2]string{{"path", "/"}, {"meshv2", "/graphql"}}
	if smalruby {
		txt = append(txt, [2]string{"smalruby", editor.Path})
	}
	return txt
}

// lanHost is the name the dashboard offers for joining when the box advertises itself.
func lanHost(cfg config.Config) string {
	if !cfg.MDNS {
		return ""
	}
	return cfg.MDNSName + ".local"
}

// URL is the base URL the server listens on.
func (a *App) URL() string {
	addr := a.ln.Addr().(*net.TCPAddr)
	host := addr.IP.String()
	if addr.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
}

// Done is closed... it returns the serve error channel: a value arrives if serving stops.
func (a *App) Done() <-chan error { return a.serveErr }

// Shutdown stops meshbox gracefully: streams are told to reconnect and end, in-flight requests
// and queued writes finish, the WAL is checkpointed and the database closed.
func (a *App) Shutdown(ctx context.Context) error {
	a.stopOnce.Do(func() {
		start := time.Now()
		a.cancel() // streams end (WebSocket closes with 1012), background loops stop
		if a.lan != nil {
			a.lan.Stop()
		}
		err := a.mesh.Close(ctx)
		err = errors.Join(err, a.http.Shutdown(ctx), a.conns.Wait(ctx))
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.Join(err, a.http.Close())
		}
		a.loops.Wait()
		a.stopErr = errors.Join(err, a.close())
		if a.stopErr != nil {
			a.log.Warn("meshbox stopped", "took", time.Since(start).Round(time.Millisecond), "err", a.stopErr)
		} else {
			a.log.Info("meshbox stopped", "took", time.Since(start).Round(time.Millisecond))
		}
	})
	return a.stopErr
}

// close stops the rules' writer (finishing queued writes), then closes the log.
func (a *App) close() error {
	err := errors.Join(a.Store.Close(), a.opened.Close())
	if a.editor != nil {
		err = errors.Join(err, a.editor.Close())
	}
	return err
}

// listenError says in a teacher's words why the address cannot be listened on: the two
// everyday causes (the port is taken, often by a meshbox already running; a port below 1024
// needs privileges) get a sentence and what to do; anything else keeps the system's words.
func listenError(cfg config.Config, err error) error {
	_, port, _ := net.SplitHostPort(cfg.Addr)
	setting := cfg.Source("addr")
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("another program, perhaps another meshbox, is using port %s: stop it or choose another port with %s (such as %s)", port, setting, otherPort(setting, port))
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("port %s needs administrator rights on this computer: choose a port above 1023 with %s (such as %s), or run meshbox as a service (meshbox service install)", port, setting, otherPort(setting, "8080"))
	}
	return fmt.Errorf("listen on %s: %w", cfg.Addr, err)
}

// otherPort is an example of the address setting with the next port, as the user spelled
// the setting (--addr or MESHBOX_ADDR).
func otherPort(setting, port string) string {
	p, _ := strconv.Atoi(port)
	if p <= 0 || p >= 65535 {
		p = 8080
	}
	return setting + "=:" + strconv.Itoa(p+1)
}
