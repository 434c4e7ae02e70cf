// Package chrome holds what the browser tests of several packages share.
package chrome

import (
	"context"
	"os"
	"os/exec"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// TypeInto focuses the element and types text into it, as a person would. It stands in for
// chromedp.SendKeys, which reads the node's attributes without its lock and so races with a
// page that changes attributes (the pages translate their placeholders and titles).
func TypeInto(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Focus(chromedp.CSS(sel)),
		func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
			return chromedp.Void{}, err
		},
	)
}

// Path finds the browser ($MESHBOX_CHROMIUM, else chromium or Chrome on the PATH). A missing
// browser skips the test, or fails it under MESHBOX_E2E=1, so that CI cannot pass by silently
// running nothing.
func Path(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("MESHBOX_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("MESHBOX_E2E") == "1" {
		t.Fatal("MESHBOX_E2E=1 but no Chromium found: apt-get install -y chromium, or set MESHBOX_CHROMIUM")
	}
	t.Skip("no Chromium found (apt-get install -y chromium); set MESHBOX_E2E=1 to make this a failure")
	return ""
}

// Start starts one headless Chromium with a fresh profile, closed when the test ends, and
// returns the context of its first tab; extra options (a window size) come after the common
// ones. The flags keep it quiet on a machine without internet and without a GPU.
func Start(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	path := Path(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.UserDataDir(t.TempDir()),
	)
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium %s: %v", path, err)
	}
	return bctx
}
