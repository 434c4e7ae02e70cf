package server

import (
	"context"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"meshbox/apierror"
	"meshbox/hub"
	"meshbox/rules"
	"meshbox/stream"
)

func (s *Server) getDomain(w http.ResponseWriter, r *http.Request) error {
	apierror.WriteJSON(w, http.StatusOK, map[string]string{"domain": s.domainFor(r)})
	return nil
}

// domainParam is the domain a request names, or the one the server assigns the caller.
func (s *Server) domainParam(r *http.Request, named string) (string, error) {
	if named == "" {
		return s.domainFor(r), nil
	}
	if !rules.ValidDomain(named) {
		return "", errorf(http.StatusBadRequest, "invalid", "domain must be 1-256 characters of A-Z a-z 0-9 . _ -")
	}
	return named, nil
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) error {
	domain, err := s.domainParam(r, r.URL.Query().Get("domain"))
	if err != nil {
		return err
	}
	groups := s.store.Groups(domain)
	if groups == nil {
		groups = []rules.Group{}
	}
	apierror.WriteJSON(w, http.StatusOK, map[string]any{"domain": domain, "groups": groups})
	return nil
}

// joinedResponse is the answer to create and join: the caller's node, its token, the cursor to
// read after, and how often to send heartbeats.
type joinedResponse struct {
	rules.Joined
	HeartbeatIntervalSeconds int `json:"heartbeatIntervalSeconds"`
}

func (s *Server) joined(j rules.Joined) joinedResponse {
	iv := s.cfg.MemberHeartbeatInterval
	if j.Node.Host {
		iv = s.cfg.HostHeartbeatInterval
	}
	return joinedResponse{Joined: j, HeartbeatIntervalSeconds: int(iv.Seconds())}
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Domain                   string `json:"domain"`
		Name                     string `json:"name"`
		NodeName                 string `json:"nodeName"`
		MaxConnectionTimeSeconds int64  `json:"maxConnectionTimeSeconds"` // int64 on every board: a 32-bit int would refuse what a 64-bit one caps
		// MeshV2 opens the group to Smalruby Mesh v2 clients, which join as themselves.
		MeshV2 bool `json:"meshV2"`
	}
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	domain, err := s.domainParam(r, req.Domain)
	if err != nil {
		return err
	}
	if req.MaxConnectionTimeSeconds < 0 {
		return errorf(http.StatusBadRequest, "invalid", "maxConnectionTimeSeconds must not be negative")
	}
	j, err := s.store.CreateGroup(r.Context(), rules.NewGroup{
		Domain: domain, Name: req.Name, HostName: req.NodeName, UseWebSocket: !s.cfg.NoWebSocket,
		Lifetime: lifetimeOf(req.MaxConnectionTimeSeconds, s.cfg.MaxGroupLifetime), OpenToMeshV2: req.MeshV2,
	})
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusCreated, s.joined(j))
	return nil
}

// lifetimeOf is a group lifetime asked for in seconds (0: the maximum), capped at max before
// it becomes a Duration: times a second, a number past 9,223,372,036 overflows int64 and
// wraps (to a negative lifetime, refused, or to a tiny one, a group that ends at once). The
// rules cap it at the same maximum.
func lifetimeOf(secs int64, max time.Duration) time.Duration {
	switch {
	case secs <= 0:
		return time.Duration(secs) // 0 is the maximum; negative is refused before
	case max > 0 && secs >= int64(max/time.Second):
		return max
	case secs > math.MaxInt64/int64(time.Second):
		return math.MaxInt64 // no maximum set here: the rules' own caps it
	}
	return time.Duration(secs) * time.Second
}

// getGroup answers the snapshot: node names and data are the group's business, so it takes a
// member's token (or the admin's).
func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) error {
	gid := chi.URLParam(r, "gid")
	if _, err := s.auth(r, gid, true); err != nil {
		return err
	}
	snap, err := s.store.Snapshot(r.Context(), gid)
	if err != nil {
		return err
	}
	// links: each present node's round-trip summary (hub.Link), keyed by node id.
	apierror.WriteJSON(w, http.StatusOK, struct {
		rules.Snapshot
		Links map[string]hub.Link `json:"links"`
	}{snap, s.hub.Links(gid)})
	return nil
}

func (s *Server) joinGroup(w http.ResponseWriter, r *http.Request) error {
	var req struct {
		Name string `json:"name"`
	}
	if r.ContentLength != 0 {
		if err := s.decode(w, r, &req); err != nil {
			return err
		}
	}
	j, err := s.store.Join(r.Context(), chi.URLParam(r, "gid"), rules.NewNode{Name: req.Name})
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusCreated, s.joined(j))
	return nil
}

