package web

import "net/http"

// isAdmin reports whether r carries the admin token (header, or ?token= as EventSource sends
// no headers), checked by the one admin check (auth.Admin): then the dashboard shows its
// details.
func (h *Handler) isAdmin(r *http.Request) bool { return h.adminCheck.Request(r) }
