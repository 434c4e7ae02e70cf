package live

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// fuzzReadLimit is the echo server's read limit in FuzzSocketFrames: above any message the
// script makes (at most 2,040 bytes), so only the random tail can reach it.
const fuzzReadLimit = 1 << 16

// fuzzMessage is one data message of the reference: what the client sends and what the echo
// server must send back whole.
type fuzzMessage struct {
	op   ws.OpCode
	data []byte
}

// fuzzScript reads the fuzz input a byte at a time; past its end it reads zeros.
type fuzzScript struct{ b []byte }

func (s *fuzzScript) next() byte {
	if len(s.b) == 0 {
		return 0
	}
	c := s.b[0]
	s.b = s.b[1:]
	return c
}

func (s *fuzzScript) take(n int) []byte {
	n = min(n, len(s.b))
	p := s.b[:n]
	s.b = s.b[n:]
	return p
}

// clientStream turns the script into the bytes a client sends (every frame masked, each
// with its own key) and the reference: the messages, as the echo server must answer them,
// and the payloads of the pings, in order. Each message is text (made valid UTF-8) or
// binary, split into up to four fragments at points the script chooses (empty fragments and
// characters split across fragments included), with pings, unsolicited pongs or both between
// the fragments and between messages.
func clientStream(script []byte) (stream []byte, want []fuzzMessage, pings [][]byte) {
	s := &fuzzScript{b: script}
	var buf bytes.Buffer
	frames := 0
	frame := func(op ws.OpCode, fin bool, payload []byte) {
		frames++
		mask := [4]byte{byte(frames), byte(frames * 7), byte(frames * 13), 0x5a}
		p := bytes.Clone(payload)
		ws.Cipher(p, mask, 0)
		_ = ws.WriteHeader(&buf, ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: int64(len(p))})
		buf.Write(p)
	}
	control := func() {
		c := s.next()
		n := int(c>>2) % 126 // a control frame's payload is at most 125 bytes
		if c&1 != 0 {
			p := bytes.Clone(s.take(n))
			frame(ws.OpPing, true, p)
			pings = append(pings, p)
		}
		if c&2 != 0 {
			frame(ws.OpPong, true, s.take(n/2))
		}
	}
	for len(s.b) > 0 && len(want) < 64 {
		kind := s.next()
		op := ws.OpText
		if kind&1 != 0 {
			op = ws.OpBinary
		}
		data := bytes.Clone(s.take(int(s.next()) * (1 + int(kind>>5))))
		if op == ws.OpText {
			data = []byte(strings.ToValidUTF8(string(data), "?"))
		}
		echo := data
		if op == ws.OpText {
			echo = []byte(strings.ToUpper(string(data)))
		}
		if string(echo) == "BYE" { // the echo server's word to end
			data, echo = append(data, '!'), append(echo, '!')
		}
		cuts := make([]int, 1+int(kind>>1&3))
		for i := range cuts[1:] {
			cuts[i+1] = int(s.next()) % (len(data) + 1)
		}
		slices.Sort(cuts)
		cuts = append(cuts, len(data))
		for i := range len(cuts) - 1 {
			fop := op
			if i > 0 {
				fop = ws.OpContinuation
			}
			frame(fop, i == len(cuts)-2, data[cuts[i]:cuts[i+1]])
			control()
		}
		want = append(want, fuzzMessage{op, echo})
	}
	return buf.Bytes(), want, pings
}

// fuzzDial opens a WebSocket to url as rawClient does, returning errors instead of failing.
func fuzzDial(url string) (net.Conn, *bufio.Reader, error) {
	host := strings.TrimPrefix(url, "http://")
	nc, err := net.Dial("tcp", host)
	if err != nil {
		return nil, nil, err
	}
	// An outer bound, never reached when it works: a hang fails the input, not the run.
	_ = nc.SetDeadline(time.Now().Add(20 * time.Second))
	req := "GET / HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		nc.Close()
		return nil, nil, err
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, nil, fmt.Errorf("upgrade: %v %v", resp, err)
	}
	return nc, br, nil
}

