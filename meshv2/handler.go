// Package meshv2 serves the Smalruby Mesh v2 protocol (AppSync GraphQL over HTTP and the
// AppSync real-time WebSocket protocol) as an adapter over meshbox's groups, nodes and
// stream, so the unmodified Smalruby Mesh extension can use a meshbox in place of the cloud.
package meshv2

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"meshbox/auth"
	"meshbox/live"
	"meshbox/ratelimit"
	"meshbox/rules"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	graphql "github.com/graph-gophers/graphql-go"
	gqlerrors "github.com/graph-gophers/graphql-go/errors"
)

// Config holds the settings of the Mesh v2 layer. Zero values take the cloud service's
// defaults (see withDefaults).
type Config struct {
	// APIKey, when set, must be sent as x-api-key (HTTP) or in the real-time header;
	// when empty any key is accepted, as a classroom box on a LAN usually wants.
	APIKey string
	// HostHeartbeatInterval and MemberHeartbeatInterval are told to clients, who send
	// heartbeats that often; the store enforces the matching TTLs.
	HostHeartbeatInterval   time.Duration
	MemberHeartbeatInterval time.Duration
	// PollingInterval is told to clients that cannot use WebSocket.
	PollingInterval time.Duration
	// MaxConnectionTime caps maxConnectionTimeSeconds (a group's absolute lifetime).
	MaxConnectionTime time.Duration
	// DefaultConnectionTime is a group's lifetime when the client names none.
	DefaultConnectionTime time.Duration
	// KeepAliveInterval is how often the real-time endpoint sends "ka".
	KeepAliveInterval time.Duration
	// ConnectionTimeout is reported as connectionTimeoutMs: a client that hears no "ka"
	// for this long reconnects.
	ConnectionTimeout time.Duration
	// WriteTimeout bounds every WebSocket write; a client slower than that is dropped.
	WriteTimeout time.Duration
	// MaxBodyBytes bounds a GraphQL request body; with Limits it is lowered to what the
	// largest legitimate request needs under them (bodyBoundFor).
	MaxBodyBytes int64
	// Limits are the rules' limits: they size the body bound and the longest list a
	// request's variables may hold (maxVarItemsFor). Zero: neither is derived.
	Limits rules.Limits
	// DomainFor answers createDomain for a request; it should be the rule the native API
	// uses, so Mesh v2 and native clients of one classroom share a domain. When nil, a
	// domain is derived from the connection's remote IP.
	DomainFor func(r *http.Request) string
	// Observer counts real-time connections (transport graphql_ws) when the handler manages
	// its own (Conns is nil); nil counts nothing.
	Observer live.Observer

	// NoWebSocket refuses real-time upgrades, as --no-websocket does for the native API, so
	// the Smalruby client's WebSocket probe fails as behind a school filter.
	NoWebSocket bool
	// Introspection allows __schema and __type; off, a document using them is refused.
	Introspection bool
	// MaxAliases, MaxSelections (after fragments are expanded), MaxDepth and MaxCost bound one
	// GraphQL document; see limits.go for the cost.
	MaxAliases    int
	MaxSelections int
	MaxDepth      int
	MaxCost       int
	// MaxConcurrent bounds the GraphQL requests executing at once; a request waits up to
	// QueueWait for a slot, then gets HTTP 429.
	MaxConcurrent int
	QueueWait     time.Duration
	// BodyReadTimeout bounds reading a request body, so a client that never finishes its
	// body holds nothing for long.
	BodyReadTimeout time.Duration
	// MaxSubscriptions bounds the subscriptions of one real-time connection.
	MaxSubscriptions int
	// MaxTrackedNodes bounds the polling positions and expected readers kept in memory.
	MaxTrackedNodes int
	// Conns manages real-time connections with every other long-lived connection of the
	// server (one per-address cap, pings, shutdown). Nil gives the handler its own, without a
	// cap, ended by Close.
	Conns *live.Manager
	// ClientIP is the caller's address as the rest of the server sees it (behind a trusted
	// proxy, X-Forwarded-For). Nil means the connection's remote address.
	ClientIP func(r *http.Request) string
	// Budgets are the server's request budgets: each real-time message costs the caller's
	// address one request, as a POST /graphql does. Nil charges nothing.
	Budgets *ratelimit.Budgets
}

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HostHeartbeatInterval, 60*time.Second)
	def(&c.MemberHeartbeatInterval, 120*time.Second)
	def(&c.PollingInterval, 2*time.Second)
	def(&c.MaxConnectionTime, 1500*time.Second)
	def(&c.DefaultConnectionTime, 1500*time.Second)
	def(&c.KeepAliveInterval, 60*time.Second)
	def(&c.ConnectionTimeout, 300*time.Second)
	def(&c.WriteTimeout, 10*time.Second)
	def(&c.QueueWait, 2*time.Second)
	def(&c.BodyReadTimeout, 10*time.Second)
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if b := bodyBoundFor(c.Limits); b > 0 {
		c.MaxBodyBytes = min(c.MaxBodyBytes, b)
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	defInt(&c.MaxAliases, defaultMaxAliases)
	defInt(&c.MaxSelections, defaultMaxSelections)
	defInt(&c.MaxDepth, defaultMaxDepth)
	defInt(&c.MaxCost, defaultMaxCost)
	defInt(&c.MaxConcurrent, 16)
	defInt(&c.MaxSubscriptions, 10)
	defInt(&c.MaxTrackedNodes, 10000)
	if c.ClientIP == nil {
		c.ClientIP = remoteIP
	}
	if c.DomainFor == nil {
		c.DomainFor = remoteIPDomain
	}
	return c
}

