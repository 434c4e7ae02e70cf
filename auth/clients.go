package auth

import (
	"fmt"
	"hash/crc32"
	"net"
	"net/http"
	"net/netip"
	"strconv"
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

// Origin is the scheme and host[:port] by which the caller reached this box, such as
// "http://192.168.1.20:8080": the address to hand back to it (the join box, the editor's Mesh
// address). Behind a trusted proxy X-Forwarded-Proto and X-Forwarded-Host name what the
// browser used; otherwise the connection (TLS or not) and the Host header do. The host is
// lowercased. ok is false when the host named is not a plausible host[:port]: a forged or
// broken Host header must not become an address meshbox writes into a page.
func (c Clients) Origin(r *http.Request) (origin string, ok bool) {
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if c.TrustProxy {
		if p := firstValue(r.Header.Get("X-Forwarded-Proto")); p == "http" || p == "https" {
			scheme = p
		}
		if h := firstValue(r.Header.Get("X-Forwarded-Host")); h != "" {
			host = h
		}
	}
	host = strings.ToLower(host)
	if !PlausibleHost(host) {
		return "", false
	}
	return scheme + "://" + host, true
}

// OriginVaries lists the request headers Origin reads, for a Vary header on answers built
// from it.
func (c Clients) OriginVaries() string {
	if c.TrustProxy {
		return "Host, X-Forwarded-Host, X-Forwarded-Proto"
	}
	return "Host"
}

// firstValue is the first entry of a comma-separated header, trimmed and lowercased: the one
// the outermost proxy (the one the browser talked to) wrote.
func firstValue(v string) string {
	first, _, _ := strings.Cut(v, ",")
	return strings.ToLower(strings.TrimSpace(first))
}

// PlausibleHost reports whether s is a host[:port] a browser could have used: a DNS name of
// letters, digits and hyphens, an IPv4 address or a bracketed IPv6 address, with an optional
// port from 1 to 65535. Anything else (spaces, quotes, slashes, user info, empty labels) is not.
func PlausibleHost(s string) bool {
	if s == "" || len(s) > 261 {
		return false
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && !strings.HasPrefix(port, ":") {
			return false
		}
		port = strings.TrimPrefix(port, ":")
		ip, err := netip.ParseAddr(host)
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return false
		}
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return false
			}
		}
		if !plausibleName(host) {
			return false
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] == '0' || port[0] == '+' {
			return false
		}
	}
	return true
}

// plausibleName is a DNS name or an IPv4 address: dot-separated labels of 1 to 63 letters,
// digits and hyphens, not starting or ending with a hyphen, 253 characters at most.
func plausibleName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
