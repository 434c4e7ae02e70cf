package app_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"meshbox/app"
)

// TestAdminTokenCreatedOnceAndWorks starts a box without an admin token: it creates one, keeps
// it beside the database (mode 0600), prints the one-click link with a QR code once, and the
// token opens the admin routes; a restart on the same database uses the same token and prints
// nothing.
func TestAdminTokenCreatedOnceAndWorks(t *testing.T) {
	t.Parallel()
	cfg := app.TestConfig(t.TempDir())
	start := func() (*app.App, string, string) {
		var term, logs bytes.Buffer
		a, err := app.StartWith(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), "test", app.Options{Terminal: &term})
		if err != nil {
			t.Fatal(err)
		}
		return a, term.String(), logs.String()
	}
	stop := func(a *app.App) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
	}
	check := func(a *app.App, tok string, want int) {
		t.Helper()
		req, _ := http.NewRequest("GET", a.URL()+"/api/v1/admin/check", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("admin check with %q: %d, want %d", tok, resp.StatusCode, want)
		}
	}

	a, term, logs := start()
	m := regexp.MustCompile(`(http://\S+/)#token=([A-Za-z0-9_-]+)`).FindStringSubmatch(term)
	if m == nil || !strings.Contains(term, "\u2580") && !strings.Contains(term, "\u2584") {
		t.Fatalf("terminal shows no link with a QR code:\n%s", term)
	}
	tok := m[2]
	if strings.Count(logs, tok) != 1 || strings.Count(term, tok) != 1 {
		t.Errorf("token printed %d times in the log and %d on the terminal, want once each", strings.Count(logs, tok), strings.Count(term, tok))
	}
	check(a, tok, http.StatusNoContent)
	check(a, tok+"x", http.StatusUnauthorized)
	file := app.AdminTokenFile(cfg.DB)
	if filepath.Dir(file) != filepath.Dir(cfg.DB) {
		t.Errorf("token file %s is not beside the database", file)
	}
	fi, err := os.Stat(file)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	stop(a)

	a, term, logs = start()
	defer stop(a)
	if strings.Contains(term+logs, tok) {
		t.Errorf("the token was printed again on restart:\n%s\n%s", term, logs)
	}
	if !strings.Contains(logs, file) {
		t.Errorf("the restart does not say where the token is kept:\n%s", logs)
	}
	check(a, tok, http.StatusNoContent)
}

// TestShortTokenFileIsRefused: a token file edited by hand to a guessable password stops the
// start with one line naming the file, as a short --admin-token does.
func TestShortTokenFileIsRefused(t *testing.T) {
	t.Parallel()
	cfg := app.TestConfig(t.TempDir())
	if err := os.WriteFile(app.AdminTokenFile(cfg.DB), []byte("7391\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := app.StartWith(context.Background(), cfg, slog.New(slog.DiscardHandler), "test", app.Options{Terminal: &bytes.Buffer{}})
	if err == nil {
		a.Shutdown(context.Background())
		t.Fatal("a box started with a 4-character admin token")
	}
	if !strings.Contains(err.Error(), "too short (4 characters)") || !strings.Contains(err.Error(), app.AdminTokenFile(cfg.DB)) {
		t.Errorf("error %q does not say the token file's password is too short", err)
	}
}
