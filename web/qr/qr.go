// Package qr draws QR codes (ISO/IEC 18004, byte mode, error correction level M, versions 1–10)
// so the dashboard can show students a scannable box URL without any network or library.
// Version 10 at level M holds 213 bytes, far more than a URL needs.
package qr

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrTooLong is returned for text that does not fit version 10 at level M.
var ErrTooLong = errors.New("qr: text too long")

// block layout of one version at level M: data codewords per block, EC codewords per block.
type layout struct {
	ec     int   // EC codewords per block
	blocks []int // data codewords of each block
}

// levelM lists, for versions 1..10, the block structure at error correction level M
// (from the standard's table 9).
var levelM = [...]layout{
	1:  {10, []int{16}},
	2:  {16, []int{28}},
	3:  {26, []int{44}},
	4:  {18, []int{32, 32}},
	5:  {24, []int{43, 43}},
	6:  {16, []int{27, 27, 27, 27}},
	7:  {18, []int{31, 31, 31, 31}},
	8:  {22, []int{38, 38, 39, 39}},
	9:  {22, []int{36, 36, 36, 37, 37}},
	10: {26, []int{43, 43, 43, 43, 44}},
}

// alignment lists the alignment pattern centre coordinates of versions 1..10.
var alignment = [...][]int{
	1: nil, 2: {6, 18}, 3: {6, 22}, 4: {6, 26}, 5: {6, 30}, 6: {6, 34},
	7: {6, 22, 38}, 8: {6, 24, 42}, 9: {6, 26, 46}, 10: {6, 28, 50},
}

// MaxVersion is the largest version this package produces.
const MaxVersion = 10

// Code is a finished QR symbol: Size×Size modules, true = dark.
type Code struct {
	Version int
	Size    int
	Mask    int
	modules []bool
}

// Dark reports whether the module at column x, row y is dark.
func (c *Code) Dark(x, y int) bool { return c.modules[y*c.Size+x] }

// Encode builds the smallest code at level M that holds text as bytes.
func Encode(text string) (*Code, error) {
	data := []byte(text)
	for v := 1; v <= MaxVersion; v++ {
		if len(data) <= capacity(v) {
			return build(v, data), nil
		}
	}
	return nil, fmt.Errorf("encode %d bytes: %w", len(data), ErrTooLong)
}

// capacity is the number of bytes version v holds at level M in byte mode.
func capacity(v int) int {
	bits := dataCodewords(v)*8 - 4 - countBits(v)
	return bits / 8
}

func dataCodewords(v int) int {
	n := 0
	for _, b := range levelM[v].blocks {
		n += b
	}
	return n
}

// countBits is the width of the byte-mode character count field.
func countBits(v int) int {
	if v <= 9 {
		return 8
	}
	return 16
}

// bitBuffer collects bits most significant first.
type bitBuffer struct {
	bytes []byte
	n     int
}

func (b *bitBuffer) put(val uint, width int) {
	for i := width - 1; i >= 0; i-- {
		if b.n%8 == 0 {
			b.bytes = append(b.bytes, 0)
		}
		if val>>uint(i)&1 == 1 {
			b.bytes[b.n/8] |= 0x80 >> uint(b.n%8)
		}
		b.n++
	}
}

// codewords builds the data codewords: mode, count, bytes, terminator and padding.
func codewords(v int, data []byte) []byte {
	total := dataCodewords(v)
	var b bitBuffer
	b.put(0b0100, 4) // byte mode
	b.put(uint(len(data)), countBits(v))
	for _, c := range data {
		b.put(uint(c), 8)
	}
	term := min(4, total*8-b.n)
	b.put(0, term)
	if r := b.n % 8; r != 0 {
		b.put(0, 8-r)
	}
	for pad := byte(0xEC); len(b.bytes) < total; pad ^= 0xEC ^ 0x11 {
		b.bytes = append(b.bytes, pad)
	}
	return b.bytes
}

