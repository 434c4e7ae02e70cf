package meshv2

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"meshbox/apierror"
	"meshbox/live"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
)

// AppSync real-time protocol limits.
const (
	rtSubprotocol    = "graphql-ws"
	rtReadLimit      = 256 << 10
	rtMaxIDLen       = 128
	rtInitTimeout    = 30 * time.Second
	rtOutQueueFrames = 64
)

// rtMessage is every message of the protocol, both ways.
type rtMessage struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// rtStartPayload is a start message's payload: the GraphQL request as a JSON string, and
// the auth headers the client would have sent over HTTP.
type rtStartPayload struct {
	Data       string `json:"data"`
	Extensions struct {
		Authorization map[string]string `json:"authorization"`
	} `json:"extensions"`
}

type rtError struct {
	ErrorType string `json:"errorType"`
	Message   string `json:"message"`
	ErrorCode int    `json:"errorCode,omitempty"`
}

type rtConn struct {
	h      *Handler
	ws     *live.Socket
	ctx    context.Context
	cancel context.CancelFunc
	out    chan []byte
	// headerKey is the x-api-key of the connection's header query parameter.
	headerKey string
	acked     atomic.Bool

	mu   sync.Mutex
	subs map[string]*rtSub
	wg   sync.WaitGroup
}

type rtSub struct {
	cancel context.CancelFunc
	done   chan struct{}
	ended  *onEnd
}

// onEnd holds what a subscription's resolver must undo when the subscription ends (the
// attribution of its node's presence). The connection runs it when it drops the
// subscription, so a stop has taken effect by the time complete is sent; the resolver's own
// goroutine runs it too, for subscriptions that end otherwise. It runs once.
type onEnd struct {
	once sync.Once
	mu   sync.Mutex
	fn   func()
	// failure, when set, is the error the subscription ended with (its node left the
	// group): the connection sends it instead of complete.
	failure *rtError
}

type onEndKey struct{}

// socketKey marks, in a subscription's context, the live.Socket it runs on, so a subscription
// attributed to a node hands that node the socket's round trips.
type socketKey struct{}

// atEnd registers fn to run when the subscription of ctx ends; without a connection (a
// direct Subscribe call) the caller's own cleanup is all there is.
func atEnd(ctx context.Context, fn func()) {
	if e, ok := ctx.Value(onEndKey{}).(*onEnd); ok {
		e.mu.Lock()
		e.fn = fn
		e.mu.Unlock()
	}
}

// endWith records the error the subscription of ctx ends with; its resolver then closes its
// channel. Without a connection there is nobody to tell.
func endWith(ctx context.Context, e rtError) {
	if end, ok := ctx.Value(onEndKey{}).(*onEnd); ok {
		end.mu.Lock()
		end.failure = &e
		end.mu.Unlock()
	}
}

// failed returns the error recorded by endWith, or nil.
func (e *onEnd) failed() *rtError {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failure
}

func (e *onEnd) run() {
	e.once.Do(func() {
		e.mu.Lock()
		fn := e.fn
		e.mu.Unlock()
		if fn != nil {
			fn()
		}
	})
}

// startedKey marks, in a subscription's context, a flag the resolver sets once the
// subscription is live, so start_ack is sent only for subscriptions that really started.
type startedKey struct{}

func markStarted(ctx context.Context) {
	if f, ok := ctx.Value(startedKey{}).(*atomic.Bool); ok {
		f.Store(true)
	}
}

