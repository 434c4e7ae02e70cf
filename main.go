// Command meshbox is a self-hosted real-time relay for classrooms.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"meshbox/app"
	"meshbox/bench"
	"meshbox/config"
	"meshbox/service"
	"meshbox/web"
)

// version and commit are stamped at build time (`make build`, `make release`, the Dockerfile)
// with -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

// buildInfo is what --version prints after "meshbox ": the version, the commit and the Go
// toolchain and platform, so a teacher can tell which release runs on which board.
func buildInfo() string {
	c, arch := sourceCommit(), runtime.GOARCH
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "GOARM" && arch == "arm" { // armv6 and armv7 builds differ
				arch += "/v" + strings.TrimSuffix(strings.TrimSuffix(s.Value, ",softfloat"), ",hardfloat")
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	return fmt.Sprintf("%s (commit %s, %s, %s/%s)", version, c, runtime.Version(), runtime.GOOS, arch)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout); err != nil {
		stop()
		os.Exit(report(os.Stderr, err))
	}
}

// Exit statuses: a setting that cannot be used is the caller's to fix (2, as for a bad command
// line); anything else that stops meshbox is 1.
const (
	exitFailure  = 1
	exitSettings = 2
)

// report prints err to w, one "meshbox: " line per problem, and returns the exit status.
func report(w io.Writer, err error) int {
	for _, line := range strings.Split(err.Error(), "\n") {
		fmt.Fprintln(w, "meshbox:", line)
	}
	var bad *config.Error
	if errors.As(err, &bad) {
		return exitSettings
	}
	return exitFailure
}

// sourceCommit is the commit stamped at build time, else the one the Go toolchain recorded
// (a `go build` in a git checkout), else "".
func sourceCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return ""
}

// run is meshbox's whole life: it returns when ctx ends (after a graceful shutdown) or on error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return healthcheck(ctx, args[1:], getenv, stdout)
		case "bench":
			return bench.Run(ctx, args[1:], stdout)
		case "service":
			return service.Run(args[1:], stdout)
		case "admin-link":
			return adminLink(args[1:], getenv, stdout)
		}
	}
	cfg, err := config.Parse(args, getenv, stdout, buildInfo())
	if errors.Is(err, config.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg, stdout)
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	floor := uint64(heapFloorBytes)
	if limit := debug.SetMemoryLimit(-1); limit < math.MaxInt64 {
		log.Info("memory limit", "bytes", limit)
		floor = min(floor, uint64(limit)/8) // a small box's limit, not the floor, decides
	}
	defer startHeapFloor(floor, getenv("GOGC") != "")()
	a, err := app.StartWith(ctx, cfg, log, version, app.Options{Terminal: stdout, Commit: sourceCommit()})
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case err := <-a.Done():
		log.Error("server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	return a.Shutdown(sctx)
}

// adminLink is `meshbox admin-link`: the teacher's link and its QR code again, from the token
// kept beside the database (the service's, when no database is named and there is none here).
func adminLink(args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Parse(args, getenv, stdout, buildInfo())
	if errors.Is(err, config.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	places := app.LinkPlaces{ServiceDB: service.StateDir + "/meshbox.db", ServiceUnit: service.UnitPath}
	return app.PrintAdminLink(cfg, places, web.RealMachine(), stdout)
}

// healthcheck asks the local meshbox (at the configured address) whether it is up; a container
// health check runs it, as distroless images have no curl.
func healthcheck(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Parse(args, getenv, stdout, version)
	if err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", cfg.Addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: status %d", resp.StatusCode)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
