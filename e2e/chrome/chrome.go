// Package chrome holds what the browser tests of several packages share.
package chrome

import (
	"context"

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
