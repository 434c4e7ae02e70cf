package qr

import "strings"

// terminalQuiet is the light border around a code in a terminal, in modules. The standard asks
// for four; two scan fine on a screen and keep the code within 80 columns for every version.
const terminalQuiet = 2

// Terminal draws the code for a text terminal: two module rows per line with half blocks, in
// black on white set by ANSI colours, so it scans whatever the terminal's own colours are
// (light modules drawn as the terminal's foreground would invert the code on a dark theme).
func (c *Code) Terminal() string {
	const on, off = "\x1b[30;47m", "\x1b[0m"
	dark := func(x, y int) bool {
		x, y = x-terminalQuiet, y-terminalQuiet
		return x >= 0 && y >= 0 && x < c.Size && y < c.Size && c.Dark(x, y)
	}
	n := c.Size + 2*terminalQuiet
	var b strings.Builder
	for y := 0; y < n; y += 2 {
		b.WriteString(on)
		for x := range n {
			top, bottom := dark(x, y), y+1 < n && dark(x, y+1)
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteString(off)
		b.WriteByte('\n')
	}
	return b.String()
}
