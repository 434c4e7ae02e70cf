// Package server is meshbox's HTTP face: the native JSON API under /api/v1 with its long-poll,
// Server-Sent Events and WebSocket streams, authentication, limits, health checks, and the
// mounting point of the other HTTP parts (dashboard, Mesh v2, metrics).
package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/apierror"
	"meshbox/auth"
	"meshbox/config"
	"meshbox/hub"
	"meshbox/live"
	"meshbox/ratelimit"
	"meshbox/rules"
)

// Observer receives the server's measurements; package metrics implements it.
type Observer interface {
	ConnOpened(transport string)
	ConnClosed(transport string)
	ObserveRTT(transport string, d time.Duration)
	ObserveDelivered(transport string, n int, committedAt time.Time)
	ObserveSlowWrite(transport string)
	ObservePublish(outcome string)
	ObserveRejected(reason string)
}

type noopObserver struct{}

func (noopObserver) ConnOpened(string)                       {}
func (noopObserver) ConnClosed(string)                       {}
func (noopObserver) ObserveRTT(string, time.Duration)        {}
func (noopObserver) ObserveDelivered(string, int, time.Time) {}
func (noopObserver) ObserveSlowWrite(string)                 {}
func (noopObserver) ObservePublish(string)                   {}
func (noopObserver) ObserveRejected(string)                  {}

// Deps are what the server is built from.
type Deps struct {
	Store    *rules.Engine
	Hub      *hub.Hub
	Logger   *slog.Logger
	Observer Observer
	// Middleware wraps every request (metrics instrumentation); may be nil.
	Middleware func(http.Handler) http.Handler
	// Mounts add the other HTTP parts (dashboard, Mesh v2, /metrics) to the router.
	Mounts []func(r chi.Router)
	// Now is the clock of the rate limits when Budgets is nil; nil is time.Now.
	Now func() time.Time
	// Admin is the one admin check, shared with the dashboard so that its back-off counts
	// wrong tokens on every entrance together; nil builds one from the settings.
	Admin *auth.Admin
	// Budgets are the request budgets, shared with the other entrances (Mesh v2 real-time)
	// so a request costs the same whichever way it comes; nil builds them from the settings
	// (RequestRates) over Now.
	Budgets *ratelimit.Budgets
	// Conns manages the long-lived connections (streams, WebSockets); nil builds one over the
	// server context with the settings' cap, ping interval and write timeout.
	Conns *live.Manager
}

// Server serves the native API.
type Server struct {
	cfg   config.Config
	store *rules.Engine
	hub   *hub.Hub
	log   *slog.Logger
	obs   Observer
	deps  Deps
	admin *auth.Admin
	// clients identifies callers (address, assigned domain).
	clients auth.Clients
	// budgets are the request budgets: client addresses (requests without a valid token),
	// nodes, groups and the admin (see limit); WebSocket messages are charged to them too.
	budgets  *ratelimit.Budgets
	conns    *connBudget
	live     *live.Manager
	frames   sync.Pool     // *[]byte frame buffers, shared so idle connections hold none
	flushers *flushers     // the goroutines that deliver to WebSockets and SSE streams
	bodies   sync.Pool     // *bytes.Buffer for request bodies
	budget   *decodeBudget // bytes of bodies being decoded at once; nil: no budget
	handler  http.Handler
}

// New builds the server. Without deps.Conns, streams end when ctx is cancelled, which is how
// shutdown reaches connections that http.Server.Shutdown does not wait for (hijacked
// WebSockets, SSE); with it, when the manager's context is.
func New(ctx context.Context, cfg config.Config, deps Deps) *Server {
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	if deps.Observer == nil {
		deps.Observer = noopObserver{}
	}
	if deps.Budgets == nil {
		deps.Budgets = ratelimit.NewBudgets(RequestRates(cfg), deps.Now)
	}
	if deps.Admin == nil {
		deps.Admin = auth.NewAdmin(cfg.AdminToken, deps.Now)
	}
	s := &Server{
		cfg: cfg, store: deps.Store, hub: deps.Hub, log: deps.Logger.With("component", "server"),
		obs: deps.Observer, deps: deps, admin: deps.Admin,
		budgets:  deps.Budgets,
		live:     deps.Conns,
		clients:  Clients(cfg),
		flushers: &flushers{},
		budget:   newDecodeBudget(cfg.MaxDecoding, cfg.MaxBodyBytes),
	}
	s.flushers.start(ctx, runtime.GOMAXPROCS(0))
	if s.live == nil {
		s.live = live.New(ctx, LiveConfig(cfg, deps.Observer))
	}
	s.conns = &connBudget{budget: int(connBudgetFor(cfg.MaxConns)), perAddr: cfg.MaxConnsPerIP, trustProxy: cfg.TrustProxy,
		evictStream: s.live.Evict, log: s.log.With("part", "conns"), addrs: map[string]*addrConns{}}
	s.frames.New = func() any { b := make([]byte, 0, 4096); return &b }
	s.bodies.New = func() any { return new(bytes.Buffer) }
	s.handler = s.routes()
	return s
}

