// Package qr draws QR codes of the box's address for the dashboard (SVG) and the terminal, so
// students can scan it without any network. The encoding itself is
// github.com/skip2/go-qrcode's (ISO/IEC 18004, every version, mask chosen by the standard's
// penalty rules): a well-known library replaced the 437-line encoder meshbox carried, whose
// only independent check was a decode by zbar. This package keeps what is meshbox's own: the
// level (M), the size bound, and the two renderings.
package qr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// MaxBytes is the longest text Encode takes: version 10 at level M holds 213 bytes, far more
// than a URL needs, and a larger code would not fit a terminal's 80 columns.
const MaxBytes = 213

// ErrTooLong is returned for text longer than MaxBytes.
var ErrTooLong = errors.New("qr: text too long")

// Code is a finished QR symbol: Size×Size modules.
type Code struct {
	Size    int
	modules [][]bool // [y][x], true = dark
}

// Dark reports whether the module at column x, row y is dark.
func (c *Code) Dark(x, y int) bool { return c.modules[y][x] }

// Encode builds the smallest code at level M that holds text.
func Encode(text string) (*Code, error) {
	if len(text) > MaxBytes {
		return nil, fmt.Errorf("encode %d bytes: %w", len(text), ErrTooLong)
	}
	q, err := qrcode.New(text, qrcode.Medium)
	if err != nil {
		return nil, fmt.Errorf("encode %d bytes: %w", len(text), err)
	}
	q.DisableBorder = true // the renderings draw their own quiet zones
	m := q.Bitmap()
	return &Code{Size: len(m), modules: m}, nil
}

// SVG renders the code as a standalone SVG with a four-module quiet zone. It uses one path,
// black on white whatever the page theme, because scanners need the contrast.
func (c *Code) SVG() string {
	const quiet = 4
	dim := c.Size + 2*quiet
	var b strings.Builder
	b.WriteString(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 `)
	b.WriteString(strconv.Itoa(dim) + " " + strconv.Itoa(dim))
	b.WriteString(`" shape-rendering="crispEdges"><rect width="100%" height="100%" fill="#fff"/><path fill="#000" d="`)
	for y := range c.Size {
		for x := range c.Size {
			if c.Dark(x, y) {
				fmt.Fprintf(&b, "M%d %dh1v1h-1z", x+quiet, y+quiet)
			}
		}
	}
	b.WriteString(`"/></svg>`)
	return b.String()
}