func (s *Server) leaveGroup(w http.ResponseWriter, r *http.Request) error {
	gid, nid := chi.URLParam(r, "gid"), chi.URLParam(r, "nid")
	c, err := s.auth(r, gid, true)
	if err != nil {
		return err
	}
	reason := stream.ReasonRemoved
	switch {
	case c.admin:
	case c.node.ID == nid:
		reason = stream.ReasonLeft
	case c.node.Host:
	default:
		return errorf(http.StatusForbidden, "forbidden", "only the node itself, the group's host or an admin may remove a node")
	}
	if err := s.store.Leave(r.Context(), gid, nid, reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) dissolveGroup(w http.ResponseWriter, r *http.Request) error {
	gid := chi.URLParam(r, "gid")
	c, err := s.auth(r, gid, true)
	if err != nil {
		return err
	}
	reason := stream.ReasonAdmin
	if !c.admin {
		if !c.node.Host {
			return errorf(http.StatusForbidden, "forbidden", "only the group's host or an admin may dissolve it")
		}
		reason = stream.ReasonHost
	}
	if err := s.store.Dissolve(r.Context(), gid, reason); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) error {
	gid := chi.URLParam(r, "gid")
	c, err := s.auth(r, gid, false)
	if err != nil {
		return err
	}
	g, n, err := s.store.Heartbeat(r.Context(), gid, c.node.ID)
	if err != nil {
		return err
	}
	// An SSE client echoes the send time of the stream's ping event (sse.go): now minus that
	// time is its stream's round trip. The node could only misreport its own link.
	if echo := r.URL.Query().Get("echo"); echo != "" {
		if t, err := strconv.ParseInt(echo, 10, 64); err == nil {
			if d := time.Since(time.Unix(0, t)); d >= 0 && d <= sseEchoMax {
				s.live.ObserveRTT("sse", d)
				s.hub.ObserveRTT(gid, c.node.ID, "sse", "echo", d)
			}
		}
	}
	apierror.WriteJSON(w, http.StatusOK, map[string]any{"group": g, "node": n})
	return nil
}

func (s *Server) setData(w http.ResponseWriter, r *http.Request) error {
	gid := chi.URLParam(r, "gid")
	c, err := s.auth(r, gid, false)
	if err != nil {
		return err
	}
	req := struct {
		Data dataMap `json:"data"`
	}{Data: dataMap{limits: s.store.Limits()}}
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	cursor, err := s.setNodeData(r.Context(), c.node, req.Data.data)
	if err != nil {
		return err
	}
	apierror.WriteJSON(w, http.StatusOK, map[string]int64{"cursor": cursor})
	return nil
}

// setNodeData stores a data change; the rules check it against the limits. HTTP and WebSocket
// share it.
func (s *Server) setNodeData(ctx context.Context, n rules.Node, data map[string]string) (int64, error) {
	return s.store.SetData(ctx, n.Group, n.ID, data, false)
}

// eventIn is one event as clients send it.
type eventIn struct {
	Name    string  `json:"name"`
	Payload *string `json:"payload"`
}

func (s *Server) publish(w http.ResponseWriter, r *http.Request) error {
	gid := chi.URLParam(r, "gid")
	c, err := s.auth(r, gid, false)
	if err != nil {
		return err
	}
	req := publishBody{Events: eventList{limits: s.store.Limits()}}
	if err := s.decode(w, r, &req); err != nil {
		s.obs.ObservePublish("rejected")
		return err
	}
	cursors, err := s.publishEvents(r.Context(), c.node, req.Events.events)
	if err != nil {
		return err
	}
	// Written by hand: this is the answer meshbox gives most often.
	b := make([]byte, 0, 32+12*len(cursors))
	b = append(b, `{"cursors":[`...)
	for i, c := range cursors {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, c, 10)
	}
	b = append(b, `],"next":`...)
	b = strconv.AppendInt(b, cursors[len(cursors)-1], 10)
	apierror.WriteRaw(w, http.StatusOK, append(b, "}\n"...))
	return nil
}

// publishEvents appends a publish (the rules check it against the limits); HTTP and WebSocket
// share it. It returns once the events are committed.
func (s *Server) publishEvents(ctx context.Context, n rules.Node, events []eventIn) (cursors []int64, err error) {
	defer func() {
		switch {
		case err == nil:
			s.obs.ObservePublish("ok")
		case apierror.Of(err).Status < 500:
			s.obs.ObservePublish("rejected")
		default:
			s.obs.ObservePublish("error")
		}
	}()
	in := make([]rules.EventIn, len(events))
	for i, e := range events {
		in[i] = rules.EventIn{Name: e.Name, Payload: e.Payload}
	}
	return s.store.Publish(ctx, n.Group, n.ID, in)
}
