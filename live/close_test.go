package live

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// rawClient is a WebSocket client that writes frames byte by byte as the Autobahn test suite
// does, so a test can send what a well-behaved library never would (a frame after its close, a
// close code that may not be sent) and see exactly what comes back, down to TCP's end.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawClient {
	t.Helper()
	host := strings.TrimPrefix(url, "http://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second)) // an outer bound, never reached when it works
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return &rawClient{t: t, nc: nc, br: br}
}

// send writes one masked frame.
func (c *rawClient) send(op ws.OpCode, fin bool, payload []byte) {
	c.t.Helper()
	var mask [4]byte
	rand.Read(mask[:])
	p := bytes.Clone(payload)
	ws.Cipher(p, mask, 0)
	h := ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: int64(len(p))}
	if err := ws.WriteHeader(c.nc, h); err != nil {
		c.t.Fatalf("write header: %v", err)
	}
	if _, err := c.nc.Write(p); err != nil {
		c.t.Fatalf("write payload: %v", err)
	}
}

func closeBody(code uint16, text string) []byte {
	return append([]byte{byte(code >> 8), byte(code)}, text...)
}

// frame reads the next frame from the server.
func (c *rawClient) frame() (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(c.br, p)
	return h, p, err
}

// untilClose reads frames until the server's close frame and returns the text messages before
// it and the close code; then it checks the server ended TCP cleanly (FIN, not a reset).
func (c *rawClient) untilClose() (texts [][]byte, code uint16) {
	c.t.Helper()
	for {
		h, p, err := c.frame()
		if err != nil {
			c.t.Fatalf("after %d messages, no close frame: %v", len(texts), err)
		}
		switch h.OpCode {
		case ws.OpText:
			texts = append(texts, p)
		case ws.OpClose:
			if len(p) >= 2 {
				code = uint16(p[0])<<8 | uint16(p[1])
			}
			// The client answers and waits for the server's end.
			c.send(ws.OpClose, true, p[:min(len(p), 2)])
			if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
				c.t.Fatalf("after the close frame: %v, want the server's clean end (EOF, not a reset)", err)
			}
			return texts, code
		}
	}
}

func echoServer(t testing.TB, limit int64) string {
	t.Helper()
	m := New(context.Background(), Config{})
	srv, ended := serveEcho(t, m, nil, limit)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() { // serveEcho reports each end; nobody here waits for them
		for {
			select {
			case <-ended:
			case <-done:
				return
			}
		}
	}()
	return srv.URL
}

// TestCloseArrivesAfterTrailingFrames (Autobahn 7.1.6 and the "0 of 1,201 items"): a
// client sends a big message and 200 small ones without reading the echoes, then its close,
// then a ping after the close. Every echo written before the close, and the close frame, still
// reach it, and TCP ends with a FIN: the server reads what came after the close instead of
// closing with unread input (which makes Linux reset the connection and throw away what is
// queued for the client).
func TestCloseArrivesAfterTrailingFrames(t *testing.T) {
	t.Parallel()
	c := dialRaw(t, echoServer(t, 1<<20))
	big := bytes.Repeat([]byte("*"), 256<<10)
	c.send(ws.OpText, true, big)
	for range 200 {
		c.send(ws.OpText, true, []byte("item"))
	}
	c.send(ws.OpClose, true, closeBody(1000, ""))
	c.send(ws.OpPing, true, []byte("after close"))
	texts, code := c.untilClose()
	if len(texts) != 201 || len(texts[0]) != len(big) {
		t.Fatalf("got %d echoes before the close, want 201 (the big one first)", len(texts))
	}
	if code != 1000 {
		t.Fatalf("close code %d, want 1000 echoed", code)
	}
}

// TestInvalidCloseCodesFailWith1002 (Autobahn 7.13.1, 7.13.2 and 7.9.x): a close code a client
// may not send is answered with 1002, not echoed; valid ones are echoed.
func TestInvalidCloseCodesFailWith1002(t *testing.T) {
	t.Parallel()
	url := echoServer(t, 0)
	for _, tc := range []struct {
		code, want uint16
	}{
		{5000, 1002}, {65535, 1002}, {0, 1002}, {999, 1002}, {1004, 1002}, {1005, 1002}, {1006, 1002},
		{1015, 1002}, {1016, 1002}, {2000, 1002}, {2999, 1002},
		{1000, 1000}, {1001, 1001}, {1011, 1011}, {3000, 3000}, {4999, 4999},
	} {
		c := dialRaw(t, url)
		c.send(ws.OpClose, true, closeBody(tc.code, ""))
		if _, got := c.untilClose(); got != tc.want {
			t.Errorf("client close %d: server closed with %d, want %d", tc.code, got, tc.want)
		}
	}
	// A close reason that is not UTF-8 is a protocol error too (Autobahn 7.5.1).
	c := dialRaw(t, url)
	c.send(ws.OpClose, true, closeBody(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80"))
	if _, got := c.untilClose(); got != 1002 {
		t.Errorf("close reason not UTF-8: server closed with %d, want 1002", got)
	}
}

// TestServerClosesArriveWithTheirCode: a message over the read limit (1009) and a bad frame
// (1002) reach the client as those codes, with a clean end, even while it keeps sending:
// before, the reset that followed turned them into 1006 at the client.
func TestServerClosesArriveWithTheirCode(t *testing.T) {
	t.Parallel()
	url := echoServer(t, 1024)
	c := dialRaw(t, url)
	c.send(ws.OpText, true, bytes.Repeat([]byte("x"), 2048))
	for range 50 {
		c.send(ws.OpText, true, []byte("still talking"))
	}
	if _, code := c.untilClose(); code != 1009 {
		t.Errorf("message over the limit: close %d, want 1009", code)
	}
	c = dialRaw(t, url)
	c.send(ws.OpCode(3), true, []byte("reserved opcode"))
	c.send(ws.OpText, true, []byte("more"))
	if _, code := c.untilClose(); code != 1002 {
		t.Errorf("reserved opcode: close %d, want 1002", code)
	}
	c = dialRaw(t, url)
	c.send(ws.OpText, true, []byte{0xff, 0xfe})
	if _, code := c.untilClose(); code != 1007 {
		t.Errorf("text not UTF-8: close %d, want 1007", code)
	}
	// A text message split so that a character spans two frames is valid (Autobahn 6.x).
	c = dialRaw(t, url)
	c.send(ws.OpText, false, []byte("\xce"))
	c.send(ws.OpContinuation, true, []byte("\xba"))
	if _, p, err := c.frame(); err != nil || string(p) != "Κ" { // echoed upper-case
		t.Errorf("split character: %q %v", p, err)
	}
}
