package server

import (
	"net/http"

	"meshbox/apierror"
)

// errorf is an error whose answer is decided here; apierror maps every other error.
func errorf(status int, code, msg string) *apierror.Error {
	return apierror.New(status, code, msg)
}

// writeError answers err as the native API does (apierror decides the status and code).
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	apierror.Writer{Log: s.log, Rejected: s.obs.ObserveRejected}.Write(w, r, err)
}
