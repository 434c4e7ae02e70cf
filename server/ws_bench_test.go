package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"meshbox/live"
	"meshbox/stream"
)

// BenchmarkWebSocketFrameWrite is one delivery over a WebSocket: the items frame built by
// hand from the items' stored JSON and written through the connection layer to a real
// connection on loopback (a client reads and discards).
func BenchmarkWebSocketFrameWrite(b *testing.B) {
	conns := make(chan *live.Socket, 1)
	done := make(chan struct{})
	m := live.New(context.Background(), live.Config{WriteTimeout: 15 * time.Second})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := m.Accept(w, r, "bench", "ws", nil, nil)
		if err != nil {
			return
		}
		conns <- c
		<-done
	}))
	defer srv.Close()
	defer close(done)
	client, _, err := websocket.Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer client.CloseNow()
	go func() {
		for {
			_, r, err := client.Reader(context.Background())
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
		}
	}()
	sock := <-conns
	defer sock.Drop(live.Shutdown)
	payload := strings.Repeat("x", 64)
	items := []stream.Item{{Cursor: 4242, Kind: stream.KindEvent, Node: "n1", Name: "go", Payload: &payload,
		At: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)}}
	items[0].JSON = stream.EncodeItem(items[0])
	frame := func(buf []byte) []byte {
		buf = append(buf[:0], `{"type":"items","items":`...)
		buf = appendItems(buf, items)
		buf = append(buf, `,"next":`...)
		buf = strconv.AppendInt(buf, items[0].Cursor, 10)
		return append(buf, '}')
	}
	buf := make([]byte, 0, 4096)
	// write: as a flush that may wait (a slow client's own goroutine) writes.
	b.Run("write", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = frame(buf)
			if err := sock.Write(buf); err != nil {
				b.Fatal(err)
			}
		}
	})
	// offer: as the flush workers write (never waiting; the client here keeps up, so the rest
	// to finish is rare).
	b.Run("offer", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			buf = frame(buf)
			finish, err := sock.Offer(buf)
			if err == nil && finish != nil {
				err = finish()
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
}
