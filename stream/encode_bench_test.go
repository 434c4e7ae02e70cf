package stream_test

import (
	"strings"
	"testing"
	"time"

	"meshbox/stream"
)

// BenchmarkEncodeItem is the one encoding every item gets, on the writer, before commit.
func BenchmarkEncodeItem(b *testing.B) {
	payload := strings.Repeat("x", 64)
	it := stream.Item{Cursor: 4242, Kind: stream.KindEvent, Node: "n1", Name: "go", Payload: &payload,
		At: time.Date(2026, 11, 23, 8, 0, 0, 123e6, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		_ = stream.EncodeItem(it)
	}
}
