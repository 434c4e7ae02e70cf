package qr

import (
	"errors"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestLayoutFillsSymbol checks the block table against the module count: every version's
// data plus EC codewords must exactly fill the modules left after the function patterns.
func TestLayoutFillsSymbol(t *testing.T) {
	t.Parallel()
	for v := 1; v <= MaxVersion; v++ {
		size := 17 + 4*v
		g := &grid{size: size, dark: make([]bool, size*size), function: make([]bool, size*size)}
		g.drawFunctionPatterns(v)
		free := 0
		for _, f := range g.function {
			if !f {
				free++
			}
		}
		l := levelM[v]
		cw := dataCodewords(v) + l.ec*len(l.blocks)
		if free/8 != cw {
			t.Errorf("version %d: %d free modules hold %d codewords, table says %d", v, free, free/8, cw)
		}
	}
}

// TestReedSolomonRoots checks the defining property of the EC codewords: data followed by EC,
// read as a polynomial, vanishes at α^0 … α^(n-1).
func TestReedSolomonRoots(t *testing.T) {
	t.Parallel()
	data := []byte("meshbox reed-solomon check block")
	for _, n := range []int{10, 16, 18, 22, 24, 26} {
		cw := append(append([]byte{}, data...), remainder(data, generator(n))...)
		alpha := byte(1)
		for i := range n {
			var acc byte // Horner evaluation at alpha
			for _, c := range cw {
				acc = gfMul(acc, alpha) ^ c
			}
			if acc != 0 {
				t.Errorf("degree %d: codeword is not zero at α^%d", n, i)
			}
			alpha = gfMul(alpha, 2)
		}
	}
}

func TestFormatBitsKnownValue(t *testing.T) {
	t.Parallel()
	// The all-zero data word with mask pattern 0 at level M is 0x5412 after masking: the mask
	// exists so that this word is never all zero.
	if got := formatBits(0); got != 0x5412 {
		t.Errorf("formatBits(0) = %#x, want 0x5412", got)
	}
	// Version 7's word is listed in the standard: 0x07C94.
	if got := versionBits(7); got != 0x07C94 {
		t.Errorf("versionBits(7) = %#x, want 0x7c94", got)
	}
}

func TestEncodeChoosesVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		n, version int
	}{{1, 1}, {14, 1}, {15, 2}, {42, 3}, {180, 9}, {181, 10}, {213, 10}} {
		c, err := Encode(strings.Repeat("a", tc.n))
		if err != nil {
			t.Fatalf("%d bytes: %v", tc.n, err)
		}
		if c.Version != tc.version || c.Size != 17+4*tc.version {
			t.Errorf("%d bytes: version %d size %d, want version %d", tc.n, c.Version, c.Size, tc.version)
		}
	}
	if _, err := Encode(strings.Repeat("a", 214)); !errors.Is(err, ErrTooLong) {
		t.Errorf("214 bytes: err = %v, want ErrTooLong", err)
	}
}

func TestSVG(t *testing.T) {
	t.Parallel()
	c, err := Encode("http://10.0.0.2:8080/")
	if err != nil {
		t.Fatal(err)
	}
	s := c.SVG()
	if !strings.HasPrefix(s, "<svg") || !strings.Contains(s, `viewBox="0 0 33 33"`) || !strings.HasSuffix(s, "</svg>") {
		t.Errorf("svg = %.120s…", s)
	}
}

// TestDecodeWithZbar renders codes of every version and reads them back with zbarimg, an
// independent decoder: the only real proof that phones will scan them.
func TestDecodeWithZbar(t *testing.T) {
	t.Parallel()
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		if os.Getenv("MESHBOX_E2E") == "1" {
			t.Fatal("zbarimg not found (apt-get install zbar-tools)")
		}
		t.Skip("zbarimg not installed; set MESHBOX_E2E=1 to require it")
	}
	texts := []string{
		"http://192.168.1.20:8080/",
		"http://meshbox.local:8080/try",
		"https://a.example/" + strings.Repeat("x", 50),
		strings.Repeat("0123456789", 12) + "é✓",
		strings.Repeat("z", 200),
	}
	for v := 1; v <= MaxVersion; v++ { // one text filling each version exactly
		texts = append(texts, strings.Repeat(string(rune('A'+v)), capacity(v)))
	}
	dir := t.TempDir()
	for i, text := range texts {
		c, err := Encode(text)
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, "code.png")
		writePNG(t, c, file)
		out, err := exec.Command(zbar, "--quiet", "--raw", "-Sqrcode.enable", "-Sbinary", file).Output()
		if err != nil {
			t.Errorf("text %d (version %d, mask %d): zbarimg could not decode: %v", i, c.Version, c.Mask, err)
			continue
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != text {
			t.Errorf("text %d (version %d): decoded %q, want %q", i, c.Version, got, text)
		}
	}
}

func writePNG(t *testing.T, c *Code, path string) {
	t.Helper()
	const scale, quiet = 6, 4
	dim := (c.Size + 2*quiet) * scale
	img := image.NewGray(image.Rect(0, 0, dim, dim))
	for y := range dim {
		for x := range dim {
			mx, my := x/scale-quiet, y/scale-quiet
			v := color.Gray{Y: 255}
			if mx >= 0 && my >= 0 && mx < c.Size && my < c.Size && c.Dark(mx, my) {
				v = color.Gray{Y: 0}
			}
			img.SetGray(x, y, v)
		}
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := png.Encode(f, img); err != nil {
		t.Fatal(err)
	}
}
