package auth

import (
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"strings"
)

// Clients tells who sent a request: its address, as the limits and the per-address connection
// cap see it, and the domain meshbox assigns it. Every entrance (native API, Mesh v2, the
// dashboard) uses the same value, so a classroom lands in one domain whichever it uses.
type Clients struct {
	// TrustProxy takes the first X-Forwarded-For entry as the address (behind a reverse proxy).
	TrustProxy bool
	// DomainMode "ip" derives a caller's domain from its address (hashed with DomainSecret);
	// otherwise every caller gets SharedDomain.
	DomainMode   string
	DomainSecret string
	SharedDomain string
}

// IP is the caller's address; behind a trusted proxy the first X-Forwarded-For entry.
func (c Clients) IP(r *http.Request) string {
	if c.TrustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Domain is the domain assigned to a caller that names none.
func (c Clients) Domain(r *http.Request) string {
	if c.DomainMode == "ip" {
		return fmt.Sprintf("%08x", crc32.ChecksumIEEE([]byte(c.DomainSecret+c.IP(r))))
	}
	return c.SharedDomain
}