// remoteIP is the host part of the connection's remote address.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// remoteIPDomain is the fallback createDomain rule: a hex CRC32 of the remote IP, as the
// cloud service does (without its secret).
func remoteIPDomain(r *http.Request) string {
	return fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(remoteIP(r))))
}

// Handler serves POST /graphql and GET /graphql/realtime.
type Handler struct {
	cfg    Config
	schema *graphql.Schema
	// rtSchema serves start messages: subscriptions (and harmless queries) only.
	rtSchema *graphql.Schema
	root     *root
	log      *slog.Logger
	exec     *execSlots
	// maxVarItems is the longest list a request's variables may hold.
	maxVarItems int

	// conns manages the real-time connections; ownConns when the handler made it.
	conns    *live.Manager
	ownConns bool
	// ctx ends the roster's sweeper (and the handler's own connections) on Close.
	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
	cors   func(http.Handler) http.Handler
	apiKey *auth.Secret
}

// New builds the handler over backend. The schema is parsed and checked against the
// resolvers here, so a mismatch fails at start-up rather than on the first request.
func New(cfg Config, backend Backend, logger *slog.Logger) (*Handler, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	logger = logger.With("component", "meshv2")
	r := &root{cfg: cfg, backend: backend, log: logger, now: time.Now}
	r.roster = newRoster(backend, time.Now, cfg.PollingInterval, cfg.MaxTrackedNodes)
	opts := []graphql.SchemaOpt{
		graphql.UseFieldResolvers(),
		graphql.MaxDepth(cfg.MaxDepth),
		graphql.MaxSelections(cfg.MaxSelections),
		graphql.MaxQueryLength(64 << 10),
		// checkDocument refuses introspection with a clear error; this keeps the library from
		// answering it should that check ever miss one.
		graphql.RestrictIntrospection(func(context.Context) bool { return cfg.Introspection }),
		// Each subscription message is handed to the writer within this time or dropped by
		// the library, so it is well above WriteTimeout: a writer that stalls that long
		// closes the connection first, and nothing is dropped silently.
		graphql.SubscribeResolverTimeout(cfg.WriteTimeout * 3),
	}
	schema, err := graphql.ParseSchema(schemaSDL, r, opts...)
	if err != nil {
		return nil, fmt.Errorf("parse mesh v2 schema: %w", err)
	}
	// The real-time endpoint gets the schema without its mutation root, so a mutation sent
	// as a start message fails validation instead of being executed, as on AppSync.
	rtSDL := strings.Replace(schemaSDL, "  mutation: Mutation\n", "", 1)
	if rtSDL == schemaSDL {
		return nil, errors.New("mesh v2 schema has no mutation root to remove")
	}
	rtSchema, err := graphql.ParseSchema(rtSDL, r, opts...)
	if err != nil {
		return nil, fmt.Errorf("parse mesh v2 real-time schema: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Handler{cfg: cfg, schema: schema, rtSchema: rtSchema, root: r, log: logger, ctx: ctx, cancel: cancel, conns: cfg.Conns, apiKey: auth.NewSecret(cfg.APIKey),
		maxVarItems: maxVarItemsFor(cfg.Limits)}
	// The editor runs on another origin (often a public one calling a LAN box, hence Private
	// Network Access); AppSync answers with the caller's origin.
	// x-amzn-ErrorType is exposed as AppSync exposes it: Amplify 6 names a refused request by it.
	h.cors = auth.CORS(auth.CORSOptions{EchoOrigin: true, Methods: []string{http.MethodGet, http.MethodPost},
		Expose: []string{errorTypeHeader, "Retry-After"}, MaxAgeSeconds: 86400})
	if h.conns == nil {
		h.conns, h.ownConns = live.New(ctx, live.Config{Observer: cfg.Observer, WriteTimeout: cfg.WriteTimeout}), true
		h.bg.Add(1)
		go func() { defer h.bg.Done(); h.conns.Run(ctx) }()
	}
	h.exec = newExecSlots(cfg.MaxConcurrent, func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, cfg.QueueWait)
	})
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		r.roster.run(ctx, min(cfg.PollingInterval, time.Second))
	}()
	return h, nil
}