// serveRealtime speaks the AppSync real-time protocol over a socket of package live (which
// registers it, charges it to the caller's address, pings it, drops it when its writes stall
// and closes it with 1012 at shutdown). The upgrade is accepted without credentials because
// the Smalruby client probes reachability with a bare connection; the API key is checked at
// connection_init and at each start.
func (h *Handler) serveRealtime(w http.ResponseWriter, r *http.Request) {
	if h.cfg.NoWebSocket {
		writeHTTPError(w, http.StatusForbidden, "WebSocketDisabled", "WebSocket is disabled on this server: poll instead")
		return
	}
	// The editor is served from another origin by design; access is governed by the API
	// key, not by the page's origin.
	ws, err := h.conns.Accept(w, r, h.cfg.ClientIP(r), "graphql_ws", &live.AcceptOptions{
		Subprotocols: []string{rtSubprotocol},
	}, h.log)
	if err != nil {
		if !live.Answered(err) {
			a := apierror.Of(err)
			if a.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(int(a.RetryAfter.Seconds())))
			}
			writeHTTPError(w, a.Status, a.MeshType, a.Message)
		}
		return
	}
	ws.SetReadLimit(rtReadLimit)

	// The connection lives until the client goes, the server shuts down or a write fails.
	// The socket's reader does not end with this context: clients should get 1012 on
	// shutdown (the socket sends it) so they reconnect.
	ctx, cancel := context.WithCancel(withCaller(r.Context(), caller{domain: h.cfg.DomainFor(r), ip: h.cfg.ClientIP(r)}))
	ctx = context.WithValue(ctx, socketKey{}, ws)
	stopSock := context.AfterFunc(ws.Context(), cancel)
	defer stopSock()
	// When the connection's work ends, the socket goes too, which ends the read loop.
	stopEnd := context.AfterFunc(ctx, func() {
		if ws.ShuttingDown() {
			ws.Close(live.Shutdown)
			return
		}
		ws.Drop(live.PeerGone)
	})
	defer stopEnd()
	c := &rtConn{h: h, ws: ws, ctx: ctx, cancel: cancel, out: make(chan []byte, rtOutQueueFrames), subs: map[string]*rtSub{}}
	c.headerKey = requestAPIKey(r)

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		defer cancel()
		c.writeLoop()
	}()
	if c.readLoop() {
		// The client is to get what is queued (a connection_error) before the socket goes:
		// the writer sends everything before the end mark, then returns.
		select {
		case c.out <- nil:
		case <-ctx.Done():
		}
		<-writerDone
	}
	cancel()
	c.wg.Wait()
	c.mu.Lock()
	for _, sub := range c.subs {
		sub.ended.run()
	}
	c.mu.Unlock()
	<-writerDone
	ws.Release(live.PeerGone)
}

// requestAPIKey is the API key a real-time connection was opened with. AppSync takes the
// connection's auth headers in two spellings, and so does meshbox: the aws-appsync client
// (Smalruby's) sends them as the `header` query parameter, Amplify 6 as a WebSocket
// subprotocol `header-<base64url of the headers' JSON>` offered beside graphql-ws, with no
// query. That subprotocol is never chosen (only graphql-ws is), as AppSync answers.
func requestAPIKey(r *http.Request) string {
	if q := r.URL.Query().Get("header"); q != "" {
		return headerAPIKey(q)
	}
	for _, field := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(field, ",") {
			if enc, ok := strings.CutPrefix(strings.TrimSpace(p), "header-"); ok {
				return headerAPIKey(enc)
			}
		}
	}
	return ""
}

// headerAPIKey decodes the base64 (standard or URL alphabet, padded or not) JSON of the auth
// headers and returns its key.
func headerAPIKey(param string) string {
	if param == "" {
		return ""
	}
	var raw []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if raw, err = enc.DecodeString(param); err == nil {
			break
		}
	}
	if err != nil {
		return ""
	}
	var hdr map[string]any
	if json.Unmarshal(raw, &hdr) != nil {
		return ""
	}
	for k, v := range hdr {
		if s, ok := v.(string); ok && equalFoldASCII(k, "x-api-key") {
			return s
		}
	}
	return ""
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// writeLoop is the connection's only writer: queued frames and keep-alives. A nil frame
// marks the end: everything queued before it has been written. Pings and stalled writes are
// the socket's (package live).
func (c *rtConn) writeLoop() {
	ka := time.NewTicker(c.h.cfg.KeepAliveInterval)
	defer ka.Stop()
	initDeadline := time.NewTimer(rtInitTimeout)
	defer initDeadline.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case b := <-c.out:
			if b == nil || c.ws.Write(b) != nil {
				return
			}
		case <-initDeadline.C:
			if !c.acked.Load() {
				c.h.log.Debug("realtime connection without connection_init closed")
				return
			}
		case <-ka.C:
			if !c.acked.Load() {
				continue
			}
			if c.ws.Write([]byte(`{"type":"ka"}`)) != nil {
				return
			}
		}
	}
}

// send queues a message for the writer; false when the connection is gone.
func (c *rtConn) send(m rtMessage) bool {
	b, err := json.Marshal(m)
	if err != nil {
		return false
	}
	select {
	case c.out <- b:
		return true
	case <-c.ctx.Done():
		return false
	}
}

