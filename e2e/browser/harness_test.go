package browser_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"meshbox/e2e/chrome"
)

// browser is one headless Chromium with a fresh profile, closed when the test ends.
type browser struct {
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	return &browser{ctx: chrome.Start(t, chromedp.WindowSize(1280, 900))}
}

// tab is one browser tab; it records what the page logged as an error.
type tab struct {
	t    *testing.T
	name string
	ctx  context.Context

	mu       sync.Mutex
	problems []string
}

func (b *browser) newTab(t *testing.T, name string) *tab {
	t.Helper()
	ctx, cancel := chromedp.NewContext(b.ctx)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		t.Fatalf("open tab %s: %v", name, err)
	}
	tb := &tab{t: t, name: name, ctx: ctx}
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			// The browser's own request for /favicon.ico on pages without an icon is not the page's doing.
			if (m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleException) && !strings.HasSuffix(m.URL, "/favicon.ico") {
				tb.mu.Lock()
				tb.problems = append(tb.problems, fmt.Sprintf("%s: %s (%s:%d)", m.Type, m.Text, m.URL, m.Line))
				tb.mu.Unlock()
			}
		}
	}()
	t.Cleanup(cancel)
	return tb
}

// consoleErrors returns the errors and uncaught exceptions the page logged so far.
func (tb *tab) consoleErrors() []string {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	return append([]string(nil), tb.problems...)
}

func (tb *tab) navigate(u string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(u)); err != nil {
		tb.t.Fatalf("%s: navigate %s: %v", tb.name, u, err)
	}
}

// eval runs a JavaScript expression (awaiting a promise) and decodes its JSON value into out.
func (tb *tab) eval(expr string, out any) {
	tb.t.Helper()
	if err := tb.tryEval(expr, out); err != nil {
		tb.t.Fatalf("%s: eval %s: %v", tb.name, short(expr), err)
	}
}

func (tb *tab) tryEval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if len(raw) == 0 {
		raw = []byte("null")
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("decode %s: %w", raw, err)
	}
	return nil
}

// waitTrue polls a JavaScript expression until it is true; on timeout it fails the test and
// shows the value of diag, which should explain what the page has instead.
func (tb *tab) waitTrue(expr, diag string, timeout time.Duration) {
	tb.t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		var ok bool
		if lastErr = tb.tryEval("!!("+expr+")", &ok); lastErr == nil && ok {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	var got any
	if diag != "" {
		if err := tb.tryEval(diag, &got); err != nil {
			got = "diag failed: " + err.Error()
		}
	}
	tb.t.Fatalf("%s: timed out after %v waiting for %s (last error %v); state: %s", tb.name, timeout, short(expr), lastErr, jsonString(got))
}

// screenshot saves the page to screenshots/NAME.png next to the test (git-ignored).
func (tb *tab) screenshot(name string) string {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("%s: screenshot: %v", tb.name, err)
	}
	dir := "screenshots"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.t.Fatalf("screenshot dir: %v", err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		tb.t.Fatalf("write screenshot: %v", err)
	}
	return path
}

func short(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		return s[:160] + "…"
	}
	return s
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if len(b) > 4000 {
		return string(b[:4000]) + "…"
	}
	return string(b)
}

// jsString quotes s as a JavaScript string literal.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// harnessJS loads /meshbox.js into the page and keeps, per client id, every item, status and
// reset the client reported, so the Go side can poll them.
const harnessJS = `(async () => {
  const lib = await import('/meshbox.js');
  window.MeshClient = lib.MeshClient;
  window.T = {
    c: {}, items: {}, statuses: {}, resets: {}, pending: {}, settled: {},
    watch(id, m) {
      T.c[id] = m; T.items[id] = []; T.statuses[id] = []; T.resets[id] = 0;
      m.on('item', (it) => T.items[id].push(it));
      m.on('status', (s) => T.statuses[id].push({state: s.state, transport: s.transport, reason: s.reason || '', error: s.error ? s.error.code + ': ' + s.error.message : ''}));
      m.on('reset', () => { T.resets[id]++; });
      return {group: m.groupId, node: m.nodeId, cursor: m.cursor};
    },
    events(id, name) { return T.items[id].filter((i) => i.kind === 'event' && (!name || i.name.startsWith(name))).map((i) => i.name + '=' + (i.payload ?? '')); },
    state(id) {
      const m = T.c[id];
      return {transport: m.transport, status: m.status, cursor: m.cursor, statuses: T.statuses[id].slice(-8),
        items: T.items[id].length, last: T.items[id].slice(-3), resets: T.resets[id],
        nodes: [...m.nodes.values()].map((n) => ({id: n.id, name: n.name, data: n.data}))};
    },
  };
  return true;
})()`

// page is a tab with the harness loaded from a meshbox at base.
func (b *browser) page(t *testing.T, name, base string) *tab {
	t.Helper()
	tb := b.newTab(t, name)
	tb.navigate(base + "/healthz")
	tb.eval(harnessJS, nil)
	return tb
}

// proxy sits between the browser and meshbox to play a school network: it can refuse WebSocket
// upgrades, refuse event streams, or drop every connection as if the network went away.
type proxy struct {
	srv           *httptest.Server
	refuseUpgrade atomic.Bool
	refuseSSE     atomic.Bool
	down          atomic.Bool
	heartbeats    atomic.Int64 // POST .../heartbeat requests passed through

	mu       sync.Mutex
	upstream map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatalf("proxy target: %v", err)
	}
	p := &proxy{upstream: map[net.Conn]struct{}{}}
	dialer := &net.Dialer{Timeout: 5 * time.Second}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	rp.Transport = &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			p.mu.Lock()
			p.upstream[c] = struct{}{}
			p.mu.Unlock()
			return &trackedConn{Conn: c, p: p}, nil
		},
	}
	rp.ErrorLog = nil
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		w.WriteHeader(http.StatusBadGateway)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			hj, ok := w.(http.Hijacker)
			if ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		if p.refuseUpgrade.Load() && strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "WebSocket is blocked by this network", http.StatusForbidden)
			return
		}
		if p.refuseSSE.Load() && strings.HasSuffix(r.URL.Path, "/stream") {
			http.Error(w, "event streams are blocked by this network", http.StatusForbidden)
			return
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/heartbeat") {
			p.heartbeats.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// setDown drops every open connection and, while down, closes new ones at once.
func (p *proxy) setDown(down bool) {
	p.down.Store(down)
	if !down {
		return
	}
	p.mu.Lock()
	for c := range p.upstream {
		c.Close()
	}
	p.mu.Unlock()
	p.srv.CloseClientConnections()
}

type trackedConn struct {
	net.Conn
	p    *proxy
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.p.mu.Lock()
		delete(c.p.upstream, c.Conn)
		c.p.mu.Unlock()
	})
	return c.Conn.Close()
}