// RequestRates are the request budgets the settings ask for. The admin's budget is as large
// as one address's, but its own.
func RequestRates(cfg config.Config) ratelimit.Rates {
	return ratelimit.Rates{Node: cfg.NodeRate, Group: cfg.GroupRate, Addr: cfg.IPRate, Admin: cfg.IPRate}
}

// LiveConfig is the connection policy the settings ask for.
func LiveConfig(cfg config.Config, obs live.Observer) live.Config {
	return live.Config{MaxPerAddr: cfg.MaxConnsPerIP, PingInterval: cfg.PingInterval, WriteTimeout: 15 * time.Second, Observer: obs}
}

// Handler is the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// handlerFunc is a handler that returns its error; adapt turns it into an http.HandlerFunc
// that answers errors in one way.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) adapt(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.writeError(w, r, err)
		}
	}
}

func (s *Server) routes() http.Handler {
	r := chi.NewRouter()
	r.Use(s.recoverer)
	if s.deps.Middleware != nil {
		r.Use(s.deps.Middleware)
	}
	// Every route, the Mesh v2 endpoints and the dashboard included.
	r.Use(s.priority, s.bodyDeadline, s.limit, s.decoding)
	r.Get("/healthz", s.adapt(s.healthz))
	r.Get("/readyz", s.adapt(s.readyz))
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(auth.CORS(auth.CORSOptions{
			Methods:       []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete},
			Expose:        []string{"Retry-After"},
			MaxAgeSeconds: 600,
		}))
		r.Get("/domain", s.adapt(s.getDomain))
		r.Get("/admin/check", s.adapt(s.adminCheck))
		r.Get("/groups", s.adapt(s.listGroups))
		r.Post("/groups", s.adapt(s.createGroup))
		r.Get("/groups/{gid}", s.adapt(s.getGroup))
		r.Delete("/groups/{gid}", s.adapt(s.dissolveGroup))
		r.Post("/groups/{gid}/nodes", s.adapt(s.joinGroup))
		r.Delete("/groups/{gid}/nodes/{nid}", s.adapt(s.leaveGroup))
		r.Post("/groups/{gid}/heartbeat", s.adapt(s.heartbeat))
		r.Put("/groups/{gid}/data", s.adapt(s.setData))
		r.Post("/groups/{gid}/events", s.adapt(s.publish))
		r.Get("/groups/{gid}/events", s.adapt(s.poll))
		r.Get("/groups/{gid}/stream", s.adapt(s.sse))
		r.Get("/groups/{gid}/ws", s.adapt(s.websocket))
	})
	if s.cfg.Pprof {
		r.HandleFunc("/debug/pprof/*", pprof.Index)
		r.HandleFunc("/debug/pprof/profile", pprof.Profile)
		r.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	for _, m := range s.deps.Mounts {
		m(r)
	}
	r.NotFound(s.adapt(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusNotFound, "not_found", "no such endpoint: "+r.URL.Path)
	}))
	r.MethodNotAllowed(s.adapt(func(w http.ResponseWriter, r *http.Request) error {
		return errorf(http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path)
	}))
	return r
}

// recoverer turns a panic in one request into a 500 for that request only.
func (s *Server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("panic in handler", "path", r.URL.Path, "panic", v)
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// adminCheck answers 204 when the request carries the admin token (the dashboard's unlock),
// 401 otherwise; the admin's actions are the API's own routes, called with that token.
func (s *Server) adminCheck(w http.ResponseWriter, r *http.Request) error {
	ok, wait := s.admin.CheckRequest(r, s.clientIP(r))
	if wait > 0 {
		return adminBackoff(wait)
	}
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshbox admin"`)
		return errorf(http.StatusUnauthorized, "unauthorized", "a valid admin token is required")
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	apierror.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	// The body says which storage state the box is in, and since when, either way. A box that
	// is not ready is not an error to log per poll: the log reports each state change once.
	storage := s.store.Storage()
	if err := s.store.Ping(ctx); err != nil {
		w.Header().Set("Retry-After", "1")
		apierror.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{
			"status":  "not_ready",
			"error":   map[string]string{"code": "not_ready", "message": "database is not writable: " + err.Error()},
			"storage": storage,
		})
		return nil
	}
	apierror.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "storage": storage})
	return nil
}