// Routes mounts both endpoints on r.
func (h *Handler) Routes(r chi.Router) {
	r.Handle("/graphql", h.GraphQL())
	r.Handle("/graphql/realtime", h.Realtime())
}

// GraphQL returns the handler of POST /graphql (and its CORS preflight).
func (h *Handler) GraphQL() http.Handler { return h.cors(http.HandlerFunc(h.serveGraphQL)) }

// Realtime returns the handler of GET /graphql/realtime (and its CORS preflight).
func (h *Handler) Realtime() http.Handler { return h.cors(http.HandlerFunc(h.serveRealtime)) }

// Close stops the handler's background work; with connections of its own it ends them (with
// status 1012, so clients reconnect) and waits for them, or until ctx ends. Shared
// connections end with the server's context and are waited for by their manager's owner.
func (h *Handler) Close(ctx context.Context) error {
	h.cancel()
	var err error
	if h.ownConns {
		if err = h.conns.Wait(ctx); err != nil {
			err = fmt.Errorf("close mesh v2 connections: %w", err)
		}
	}
	h.bg.Wait() // the roster's sweeper (and the own pinger) end as soon as h.ctx does
	return err
}

// keyOK checks an API key with the one credential check (auth.Secret: hashed, then compared
// in constant time); any key passes when none is configured.
func (h *Handler) keyOK(key string) bool {
	return !h.apiKey.Set() || h.apiKey.Match(key)
}

// gqlError is one error as AppSync writes it: errorType at the top level, where the
// Smalruby client reads graphQLErrors[0].errorType.
type gqlError struct {
	Path      []any                `json:"path,omitempty"`
	Data      any                  `json:"data"`
	ErrorType string               `json:"errorType"`
	ErrorInfo any                  `json:"errorInfo"`
	Locations []gqlerrors.Location `json:"locations,omitempty"`
	Message   string               `json:"message"`
}

type gqlResponse struct {
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors,omitempty"`
}

