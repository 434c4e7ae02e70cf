// Command meshbox is a self-hosted real-time relay for classrooms.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"meshbox/app"
	"meshbox/bench"
	"meshbox/config"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

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

// run is meshbox's whole life: it returns when ctx ends (after a graceful shutdown) or on error.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "healthcheck":
			return healthcheck(ctx, args[1:], getenv, stdout)
		case "bench":
			return bench.Run(ctx, args[1:], stdout)
		}
	}
	cfg, err := config.Parse(args, getenv, stdout, version)
	if errors.Is(err, config.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	log := app.NewLogger(cfg, stdout)
	a, err := app.StartWith(ctx, cfg, log, version, app.Options{Terminal: stdout})
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