// interleave splits data into blocks, adds each block's Reed-Solomon codewords and
// interleaves them as the standard orders them in the symbol.
func interleave(v int, data []byte) []byte {
	l := levelM[v]
	gen := generator(l.ec)
	var blocks, ecs [][]byte
	off, maxLen := 0, 0
	for _, n := range l.blocks {
		blk := data[off : off+n]
		off += n
		blocks = append(blocks, blk)
		ecs = append(ecs, remainder(blk, gen))
		maxLen = max(maxLen, n)
	}
	out := make([]byte, 0, len(data)+l.ec*len(l.blocks))
	for i := range maxLen {
		for _, blk := range blocks {
			if i < len(blk) {
				out = append(out, blk[i])
			}
		}
	}
	for i := range l.ec {
		for _, e := range ecs {
			out = append(out, e[i])
		}
	}
	return out
}

// grid is the symbol under construction plus which modules are function patterns.
type grid struct {
	size     int
	dark     []bool
	function []bool
}

func (g *grid) set(x, y int, dark bool) {
	g.dark[y*g.size+x] = dark
	g.function[y*g.size+x] = true
}

func build(v int, data []byte) *Code {
	size := 17 + 4*v
	g := &grid{size: size, dark: make([]bool, size*size), function: make([]bool, size*size)}
	g.drawFunctionPatterns(v)
	g.drawCodewords(interleave(v, codewords(v, data)))

	best, bestScore := 0, -1
	for mask := range 8 {
		g.applyMask(mask)
		g.drawFormat(mask)
		if s := g.penalty(); bestScore < 0 || s < bestScore {
			best, bestScore = mask, s
		}
		g.applyMask(mask) // XOR again undoes it
	}
	g.applyMask(best)
	g.drawFormat(best)
	return &Code{Version: v, Size: size, Mask: best, modules: g.dark}
}

func (g *grid) drawFunctionPatterns(v int) {
	// Timing patterns first; finders and alignments overwrite their crossings.
	for i := range g.size {
		g.set(6, i, i%2 == 0)
		g.set(i, 6, i%2 == 0)
	}
	g.drawFinder(3, 3)
	g.drawFinder(g.size-4, 3)
	g.drawFinder(3, g.size-4)
	pos := alignment[v]
	for i, cx := range pos {
		for j, cy := range pos {
			// Skip the three corners occupied by finder patterns.
			if (i == 0 && j == 0) || (i == 0 && j == len(pos)-1) || (i == len(pos)-1 && j == 0) {
				continue
			}
			for dy := -2; dy <= 2; dy++ {
				for dx := -2; dx <= 2; dx++ {
					g.set(cx+dx, cy+dy, max(abs(dx), abs(dy)) != 1)
				}
			}
		}
	}
	// Reserve the format areas (drawn per mask later) and the always-dark module.
	g.drawFormat(0)
	if v >= 7 {
		bits := versionBits(v)
		for i := range 18 {
			dark := bits>>uint(i)&1 == 1
			a, b := g.size-11+i%3, i/3
			g.set(a, b, dark)
			g.set(b, a, dark)
		}
	}
}

// drawFinder draws a finder pattern centred at (cx, cy) with its light separator.
func (g *grid) drawFinder(cx, cy int) {
	for dy := -4; dy <= 4; dy++ {
		for dx := -4; dx <= 4; dx++ {
			x, y := cx+dx, cy+dy
			if x < 0 || y < 0 || x >= g.size || y >= g.size {
				continue
			}
			d := max(abs(dx), abs(dy))
			g.set(x, y, d != 2 && d != 4)
		}
	}
}

// drawFormat writes both copies of the 15-bit format information for level M and mask.
func (g *grid) drawFormat(mask int) {
	bits := formatBits(mask)
	bit := func(i int) bool { return bits>>uint(i)&1 == 1 }
	for i := 0; i <= 5; i++ {
		g.set(8, i, bit(i))
	}
	g.set(8, 7, bit(6))
	g.set(8, 8, bit(7))
	g.set(7, 8, bit(8))
	for i := 9; i < 15; i++ {
		g.set(14-i, 8, bit(i))
	}
	for i := range 8 {
		g.set(g.size-1-i, 8, bit(i))
	}
	for i := 8; i < 15; i++ {
		g.set(8, g.size-15+i, bit(i))
	}
	g.set(8, g.size-8, true)
}

