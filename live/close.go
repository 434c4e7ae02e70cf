package live

// Reason is why a connection ended: a WebSocket close code and text, distinct per cause (as
// centrifuge's disconnect codes are), so a client and a log can tell a slow client from a
// restart.
type Reason struct {
	Code uint16
	Text string
}

// The reasons a connection ends for.
var (
	// Ended: the group the connection follows has ended; there is nothing more to send.
	Ended = Reason{1000, "group dissolved"}
	// Shutdown: the server is restarting; reconnect (by cursor) in a moment.
	Shutdown = Reason{1012, "server restarting, reconnect"}
	// Slow: the client's writes stalled (it reads nothing); it is dropped without a close
	// handshake, which would wait for it too, and may resume by cursor.
	Slow = Reason{4008, "slow client: writes stalled"}
	// Reset: the peer reset the connection or stopped answering pings; nothing can reach it.
	Reset = Reason{4009, "connection reset: no answer from the client"}
	// Internal: reading the stream failed on the server.
	Internal = Reason{1011, "internal error: stream failed"}
	// BadFrame: a text frame that is not UTF-8 (RFC 6455 §8.1).
	BadFrame = Reason{1007, "text frame is not valid UTF-8"}
	// TooBig: a client message over the read limit.
	TooBig = Reason{1009, "message too big"}
	// Protocol: the client broke the WebSocket protocol (an unmasked frame, a bad opcode).
	Protocol = Reason{1002, "protocol error"}
	// PeerGone: the client closed or its read failed.
	PeerGone = Reason{1001, "connection closed"}
	// Busy: the server is at its connection budget and this client's address holds more
	// than its share, so its oldest stream made room for a lighter address's connection
	// (1013, "try again later"). The client may come back by cursor after a few seconds;
	// an SSE stream gets a busy event with a retry hint first.
	Busy = Reason{1013, "server busy: your address holds more than its share of connections"}
)

// GoneCode is the close code of a connection whose node is no longer a member of its group:
// removed by the host or the teacher, expired, or left (from another tab or device). The
// client has had every item up to and including its own leave item and nothing after it; it
// must not reconnect, since its token opens nothing any more. An SSE stream gets a "gone"
// event before its end instead (see Stream.Close).
const GoneCode = 4003

// NodeGone is the reason a connection of a node that left its group ends with: GoneCode, with
// the leave item's reason (removed, expired, left) as the close text, so a client tells the
// pupil why without parsing prose.
func NodeGone(leaveReason string) Reason {
	if leaveReason == "" {
		leaveReason = "removed"
	}
	return Reason{GoneCode, leaveReason}
}

// String is the reason as logs show it.
func (r Reason) String() string { return r.Text }
