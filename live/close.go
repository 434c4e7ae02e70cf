package live

import "github.com/coder/websocket"

// Reason is why a connection ended: a WebSocket close code and text, distinct per cause (as
// centrifuge's disconnect codes are), so a client and a log can tell a slow client from a
// restart.
type Reason struct {
	Code websocket.StatusCode
	Text string
}

// The reasons a connection ends for.
var (
	// Ended: the group the connection follows has ended; there is nothing more to send.
	Ended = Reason{websocket.StatusNormalClosure, "group dissolved"}
	// Shutdown: the server is restarting; reconnect (by cursor) in a moment.
	Shutdown = Reason{websocket.StatusServiceRestart, "server restarting, reconnect"}
	// Slow: the client's writes stalled (it reads nothing); it is dropped without a close
	// handshake, which would wait for it too, and may resume by cursor.
	Slow = Reason{4008, "slow client: writes stalled"}
	// Reset: the peer reset the connection or stopped answering pings; nothing can reach it.
	Reset = Reason{4009, "connection reset: no answer from the client"}
	// Internal: reading the stream failed on the server.
	Internal = Reason{websocket.StatusInternalError, "internal error: stream failed"}
	// BadFrame: a text frame that is not UTF-8 (RFC 6455 §8.1).
	BadFrame = Reason{websocket.StatusInvalidFramePayloadData, "text frame is not valid UTF-8"}
	// PeerGone: the client closed or its read failed.
	PeerGone = Reason{websocket.StatusGoingAway, "connection closed"}
)

// String is the reason as logs show it.
func (r Reason) String() string { return r.Text }
