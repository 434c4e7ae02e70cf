package server

import (
	"context"
	"io"
	"net/http"
	"strings"
	"time"

	"meshbox/auth"
	"meshbox/rules"
)

// isProbe reports the paths a monitor polls; they are never rate limited, so a busy classroom
// address cannot make the box look down.
func isProbe(path string) bool {
	return path == "/healthz" || path == "/readyz" || path == "/metrics"
}

// limit charges every request to whoever is responsible for it, before it does any work:
//
//   - a request with a valid node token for the group in its path is charged to that node
//     (NodeRate) and then to its group (GroupRate). A refused request costs nothing, so a
//     node over its rate never spends its group's budget, nor its classmates';
//   - a request with the admin token is charged to the admin (the IP rate, its own bucket);
//   - everything else, including a wrong token, is charged to the client address (IPRate).
//
// A whole class behind one NAT shares an address, but once joined each student's node has its
// own budget: the address is charged only for joining and for what has no token at all.
// The request also learns its client (rules.WithClient), so the rules can charge group
// creations to it on every entrance, Mesh v2 included.
func (s *Server) limit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip := s.clientIP(r)
		ctx := rules.WithClient(r.Context(), ip)
		if r.Method == http.MethodOptions || isProbe(r.URL.Path) {
			next.ServeHTTP(w, r.WithContext(ctx))
			return
		}
		rd, err := s.charge(r, ip)
		if err != nil {
			s.writeError(w, r.WithContext(ctx), err)
			return
		}
		if rd != nil {
			rd.Context = ctx
			ctx = rd
		}
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// charge takes one request from the right budget (see limit). A request charged to a node
// returns that node as a reader of the group in its path, so a stream or long-poll handler
// need not authenticate the same token again (openReader).
func (s *Server) charge(r *http.Request, ip string) (*chargedReader, error) {
	if tok := auth.Token(r, nil); tok != "" {
		if s.admin.Match(tok) {
			return nil, s.budgets.ChargeAdmin()
		}
		if gid := groupOfPath(r.URL.Path); gid != "" {
			if n, ended, err := s.store.AuthenticateReader(gid, tok); err == nil {
				if err := s.budgets.ChargeNode(n.Group, n.ID); err != nil {
					return nil, err
				}
				return &chargedReader{gid: gid, token: tok, node: n, ended: ended}, nil
			}
		}
	}
	return nil, s.budgets.ChargeAddr(ip)
}

// chargedReader is the request's context, carrying the node charge authenticated as a reader
// of group gid with token: one allocation rather than a value context and a boxed value.
type chargedReader struct {
	context.Context
	gid, token string
	node       rules.Node
	ended      bool // the group is over: node may read it, not write to it
}

type chargedKey struct{}

// Value answers chargedKey with the reader itself and everything else from the parent.
func (c *chargedReader) Value(key any) any {
	if key == (chargedKey{}) {
		return c
	}
	return c.Context.Value(key)
}

// chargedNode returns the node charge authenticated for this request as a reader of gid with
// tok, if it did.
func chargedNode(ctx context.Context, gid, tok string) (rules.Node, bool) {
	c, _ := ctx.Value(chargedKey{}).(*chargedReader)
	if c == nil || c.gid != gid || c.token != tok {
		return rules.Node{}, false
	}
	return c.node, true
}

// chargedMember returns the node charge authenticated for this request as a member of live
// group gid with tok, if it did: what Authenticate would answer a moment later (the writer
// checks the membership again when it runs the request).
func chargedMember(ctx context.Context, gid, tok string) (rules.Node, bool) {
	c, _ := ctx.Value(chargedKey{}).(*chargedReader)
	if c == nil || c.gid != gid || c.token != tok || c.ended {
		return rules.Node{}, false
	}
	return c.node, true
}

// groupOfPath is the group id of a /api/v1/groups/{gid}/… path, or "".
func groupOfPath(path string) string {
	rest, ok := strings.CutPrefix(path, "/api/v1/groups/")
	if !ok {
		return ""
	}
	gid, _, _ := strings.Cut(rest, "/")
	return gid
}

// bodyDeadline gives every request body a deadline (BodyTimeout from the end of its headers):
// a client that stops sending mid-way is cut, and its connection and file descriptor freed,
// instead of being held for as long as it likes. The deadline is lifted as soon as the body
// has been read to its end, so the handler's own work (a commit, a long-poll) is never cut by
// it. Requests without a body (GET streams, WebSocket upgrades) get none: their handlers bound
// their own time. It covers every route, /graphql included.
func (s *Server) bodyDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody || s.cfg.BodyTimeout <= 0 {
			next.ServeHTTP(w, r)
			return
		}
		rc := http.NewResponseController(w)
		if err := rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout)); err != nil {
			next.ServeHTTP(w, r) // not a connection that supports deadlines (tests, HTTP/2 push)
			return
		}
		r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		next.ServeHTTP(w, r)
	})
}

// deadlineBody lifts the read deadline once the body is read to its end.
type deadlineBody struct {
	io.ReadCloser
	rc     *http.ResponseController
	lifted bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF && !b.lifted {
		b.lifted = true
		// Errors only for connections without deadlines, which had none set either.
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}
