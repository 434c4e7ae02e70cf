package config

import (
	"fmt"
)

// ParseBytes reads a positive size such as "256MiB", "1GiB", "300MB" or "1048576" (bytes),
// as the size settings do.
func ParseBytes(s string) (int64, error) {
	n, ok := parseSize(s)
	if !ok || n <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	return n, nil
}

// validHostLabel reports whether s can stand before .local: one DNS label (RFC 1123).
func validHostLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