func payloadOf(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

func (c *rtConn) sendError(id, kind, msg string) bool {
	return c.send(rtMessage{ID: id, Type: "error", Payload: payloadOf(map[string]any{
		"errors": []rtError{{ErrorType: kind, Message: msg}},
	})})
}

// refuse answers a message refused for a spent budget as AppSync answers an error (for a
// start, the subscription's id), with the status the HTTP request would have got (429) as
// its errorCode; the connection stays open.
func (c *rtConn) refuse(id string, err error) {
	a := apierror.Of(err)
	c.send(rtMessage{ID: truncate(id, rtMaxIDLen), Type: "error", Payload: payloadOf(map[string]any{
		"errors": []rtError{{ErrorType: a.MeshType, Message: a.Message, ErrorCode: a.Status}},
	})})
}

// readLoop reads the client's messages until the connection ends; flush reports that what
// is queued must still be sent (the client is being told why it is closed).
func (c *rtConn) readLoop() (flush bool) {
	ip := callerOf(c.ctx).ip
	why := c.ws.Serve(func(typ live.MessageType, b []byte) (live.Reason, bool) {
		var m rtMessage
		bad := typ != live.Text || json.Unmarshal(b, &m) != nil
		// Every message costs the caller's address one request, as the POST /graphql it
		// stands for does (Mesh v2 callers have no credential of their own): an open socket
		// is no way around --ip-rate. Only the envelope is decoded first, for the id a refusal
		// answers; the work a message asks for (a document to check, a subscription) comes
		// after. Ending the connection is free: refusing it would only keep the socket open.
		if bad || m.Type != "connection_terminate" {
			if err := c.h.cfg.Budgets.ChargeAddr(ip); err != nil {
				c.refuse(m.ID, err)
				return live.Reason{}, false
			}
		}
		if typ != live.Text {
			c.sendError("", "UnsupportedOperation", "binary messages are not supported")
			return live.Reason{}, false
		}
		if bad {
			c.sendError("", "MessageParsingError", "message is not valid JSON")
			return live.Reason{}, false
		}
		ok, f := c.handle(m)
		flush = f
		return live.PeerGone, !ok
	})
	switch why {
	case live.BadFrame, live.TooBig, live.Protocol, live.Internal:
		// The client broke the protocol: it is told which way, with the close code, before
		// the connection goes (otherwise it would only see the connection drop, 1006).
		c.ws.Close(why)
	}
	return flush
}

// handle answers one client message; ok false ends the connection, after what is queued
// when flush.
func (c *rtConn) handle(m rtMessage) (ok, flush bool) {
	switch m.Type {
	case "connection_init":
		if !c.h.keyOK(c.headerKey) {
			c.send(rtMessage{Type: "connection_error", Payload: payloadOf(map[string]any{
				"errors": []rtError{{ErrorType: errUnauthenticated, Message: "You are not authorized to make this call.", ErrorCode: 401}},
			})})
			return false, true
		}
		c.acked.Store(true)
		ok := c.send(rtMessage{Type: "connection_ack", Payload: payloadOf(map[string]int64{
			"connectionTimeoutMs": c.h.cfg.ConnectionTimeout.Milliseconds(),
		})})
		// The client arms its keep-alive timer on the first ka, so one comes at once.
		return ok && c.send(rtMessage{Type: "ka"}), false
	case "start":
		c.start(m)
		return true, false
	case "stop":
		c.stop(m.ID)
		return true, false
	case "ka":
		return true, false
	case "connection_terminate":
		return false, false
	case "":
		c.sendError(m.ID, "MessageParsingError", "message has no type")
		return true, false
	default:
		c.sendError(m.ID, "UnsupportedOperation", "unknown message type "+truncate(m.Type, 40))
		return true, false
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func (c *rtConn) start(m rtMessage) {
	if !c.acked.Load() {
		c.sendError(m.ID, "UnsupportedOperation", "send connection_init first")
		return
	}
	if m.ID == "" || len(m.ID) > rtMaxIDLen {
		c.sendError("", "MessageParsingError", "start needs an id of 1 to 128 characters")
		return
	}
	var p rtStartPayload
	if err := json.Unmarshal(m.Payload, &p); err != nil || p.Data == "" {
		c.sendError(m.ID, "MessageParsingError", "start payload must hold data: a GraphQL request as a JSON string")
		return
	}
	var req gqlRequest
	if err := json.Unmarshal([]byte(p.Data), &req); err != nil || req.Query == "" {
		c.sendError(m.ID, "MessageParsingError", "start payload data is not a GraphQL request")
		return
	}
	key := c.headerKey
	for k, v := range p.Extensions.Authorization {
		if equalFoldASCII(k, "x-api-key") {
			key = v
		}
	}
	if !c.h.keyOK(key) {
		c.sendError(m.ID, errUnauthenticated, "You are not authorized to make this call.")
		return
	}
	query, err := c.h.checkDocument(req.Query)
	var vars map[string]any
	if err == nil {
		vars, err = decodeVariables(req.Variables, c.h.maxVarItems)
	}
	if err != nil {
		e := meshErrorOf(err)
		c.sendError(m.ID, e.ErrorType, e.Message)
		return
	}

	c.mu.Lock()
	if _, dup := c.subs[m.ID]; dup {
		c.mu.Unlock()
		c.sendError(m.ID, "DuplicatedOperation", "a subscription with this id is already running")
		return
	}
	if len(c.subs) >= c.h.cfg.MaxSubscriptions {
		c.mu.Unlock()
		c.sendError(m.ID, "LimitExceeded", "too many subscriptions on this connection")
		return
	}
	started := new(atomic.Bool)
	ended := &onEnd{}
	sctx, cancel := context.WithCancel(context.WithValue(context.WithValue(c.ctx, startedKey{}, started), onEndKey{}, ended))
	sub := &rtSub{cancel: cancel, done: make(chan struct{}), ended: ended}
	c.subs[m.ID] = sub
	c.mu.Unlock()

	ch, err := c.h.rtSchema.Subscribe(sctx, query, req.OperationName, vars)
	if err != nil {
		c.drop(m.ID)
		c.sendError(m.ID, errInternal, "subscriptions unavailable")
		return
	}
	if !started.Load() {
		// The resolver did not start (validation or a resolver error such as
		// GroupNotFound, or a query or mutation sent here): report the library's answer.
		msg := "only subscriptions can be started on this endpoint"
		kind := "UnsupportedOperation"
		if resp, ok := <-ch; ok {
			if errs := responseErrors(resp); len(errs) > 0 {
				kind, msg = errs[0].ErrorType, errs[0].Message
			}
		}
		c.drop(m.ID)
		c.sendError(m.ID, kind, msg)
		return
	}
	if !c.send(rtMessage{ID: m.ID, Type: "start_ack"}) {
		c.drop(m.ID)
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer close(sub.done)
		c.forward(sctx, m.ID, ch)
	}()
}

// drop forgets a subscription and cancels it.
func (c *rtConn) drop(id string) *rtSub {
	c.mu.Lock()
	sub := c.subs[id]
	delete(c.subs, id)
	c.mu.Unlock()
	if sub != nil {
		sub.cancel()
		sub.ended.run()
	}
	return sub
}

// forward sends each subscription message as a data message, and complete when the
// subscription ends on its own (the group ended), or the error it ended with (its node left
// the group: the aws-appsync client drops a subscription on an error for it).
func (c *rtConn) forward(ctx context.Context, id string, ch <-chan any) {
	for {
		select {
		case <-ctx.Done():
			return
		case resp, ok := <-ch:
			if !ok {
				if ctx.Err() != nil {
					return
				}
				if sub := c.drop(id); sub != nil {
					if e := sub.ended.failed(); e != nil {
						c.sendError(id, e.ErrorType, e.Message)
					} else {
						c.send(rtMessage{ID: id, Type: "complete"})
					}
				}
				return
			}
			payload := map[string]any{"data": responseData(resp)}
			if errs := responseErrors(resp); len(errs) > 0 {
				payload["errors"] = errs
			}
			if !c.send(rtMessage{ID: id, Type: "data", Payload: payloadOf(payload)}) {
				return
			}
		}
	}
}

// stop ends a subscription; complete is sent after its forwarder has finished, so no data
// message follows it.
func (c *rtConn) stop(id string) {
	if id == "" {
		c.sendError("", "MessageParsingError", "stop needs an id")
		return
	}
	// A stop for a subscription that already ended (a dissolved group) still gets complete:
	// the aws-appsync link fails on an error for an id it has forgotten.
	if sub := c.drop(id); sub != nil {
		<-sub.done
	}
	c.send(rtMessage{ID: id, Type: "complete"})
}

func responseData(resp any) json.RawMessage {
	if r, ok := resp.(*graphql.Response); ok && len(r.Data) > 0 {
		return r.Data
	}
	return json.RawMessage("null")
}

func responseErrors(resp any) []gqlError {
	if r, ok := resp.(*graphql.Response); ok && len(r.Errors) > 0 {
		return convertErrors(r.Errors)
	}
	return nil
}
