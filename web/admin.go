package web

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"meshbox/rules"
	"meshbox/stream"
)

// admin guards a handler with the admin token, as a bearer header (any case) or ?token=, checked
// by the same function as on every other route (auth.Admin). Without a configured token admin
// actions are disabled (403), so a box set up without one is read-only rather than open.
func (h *Handler) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.cfg.AdminToken == "" {
			writeError(w, http.StatusForbidden, "admin_disabled", "no admin token is configured; the dashboard is read-only")
			return
		}
		if !h.adminCheck.Request(r) {
			h.meter.ObserveRejected("unauthorized")
			w.Header().Set("WWW-Authenticate", `Bearer realm="meshbox admin"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid admin token is required")
			return
		}
		next(w, r)
	}
}

// isAdmin reports whether r carries the admin token: then the dashboard shows its details.
func (h *Handler) isAdmin(r *http.Request) bool { return h.adminCheck.Request(r) }

func (h *Handler) adminOK(w http.ResponseWriter, _ *http.Request) {
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) adminDissolve(w http.ResponseWriter, r *http.Request) {
	gid := chi.URLParam(r, "gid")
	if err := h.store.Dissolve(r.Context(), gid, stream.ReasonAdmin); err != nil {
		h.storeError(w, err)
		return
	}
	h.log.Info("admin dissolved group", "group", gid)
	h.hub.poke()
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) adminRemoveNode(w http.ResponseWriter, r *http.Request) {
	gid, nid := chi.URLParam(r, "gid"), chi.URLParam(r, "nid")
	// Removing the host ends the group (reason admin), as the store's rules say.
	if err := h.store.Leave(r.Context(), gid, nid, stream.ReasonRemoved); err != nil {
		h.storeError(w, err)
		return
	}
	h.log.Info("admin removed node", "group", gid, "node", nid)
	h.hub.poke()
	w.WriteHeader(http.StatusNoContent)
}

// storeError maps the store's sentinels to the native API's statuses and codes.
func (h *Handler) storeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, rules.ErrGroupNotFound):
		writeError(w, http.StatusNotFound, "group_not_found", "no such group")
	case errors.Is(err, rules.ErrGroupEnded):
		writeError(w, http.StatusGone, "group_ended", "the group has ended")
	case errors.Is(err, rules.ErrNodeNotFound):
		writeError(w, http.StatusNotFound, "node_not_found", "no such node in this group")
	case errors.Is(err, rules.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "unavailable", "the server is shutting down")
	default:
		h.log.Error("admin action", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "internal error")
	}
}
