package web

import "net/http"

// isAdmin reports whether r carries the admin token (header, or ?token= as EventSource sends
// no headers), checked by the one admin check (auth.Admin): then the dashboard shows its
// details. An address backing off after wrong tokens gets the public view whatever it sends,
// so the view tells a guesser nothing.
func (h *Handler) isAdmin(r *http.Request) bool {
	ok, _ := h.adminCheck.CheckRequest(r, h.cfg.Clients.IP(r))
	return ok
}
