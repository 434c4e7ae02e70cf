package app

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"meshbox/config"
)

// TestConfig is the default configuration with a database in dir, a loopback address on a
// free port and mDNS off, for tests that start a real meshbox.
func TestConfig(dir string) config.Config {
	cfg, err := config.Parse(nil, func(string) string { return "" }, io.Discard, "test")
	if err != nil {
		panic(err) // the defaults always parse
	}
	cfg.Addr = "127.0.0.1:0"
	cfg.DB = filepath.Join(dir, "meshbox.db")
	cfg.MDNS = false // tests never advertise on the machine's network
	return cfg
}

// StartTest starts a real meshbox for a test, stopped when the test ends. edit may change the
// configuration first.
func StartTest(t testing.TB, edit func(*config.Config)) *App {
	t.Helper()
	return StartTestWith(t, edit, Options{})
}

// StartTestWith is StartTest with start options (a clock, a terminal).
func StartTestWith(t testing.TB, edit func(*config.Config), opts Options) *App {
	t.Helper()
	cfg := TestConfig(t.TempDir())
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = NewLogger(cfg, testWriter{t})
	}
	a, err := StartWith(context.Background(), cfg, log, "test", opts)
	if err != nil {
		t.Fatalf("start meshbox: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return a
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
