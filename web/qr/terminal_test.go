package qr

import (
	"strings"
	"testing"
)

// TestTerminalMatchesModules reads the terminal drawing back into modules: it must show exactly
// the code (whose scanning TestDecodeWithZbar proves) inside a light border.
func TestTerminalMatchesModules(t *testing.T) {
	t.Parallel()
	c, err := Encode("http://192.168.1.20:8080/#token=abcdefghijklmnopqrstuvwx")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("\x1b[30;47m", "", "\x1b[0m", "").Replace(c.Terminal())
	n := c.Size + 2*terminalQuiet
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines, want %d", len(lines), (n+1)/2)
	}
	for ly, line := range lines {
		cells := []rune(line)
		if len(cells) != n {
			t.Fatalf("line %d has %d cells, want %d", ly, len(cells), n)
		}
		for x, r := range cells {
			top, bottom := r == '█' || r == '▀', r == '█' || r == '▄'
			for i, got := range []bool{top, bottom} {
				y := 2*ly + i
				if y >= n {
					continue
				}
				mx, my := x-terminalQuiet, y-terminalQuiet
				want := mx >= 0 && my >= 0 && mx < c.Size && my < c.Size && c.Dark(mx, my)
				if got != want {
					t.Fatalf("module (%d,%d): drawn dark=%v, code dark=%v", mx, my, got, want)
				}
			}
		}
	}
}
