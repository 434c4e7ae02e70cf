package bench

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// wsFrame builds an items frame like the server sends, n items long.
func wsFrame(run string, n int) []byte {
	items := make([]string, n)
	p := stamp(run, time.Now(), 64)
	for i := range items {
		items[i] = fmt.Sprintf(`{"cursor":%d,"kind":"event","node":"n1","name":"bench","payload":%q,"at":"2026-11-23T08:00:00.123Z"}`, 1000+i, p)
	}
	return []byte(`{"type":"items","items":[` + strings.Join(items, ",") + `],"next":` + fmt.Sprint(1000+n-1) + `}`)
}

// BenchmarkReaderFrame measures the tool's own cost per received item, the
// share of the machine the load generator takes from the server.
func BenchmarkReaderFrame(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			frame := wsFrame("r1", n)
			stats := &streamStats{}
			r := &reader{run: "r1", stats: stats}
			var msg wsMessage
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for i := 0; b.Loop(); i++ {
				r.track = tracker{}
				if err := decodeWSMessage(frame, &msg); err != nil {
					b.Fatal(err)
				}
				r.handle(msg.Items, time.Now())
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/item")
		})
	}
}
