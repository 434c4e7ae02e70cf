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
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/config"
	"meshbox/db"
	"meshbox/hub"
	"meshbox/lan"
	"meshbox/meshv2"
	"meshbox/metrics"
	"meshbox/server"
	"meshbox/web"
)

// App is a running meshbox.
type App struct {
	cfg      config.Config
	log      *slog.Logger
	Store    *db.Store
	Hub      *hub.Hub
	Server   *server.Server
	Metrics  *metrics.Metrics
	mesh     *meshv2.Handler
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

// Start opens the database, starts the writer, the background loops and the HTTP server on
// cfg.Addr (use 127.0.0.1:0 in tests), and returns once it accepts connections.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger, version string) (*App, error) {
	a := &App{cfg: cfg, log: log, started: time.Now(), version: version, serveErr: make(chan error, 1)}
	var err error
	a.Metrics = metrics.New(version, nil)
	a.Store, err = db.Open(ctx, cfg.DB, db.Options{
		Synchronous: cfg.Synchronous, EventTTL: cfg.EventTTL, MaxGroupLifetime: cfg.MaxGroupLifetime,
		HostTTL: cfg.HostTTL, MemberTTL: cfg.MemberTTL, MaxNodesPerGroup: cfg.MaxNodesPerGroup,
		MaxGroupsPerDomain: cfg.MaxGroupsPerDomain, MaxDataKeys: cfg.MaxDataKeys,
		Logger: log.With("component", "db"), Observer: a.Metrics,
	})
	if err != nil {
		return nil, err
	}
	// The store both reports to the metrics and is read by them at scrape time.
	if err := errors.Join(
		a.Metrics.RegisterStats(web.StatsSource(a.Store)),
		a.Metrics.RegisterDB(a.Store.WriterDB(), "writer"),
		a.Metrics.RegisterDB(a.Store.ReaderDB(), "reader"),
	); err != nil {
		a.Store.Close()
		return nil, fmt.Errorf("register metrics: %w", err)
	}
	a.Hub = hub.New(a.Store, hub.Options{TailItems: cfg.TailItems})
	a.Store.Start(db.Hooks{OnCommit: a.Hub.Publish, Active: a.Hub.Active, OnPurge: a.Hub.Purged})

	dash, err := web.New(web.Config{AdminToken: cfg.AdminToken, Version: version, StartedAt: a.started, LANHost: lanHost(cfg)}, a.Store, a.Hub, a.Metrics, log.With("component", "web"))
	if err != nil {
		a.Store.Close()
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	// Mesh v2 clients must land in the same domains as native ones: the server's rule decides.
	var srv *server.Server
	a.mesh, err = meshv2.New(meshv2.Config{
		APIKey: cfg.APIKey, HostHeartbeatInterval: cfg.HostHeartbeatInterval,
		MemberHeartbeatInterval: cfg.MemberHeartbeatInterval, PollingInterval: cfg.PollingInterval,
		MaxConnectionTime: cfg.MaxGroupLifetime, MaxBodyBytes: cfg.MaxBodyBytes,
		DomainFor: func(r *http.Request) string { return srv.DomainFor(r) },
		Observer:  a.Metrics,
	}, meshv2.NewStoreBackend(a.Store, a.Hub), log.With("component", "meshv2"))
	if err != nil {
		a.Store.Close()
		return nil, fmt.Errorf("mesh v2: %w", err)
	}
	loopCtx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	srv = server.New(loopCtx, cfg, server.Deps{
		Store: a.Store, Hub: a.Hub, Logger: log, Observer: a.Metrics, Middleware: a.Metrics.InstrumentHTTP,
		Mounts: []func(chi.Router){
			dash.Routes,
			a.mesh.Routes,
			func(r chi.Router) { r.Method(http.MethodGet, "/metrics", a.Metrics.Handler()) },
		},
	})
	a.Server = srv
	a.ln, err = net.Listen("tcp", cfg.Addr)
	if err != nil {
		cancel()
		a.Store.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	a.http = &http.Server{
		Handler:           a.Server.Handler(),
		ReadHeaderTimeout: 10 * time.Second, // slowloris clients are cut off
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	a.loops.Add(4)
	go func() { defer a.loops.Done(); srv.Run(loopCtx) }()
	go func() { defer a.loops.Done(); a.Store.RunPurge(loopCtx, cfg.PurgeInterval) }()
	go func() { defer a.loops.Done(); a.Hub.Run(loopCtx) }()
	go func() { defer a.loops.Done(); dash.Run(loopCtx) }()
	go func() { a.serveErr <- a.http.Serve(a.ln) }()
	log.Info("meshbox listening", "addr", a.URL(), "db", cfg.DB, "version", version)
	// Being found by name is a convenience: without it the box still serves. A box that
	// listens on loopback only is not advertised: nobody on the LAN could reach it.
	if tcp := a.ln.Addr().(*net.TCPAddr); cfg.MDNS && !tcp.IP.IsLoopback() {
		a.lan, err = lan.Start(lan.Config{Name: cfg.MDNSName, Port: tcp.Port,
			Text: [][2]string{{"path", "/"}, {"meshv2", "/graphql"}}, Logger: log.With("component", "mdns")})
		if err != nil {
			log.Warn("not advertised on the LAN", "err", err)
		} else {
			log.Info("advertised on the LAN by mDNS", "host", a.lan.Host(), "service", lan.ServiceType)
		}
	}
	return a, nil
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
		err = errors.Join(err, a.http.Shutdown(ctx), a.Server.Wait(ctx))
		if errors.Is(err, context.DeadlineExceeded) {
			err = errors.Join(err, a.http.Close())
		}
		a.loops.Wait()
		a.stopErr = errors.Join(err, a.Store.Close())
		a.log.Info("meshbox stopped", "took", time.Since(start).Round(time.Millisecond), "err", a.stopErr)
	})
	return a.stopErr
}
