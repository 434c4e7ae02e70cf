package web

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"meshbox/web/qr"
)

// joinURLs lists addresses students' devices can use to reach this box, best first: the
// configured public URL, the address the teacher used when it is not loopback, then the box's
// LAN addresses on the port the request came in on, then its mDNS name (lanHost, such as
// meshbox.local) when it advertises one: after the addresses, as older Android devices do not
// resolve .local names. A teacher who opens the dashboard on the box itself (localhost) still
// gets a URL that works from the classroom.
func joinURLs(r *http.Request, public, lanHost string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(u string) {
		u = strings.TrimRight(u, "/") + "/"
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	if public != "" {
		add(public)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !isLoopbackHost(r.Host) {
		add(scheme + "://" + r.Host)
	}
	port := ""
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if _, p, err := net.SplitHostPort(la.String()); err == nil {
			port = p
		}
	}
	if port != "" {
		var v6 []string
		for _, a := range lanAddrs() {
			if a.Is4() {
				add(scheme + "://" + net.JoinHostPort(a.String(), port))
			} else {
				v6 = append(v6, scheme+"://"+net.JoinHostPort(a.String(), port))
			}
		}
		if lanHost != "" {
			add(scheme + "://" + net.JoinHostPort(lanHost, port))
		}
		// IPv6 addresses are long to type; offer them only when there is no IPv4 one.
		if len(out) == 0 {
			for _, u := range v6 {
				add(u)
			}
		}
	}
	if len(out) == 0 {
		add(scheme + "://" + r.Host)
	}
	return out
}

func isLoopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && (a.IsLoopback() || a.IsUnspecified())
}

// lanAddrs returns the unicast addresses of the interfaces that are up, without loopback and
// link-local ones.
func lanAddrs() []netip.Addr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr().Unmap()
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
				continue
			}
			out = append(out, ip)
		}
	}
	return out
}

// maxQRText bounds the text the QR endpoint encodes; addresses are far shorter.
const maxQRText = 200

// qrSVG draws a QR code of ?text= as SVG, so the join helper needs no network and no library.
func (h *Handler) qrSVG(w http.ResponseWriter, r *http.Request) {
	text := r.URL.Query().Get("text")
	if text == "" || len(text) > maxQRText {
		writeError(w, http.StatusBadRequest, "bad_request", "text must be 1 to 200 bytes")
		return
	}
	code, err := qr.Encode(text)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "public, max-age=86400") // same text, same code
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(code.SVG()))
}
