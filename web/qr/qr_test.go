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

func TestEncodeBounds(t *testing.T) {
	t.Parallel()
	c, err := Encode(strings.Repeat("a", MaxBytes))
	if err != nil || c.Size != 17+4*10 {
		t.Fatalf("%d bytes: %v (size %v), want version 10", MaxBytes, err, c)
	}
	if _, err := Encode(strings.Repeat("a", MaxBytes+1)); !errors.Is(err, ErrTooLong) {
		t.Errorf("%d bytes: err = %v, want ErrTooLong", MaxBytes+1, err)
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
	for n := 1; n <= MaxBytes; n += 17 { // lengths across the versions
		texts = append(texts, strings.Repeat("meshbox/", n/8+1)[:n])
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
			t.Errorf("text %d (size %d): zbarimg could not decode: %v", i, c.Size, err)
			continue
		}
		if got := strings.TrimSuffix(string(out), "\n"); got != text {
			t.Errorf("text %d (size %d): decoded %q, want %q", i, c.Size, got, text)
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
