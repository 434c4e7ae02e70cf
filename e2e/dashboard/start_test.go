package dashboard_test

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"meshbox/app"
	"meshbox/config"
)

// box is a running meshbox for one test.
type box struct {
	*client
	app *app.App
}

// startBox starts meshbox through package app, exactly as main does, on 127.0.0.1:0 with a
// fresh database, plus extra command-line settings.
func startBox(t *testing.T, args ...string) *box {
	t.Helper()
	args = append([]string{"--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "meshbox.db"), "--log-level", "warn", "--mdns=false"}, args...)
	cfg, err := config.Parse(args, func(string) string { return "" }, io.Discard, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Start(context.Background(), cfg, app.NewLogger(cfg, io.Discard), "v0.0.0-e2e")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	b := &box{client: &client{t: t, base: a.URL()}, app: a}
	// The dashboard and /metrics are mounted by app; say so plainly if they are not.
	for _, p := range []string{"/metrics", "/api/v1/dashboard/overview"} {
		resp, err := http.Get(b.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d: package app does not mount web and metrics", p, resp.StatusCode)
		}
	}
	return b
}

// teacherURL is the one-click dashboard link meshbox prints at first start.
func (b *box) teacherURL() string { return b.base + "/#token=" + b.app.AdminToken() }