// decode reads a JSON request body into v: one value, within the body size limit.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	buf := s.bodies.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= 64<<10 { // a rare huge body is not kept around
			buf.Reset()
			s.bodies.Put(buf)
		}
	}()
	if n := r.ContentLength; n > 0 && n <= s.cfg.MaxBodyBytes {
		buf.Grow(int(n) + 1) // read in one buffer of its size, not doubled on the way
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)); err != nil {
		return decodeError(err)
	}
	if len(bytes.TrimSpace(buf.Bytes())) == 0 {
		return decodeError(io.EOF)
	}
	if f, ok := v.(fastDecoder); ok && f.decodeFast(buf.Bytes()) {
		return nil
	}
	// Unmarshal (unlike a Decoder) also refuses anything after the one value.
	if err := json.Unmarshal(buf.Bytes(), v); err != nil {
		return decodeError(err)
	}
	return nil
}

func decodeError(err error) error {
	var tooBig *http.MaxBytesError
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.Is(err, rules.ErrTooLarge), errors.Is(err, rules.ErrInvalid):
		return err // a bounded part of the body (bounded.go) refused with the rules' own error
	case errors.Is(err, os.ErrDeadlineExceeded):
		return errorf(http.StatusRequestTimeout, "body_timeout", "the request body did not arrive in time; send it whole")
	case errors.As(err, &tooBig):
		return errorf(http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			field = "body"
		}
		return errorf(http.StatusBadRequest, "bad_json", fmt.Sprintf("%s must be %s, not %s", field, jsonType(typeErr.Type.Kind().String()), typeErr.Value))
	case errors.As(err, &syntaxErr):
		return errorf(http.StatusBadRequest, "bad_json", fmt.Sprintf("malformed JSON at byte %d: %v", syntaxErr.Offset, err))
	case errors.Is(err, io.EOF):
		return errorf(http.StatusBadRequest, "bad_json", "request body is empty; send a JSON object")
	}
	return errorf(http.StatusBadRequest, "bad_json", "malformed JSON: "+err.Error())
}

func jsonType(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	}
	return "a number"
}

// caller is who a request acts for: a node of the group, or the admin.
type caller struct {
	node  rules.Node
	admin bool
}

// auth identifies the caller of a group call. Tokens are checked against the group named in
// the path, so a token never reaches another group.
func (s *Server) auth(r *http.Request, gid string, allowAdmin bool) (caller, error) {
	tok := auth.Token(r, nil)
	if tok == "" {
		return caller{}, errorf(http.StatusUnauthorized, "unauthorized", "missing token: send Authorization: Bearer TOKEN (or ?token=)")
	}
	if n, ok := chargedMember(r.Context(), gid, tok); ok {
		return caller{node: n}, nil // limit authenticated it already, for the charge
	}
	n, err := s.store.Authenticate(gid, tok)
	if err == nil {
		return caller{node: n}, nil
	}
	if allowAdmin {
		// Not a member's token: an admin check, counted against the address's back-off.
		ok, wait := s.admin.Check(s.clientIP(r), tok)
		if ok {
			return caller{admin: true}, nil
		}
		if wait > 0 {
			return caller{}, adminBackoff(wait)
		}
	}
	return caller{}, err
}

// adminBackoff is the answer to an address that presented too many wrong admin tokens.
func adminBackoff(wait time.Duration) error {
	return &apierror.Error{Status: http.StatusTooManyRequests, Code: "rate_limited",
		Msg: "too many wrong admin tokens from this address: wait and retry", RetryAfter: max(wait, time.Second)}
}

// connBudgetFor is the connection budget: the setting, or what the open-file limit allows
// with room left for the database files, logs and the reserve.
func connBudgetFor(setting int) int64 {
	if setting > 0 {
		return int64(setting)
	}
	if n := openFileLimit(); n > 0 {
		return max(n-max(n/8, 64)-reserveConns, 16)
	}
	return 10000
}

// clientIP is the caller's address (auth.Clients decides).
func (s *Server) clientIP(r *http.Request) string { return s.clients.IP(r) }

// domainFor is the domain the server assigns a caller that names none.
func (s *Server) domainFor(r *http.Request) string { return s.clients.Domain(r) }

// Clients is how the settings identify callers; every entrance uses the same.
func Clients(cfg config.Config) auth.Clients {
	return auth.Clients{TrustProxy: cfg.TrustProxy, DomainMode: cfg.DomainMode, DomainSecret: cfg.DomainSecret, SharedDomain: cfg.SharedDomain}
}