func convertErrors(errs []*gqlerrors.QueryError) []gqlError {
	out := make([]gqlError, 0, len(errs))
	for _, e := range errs {
		kind := errValidation
		var me *meshError
		if errors.As(e.ResolverError, &me) {
			kind = me.kind
		} else if e.ResolverError != nil {
			kind = errInternal
		}
		out = append(out, gqlError{Path: e.Path, ErrorType: kind, Locations: e.Locations, Message: e.Message})
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"errors":[{"errorType":"InternalFailure","message":"encode response"}]}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// errorTypeHeader names the error type of a request refused before GraphQL, as AppSync names
// it. Amplify 6 reads the type of a failed call only from this header (or a top-level code,
// which AppSync's body does not have): without it a wrong API key is "Unknown error" rather
// than its UnauthorizedException.
const errorTypeHeader = "x-amzn-ErrorType"

// writeHTTPError answers a request refused before GraphQL ran: the status, the error type in
// the header and in the body, as AppSync does.
func writeHTTPError(w http.ResponseWriter, status int, kind, msg string) {
	w.Header().Set(errorTypeHeader, kind)
	writeJSON(w, status, gqlResponse{Data: json.RawMessage("null"), Errors: []gqlError{{ErrorType: kind, Message: msg}}})
}

// gqlRequest is one GraphQL request. Its variables stay raw until decodeVariables, inside an
// execution slot and after the document passed its bounds.
type gqlRequest struct {
	Query         string          `json:"query"`
	OperationName string          `json:"operationName"`
	Variables     json.RawMessage `json:"variables"`
}

func (h *Handler) serveGraphQL(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST, OPTIONS")
		writeHTTPError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", "use POST")
		return
	}
	if !h.keyOK(r.Header.Get("X-Api-Key")) {
		writeHTTPError(w, http.StatusUnauthorized, errUnauthenticated, "You are not authorized to make this call.")
		return
	}
	req, ok := h.readRequest(w, r)
	if !ok {
		return
	}
	query, err := h.checkDocument(req.Query)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, gqlResponse{Data: json.RawMessage("null"), Errors: []gqlError{meshErrorOf(err)}})
		return
	}
	if !h.exec.acquire(r.Context()) {
		w.Header().Set("Retry-After", "1")
		writeHTTPError(w, http.StatusTooManyRequests, errBusy, "the server is busy: retry shortly")
		return
	}
	defer h.exec.release()
	vars, err := decodeVariables(req.Variables, h.maxVarItems)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, gqlResponse{Data: json.RawMessage("null"), Errors: []gqlError{meshErrorOf(err)}})
		return
	}
	req.Variables = nil // the raw bytes are no longer needed while the request executes
	ctx := withCaller(r.Context(), caller{domain: h.cfg.DomainFor(r), ip: h.cfg.ClientIP(r)})
	resp := h.schema.Exec(ctx, query, req.OperationName, vars)
	out := gqlResponse{Data: resp.Data, Errors: convertErrors(resp.Errors)}
	if len(out.Data) == 0 {
		out.Data = json.RawMessage("null")
	}
	writeJSON(w, http.StatusOK, out)
}

// readRequest reads a GraphQL JSON body within the size limit and the read deadline, or
// answers the error itself.
func (h *Handler) readRequest(w http.ResponseWriter, r *http.Request) (gqlRequest, bool) {
	var req gqlRequest
	rc := http.NewResponseController(w)
	// Not every ResponseWriter supports deadlines (some test recorders); the server's own
	// timeouts still apply then.
	_ = rc.SetReadDeadline(time.Now().Add(h.cfg.BodyReadTimeout))
	// The body is read into one buffer of its announced size (within the bound), then decoded
	// once: a decoder would grow its own buffer by doubling on the way.
	var buf bytes.Buffer
	if n := r.ContentLength; n > 0 && n <= h.cfg.MaxBodyBytes {
		buf.Grow(int(n) + 1)
	}
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	if err == nil {
		err = json.Unmarshal(buf.Bytes(), &req)
	}
	_ = rc.SetReadDeadline(time.Time{})
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
	case errors.As(err, &tooBig):
		writeHTTPError(w, http.StatusRequestEntityTooLarge, "PayloadTooLarge", "request body too large")
		return req, false
	case errors.Is(err, os.ErrDeadlineExceeded):
		w.Header().Set("Connection", "close")
		writeHTTPError(w, http.StatusRequestTimeout, "RequestTimeout", "request body not received in time")
		return req, false
	default:
		writeHTTPError(w, http.StatusBadRequest, "MalformedHttpRequestException", "request body is not a GraphQL JSON request")
		return req, false
	}
	if strings.TrimSpace(req.Query) == "" {
		writeHTTPError(w, http.StatusBadRequest, "MalformedHttpRequestException", "query is missing")
		return req, false
	}
	return req, true
}

// meshErrorOf writes a resolver-style error as AppSync does.
func meshErrorOf(err error) gqlError {
	var me *meshError
	if errors.As(err, &me) {
		return gqlError{ErrorType: me.kind, Message: me.msg}
	}
	return gqlError{ErrorType: errInternal, Message: "internal error"}
}