// FuzzSocketFrames checks the frame reader of Socket against a reference. The first input is
// a script of client messages (see clientStream); the second, when not empty, is random bytes
// sent after them. A writer sends the stream (then a close 1000, or the random tail) and
// half-closes while the test reads what comes back:
//   - every message of the script comes back whole and in order, and every ping gets its pong,
//     in order, before the server's close, random tail or not;
//   - without a tail the server echoes the close 1000; with one it ends with a close frame
//     saying 1002 (protocol), 1007 (not UTF-8), 1009 (too big), echoing the code of a close
//     frame in the tail, or with none (the client's end, or a close without a code) — never
//     1011 "internal error", which is what a panic while reading turns into;
//   - either way the connection then ends cleanly (a FIN, not a reset).
func FuzzSocketFrames(f *testing.F) {
	url := echoServer(f, fuzzReadLimit)
	f.Fuzz(func(t *testing.T, script, tail []byte) { checkSocketFrames(t, url, script, tail) })
}

// checkSocketFrames is one run of FuzzSocketFrames against the echo server at url.
func checkSocketFrames(t *testing.T, url string, script, tail []byte) {
	stream, want, pings := clientStream(script)
	nc, br, err := fuzzDial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	wrote := make(chan error, 1)
	go func() {
		_, err := nc.Write(stream)
		if err == nil {
			if len(tail) == 0 {
				var mask [4]byte
				_ = ws.WriteHeader(nc, ws.Header{Fin: true, OpCode: ws.OpClose, Masked: true, Mask: mask, Length: 2})
				_, err = nc.Write([]byte{0x03, 0xe8}) // 1000, under a zero mask
			} else {
				_, _ = nc.Write(tail) // the server may well have closed on it already
			}
		}
		_ = nc.(*net.TCPConn).CloseWrite()
		wrote <- err
	}()

	var got []fuzzMessage
	var pongs [][]byte
	closed, code, text := false, -1, ""
	for !closed {
		h, err := ws.ReadHeader(br)
		if err != nil {
			if len(tail) > 0 && errors.Is(err, io.EOF) {
				break // an end without a close frame: clean, but the echoes must be there
			}
			t.Fatalf("after %d of %d echoes and %d of %d pongs: %v", len(got), len(want), len(pongs), len(pings), err)
		}
		if h.Masked || !h.Fin { // a server masks nothing, and this one never fragments
			t.Fatalf("server frame %+v", h)
		}
		p := make([]byte, h.Length)
		if _, err := io.ReadFull(br, p); err != nil {
			t.Fatalf("frame payload: %v", err)
		}
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			got = append(got, fuzzMessage{h.OpCode, p})
		case ws.OpPong:
			pongs = append(pongs, p)
		case ws.OpClose:
			closed = true
			if len(p) >= 2 {
				code, text = int(p[0])<<8|int(p[1]), string(p[2:])
			}
		}
	}
	// A clean end: EOF, not a reset, after the close frame.
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("after the close (code %d): %v, want the server's clean end", code, err)
	}
	if err := <-wrote; err != nil && len(tail) == 0 {
		t.Fatalf("write: %v", err)
	}

	if len(got) < len(want) || len(pongs) < len(pings) {
		t.Fatalf("got %d of %d echoes and %d of %d pongs (close %d)", len(got), len(want), len(pongs), len(pings), code)
	}
	for i, w := range want {
		if got[i].op != w.op || !bytes.Equal(got[i].data, w.data) {
			t.Fatalf("echo %d: %v %q, want %v %q", i, got[i].op, got[i].data, w.op, w.data)
		}
	}
	for i, p := range pings {
		if !bytes.Equal(pongs[i], p) {
			t.Fatalf("pong %d: %q, want %q", i, pongs[i], p)
		}
	}
	if len(tail) == 0 {
		if len(got) != len(want) || len(pongs) != len(pings) || code != 1000 {
			t.Fatalf("%d echoes, %d pongs, close %d; want %d, %d, 1000", len(got), len(pongs), code, len(want), len(pings))
		}
		return
	}
	switch r := (Reason{uint16(code), text}); {
	case code == -1, r == Protocol, r == BadFrame, r == TooBig:
	case r == Internal:
		t.Fatalf("the tail %q made the reader fail inside (1011: a panic)", tail)
	case validCloseCode(uint16(code)) && text == "":
		// The tail held a close frame of its own, whose code the server echoes.
	default:
		t.Fatalf("the tail %q ended with close %d %q", tail, code, text)
	}
}