// formatBits is the BCH(15,5)-protected, masked format word for level M (bits 00).
func formatBits(mask int) uint {
	data := uint(0b00<<3 | mask)
	rem := data
	for range 10 {
		rem = rem<<1 ^ (rem>>9)*0x537
	}
	return (data<<10 | rem) ^ 0x5412
}

// versionBits is the BCH(18,6)-protected version word for versions 7 and up.
func versionBits(v int) uint {
	rem := uint(v)
	for range 12 {
		rem = rem<<1 ^ (rem>>11)*0x1F25
	}
	return uint(v)<<12 | rem
}

// drawCodewords places the bits in the standard's two-column zigzag, bottom-right first,
// skipping function modules and the vertical timing column.
func (g *grid) drawCodewords(cw []byte) {
	i, total := 0, len(cw)*8
	for right := g.size - 1; right >= 1; right -= 2 {
		if right == 6 {
			right = 5
		}
		upward := (right+1)&2 == 0
		for vert := range g.size {
			y := vert
			if upward {
				y = g.size - 1 - vert
			}
			for j := range 2 {
				x := right - j
				if g.function[y*g.size+x] || i >= total {
					continue
				}
				g.dark[y*g.size+x] = cw[i/8]>>uint(7-i%8)&1 == 1
				i++
			}
		}
	}
}

func (g *grid) applyMask(mask int) {
	for y := range g.size {
		for x := range g.size {
			if g.function[y*g.size+x] {
				continue
			}
			var flip bool
			switch mask {
			case 0:
				flip = (x+y)%2 == 0
			case 1:
				flip = y%2 == 0
			case 2:
				flip = x%3 == 0
			case 3:
				flip = (x+y)%3 == 0
			case 4:
				flip = (y/2+x/3)%2 == 0
			case 5:
				flip = x*y%2+x*y%3 == 0
			case 6:
				flip = (x*y%2+x*y%3)%2 == 0
			case 7:
				flip = ((x+y)%2+x*y%3)%2 == 0
			}
			if flip {
				g.dark[y*g.size+x] = !g.dark[y*g.size+x]
			}
		}
	}
}

// penalty scores a masked symbol by the standard's four rules; lower reads more reliably.
func (g *grid) penalty() int {
	n := g.size
	at := func(x, y int) bool { return g.dark[y*n+x] }
	score := 0
	line := make([]bool, n)
	for pass := range 2 { // rows, then columns
		for a := range n {
			for b := range n {
				if pass == 0 {
					line[b] = at(b, a)
				} else {
					line[b] = at(a, b)
				}
			}
			score += linePenalty(line)
		}
	}
	dark := 0
	for y := range n {
		for x := range n {
			if at(x, y) {
				dark++
			}
			if x < n-1 && y < n-1 {
				c := at(x, y)
				if c == at(x+1, y) && c == at(x, y+1) && c == at(x+1, y+1) {
					score += 3
				}
			}
		}
	}
	// Rule 4: 10 points per 5 % the dark share strays from 50 %.
	pct := dark * 100 / (n * n)
	score += abs(pct-50) / 5 * 10
	return score
}

// finderLike are the 1:1:3:1:1 patterns with four light modules on one side (rule 3).
var finderLike = [2][]bool{
	{true, false, true, true, true, false, true, false, false, false, false},
	{false, false, false, false, true, false, true, true, true, false, true},
}

func linePenalty(line []bool) int {
	score, run := 0, 1
	for i := 1; i <= len(line); i++ {
		if i < len(line) && line[i] == line[i-1] {
			run++
			continue
		}
		if run >= 5 {
			score += 3 + run - 5
		}
		run = 1
	}
	for i := 0; i+11 <= len(line); i++ {
		for _, p := range finderLike {
			match := true
			for k, want := range p {
				if line[i+k] != want {
					match = false
					break
				}
			}
			if match {
				score += 40
			}
		}
	}
	return score
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
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
