package web

import (
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strings"

	"meshbox/apierror"
	"meshbox/web/qr"
)

// HostAddr is one address of this machine's network interfaces.
type HostAddr struct {
	IP        netip.Addr
	Interface string // its interface's name, such as eth0 or docker0
}

// Machine is what the join helper knows of the computer meshbox runs on. Tests give a fixed one;
// New fills a nil one from the real interfaces.
type Machine struct {
	// Addrs lists the unicast addresses of the interfaces that are up.
	Addrs func() []HostAddr
	// InContainer is true when meshbox runs in a container, whose own addresses other
	// computers usually cannot reach (the host maps a port to it).
	InContainer bool
}

// RealMachine reads the interfaces of this computer and whether it is a container.
func RealMachine() *Machine {
	_, docker := os.Stat("/.dockerenv")
	_, podman := os.Stat("/run/.containerenv")
	return &Machine{
		Addrs:       interfaceAddrs,
		InContainer: docker == nil || podman == nil || os.Getenv("KUBERNETES_SERVICE_HOST") != "",
	}
}

// JoinInfo is the address students should use, with how it was chosen, as the dashboard and
// /try show it.
type JoinInfo struct {
	// URLs are addresses of this box, best first, each ending in "/".
	URLs []string `json:"urls"`
	// Source tells where the first address came from: "public-url" (the setting), "request"
	// (the address this page was opened with), "network" (this computer's interfaces) or
	// "this-computer" (only this computer can use it).
	Source string `json:"source"`
	// Warning, when set, says why students may not reach the addresses: "loopback" (meshbox
	// listens on this computer only), "container" (only a container's internal addresses are
	// known) or "no-network" (no network address was found).
	Warning string `json:"warning,omitempty"`
	// Smalruby, when this box serves the Smalruby editor, is its path ("/smalruby/"); the join
	// box offers ADDRESS/smalruby/?mesh=DOMAIN.
	Smalruby string `json:"smalruby,omitempty"`
	// Domain, with Smalruby, is the Mesh domain this caller lands in (the shared one, or with
	// --domain-mode ip its address's): the editor link names it, so every computer of the
	// class meets there, whatever domain a browser remembers from before.
	Domain string `json:"domain,omitempty"`
}

// Warnings and sources of JoinInfo.
const (
	joinPublic       = "public-url"
	joinRequest      = "request"
	joinNetwork      = "network"
	joinThisComputer = "this-computer"
	warnLoopback     = "loopback"
	warnContainer    = "container"
	warnNoNetwork    = "no-network"
)

// join works out the addresses students' devices can use to reach this box: the public URL
// when one is set; otherwise the address the page was opened with when it is not this
// computer's own, then this computer's network addresses on the listening port. Loopback is
// offered only when meshbox listens on nothing else, and container-internal or virtual-bridge
// addresses only when nothing better is known, each time with a warning the page explains.
func (h *Handler) join(r *http.Request) JoinInfo {
	info := h.joinAddrs(r)
	if h.cfg.Smalruby != "" {
		info.Smalruby = h.cfg.Smalruby
		info.Domain = h.cfg.Clients.Domain(r)
	}
	return info
}

// joinAddrs is join's addresses, with where they came from.
func (h *Handler) joinAddrs(r *http.Request) JoinInfo {
	if h.cfg.PublicURL != "" {
		return JoinInfo{URLs: []string{withSlash(h.cfg.PublicURL)}, Source: joinPublic}
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	listenHost, port := splitListen(h.cfg.ListenAddr)
	if port == "" || port == "0" {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			if _, p, err := net.SplitHostPort(la.String()); err == nil {
				port = p
			}
		}
	}
	// The address this page was opened with, as the browser used it (through a trusted proxy:
	// its forwarded scheme and host); a Host header that names no plausible host is not
	// offered to anyone.
	origin, ownOK := h.cfg.Clients.Origin(r)
	own := withSlash(origin)
	if !ownOK {
		own = withSlash(scheme + "://localhost")
		if port != "" {
			own = withSlash(scheme + "://" + net.JoinHostPort("localhost", port))
		}
	}
	if isLoopbackHost(listenHost) {
		return JoinInfo{URLs: []string{own}, Source: joinThisComputer, Warning: warnLoopback}
	}
	info := JoinInfo{Source: joinNetwork}
	seen := map[string]bool{}
	add := func(u string) {
		u = withSlash(u)
		if !seen[u] {
			seen[u] = true
			info.URLs = append(info.URLs, u)
		}
	}
	if ownOK && !isLoopbackHost(strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://")) {
		add(own)
		info.Source = joinRequest
	}
	if port != "" {
		var addrs []HostAddr
		listenIP, err := netip.ParseAddr(strings.Trim(listenHost, "[]"))
		switch {
		case listenHost == "" || (err == nil && listenIP.IsUnspecified()):
			addrs = h.machine.Addrs()
		case err == nil:
			addrs = []HostAddr{{IP: listenIP.Unmap()}}
		default: // a host name: students' devices resolve it as this computer did
			add(scheme + "://" + net.JoinHostPort(listenHost, port))
		}
		ranked := rankAddrs(addrs)
		// A container's own addresses, and virtual bridges, are reachable only from this
		// computer: offer them only when nothing better is known, and say so.
		if h.machine.InContainer {
			if len(info.URLs) == 0 && len(ranked) > 0 {
				info.Warning = warnContainer
			} else {
				ranked = nil
			}
		}
		for _, a := range ranked {
			add(scheme + "://" + net.JoinHostPort(a.String(), port))
		}
		// The box's mDNS name after its addresses: older Android devices do not resolve
		// .local names.
		if h.cfg.LANHost != "" && len(ranked) > 0 {
			add(scheme + "://" + net.JoinHostPort(h.cfg.LANHost, port))
		}
	}
	if len(info.URLs) == 0 {
		return JoinInfo{URLs: []string{own}, Source: joinThisComputer, Warning: warnNoNetwork}
	}
	return info
}

// rankAddrs orders addresses for people to type: IPv4 before IPv6 (offered only when there is
// no IPv4), private LAN ranges first, and virtual bridges (containers, virtual machines) left
// out when a real interface has an address.
func rankAddrs(addrs []HostAddr) []netip.Addr {
	type cand struct {
		ip      netip.Addr
		virtual bool
	}
	var cs []cand
	real4, any4 := false, false
	for _, a := range addrs {
		ip := a.IP.Unmap()
		if !ip.IsValid() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified() {
			continue
		}
		c := cand{ip: ip, virtual: isVirtualInterface(a.Interface)}
		cs = append(cs, c)
		if ip.Is4() {
			any4 = true
			real4 = real4 || !c.virtual
		}
	}
	var out []netip.Addr
	for _, c := range cs {
		if (any4 && !c.ip.Is4()) || (real4 && c.virtual) {
			continue
		}
		out = append(out, c.ip)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].IsPrivate() && !out[j].IsPrivate() })
	return out
}

// virtualPrefixes name the interfaces of container bridges, virtual machines and tunnels.
var virtualPrefixes = []string{"docker", "br-", "veth", "cni", "podman", "virbr", "lxcbr", "lxdbr", "flannel", "cali", "vboxnet", "vmnet", "tun", "tap", "wg", "zt", "tailscale", "kube"}

func isVirtualInterface(name string) bool {
	for _, p := range virtualPrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func withSlash(u string) string { return strings.TrimRight(u, "/") + "/" }

// splitListen splits the --addr setting into host and port; a bare host yields no port.
func splitListen(addr string) (host, port string) {
	if h, p, err := net.SplitHostPort(addr); err == nil {
		return h, p
	}
	return addr, ""
}

// ListensOnLoopback reports whether a listen address (the --addr setting) accepts connections
// from this computer only.
func ListensOnLoopback(addr string) bool {
	host, _ := splitListen(addr)
	return isLoopbackHost(host)
}

// isLoopbackHost reports whether host (with or without a port) names this computer only. The
// empty host and unspecified addresses are not loopback: they listen on every network.
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
	return err == nil && a.Unmap().IsLoopback()
}

// interfaceAddrs returns the addresses of the interfaces that are up, except loopback ones.
func interfaceAddrs() []HostAddr {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var out []HostAddr
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
			out = append(out, HostAddr{IP: pfx.Addr().Unmap(), Interface: ifc.Name})
		}
	}
	return out
}

// joinJSON answers the join information alone, for /try's share link.
func (h *Handler) joinJSON(w http.ResponseWriter, r *http.Request) {
	apierror.WriteJSON(w, http.StatusOK, h.join(r))
}

// maxQRText bounds the text the QR endpoint encodes; addresses are far shorter.
const maxQRText = 200

// qrSVG draws a QR code of ?text= as SVG, so the join helper needs no network and no library.
func (h *Handler) qrSVG(w http.ResponseWriter, r *http.Request) {
	text := r.URL.Query().Get("text")
	if text == "" || len(text) > maxQRText {
		h.errs.Write(w, r, apierror.New(http.StatusBadRequest, "bad_request", "text must be 1 to 200 bytes"))
		return
	}
	code, err := qr.Encode(text)
	if err != nil {
		h.errs.Write(w, r, apierror.New(http.StatusBadRequest, "bad_request", err.Error()))
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "public, max-age=86400") // same text, same code
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write([]byte(code.SVG()))
}

// TeacherLink is the address to offer the teacher at start-up, ending in "/": the public URL;
// else, when meshbox listens on every network, this computer's best network address on the
// port of base (so a phone can scan it); else base, the address it listens on.
func (h *Handler) TeacherLink(base string) string {
	return TeacherLinkFor(h.cfg.PublicURL, h.cfg.ListenAddr, h.machine, base)
}

// TeacherLinkFor is the teacher's link for a box with these settings on machine m, reached
// at base: what TeacherLink answers, for `meshbox admin-link`, which runs without a server.
func TeacherLinkFor(publicURL, listenAddr string, m *Machine, base string) string {
	if publicURL != "" {
		return withSlash(publicURL)
	}
	u, err := url.Parse(base)
	if err != nil || u.Port() == "" || m.InContainer {
		return withSlash(base)
	}
	host, _ := splitListen(listenAddr)
	ip, perr := netip.ParseAddr(strings.Trim(host, "[]"))
	if host != "" && (perr != nil || !ip.IsUnspecified()) {
		return withSlash(base)
	}
	if ranked := rankAddrs(m.Addrs()); len(ranked) > 0 {
		return withSlash(u.Scheme + "://" + net.JoinHostPort(ranked[0].String(), u.Port()))
	}
	return withSlash(base)
}
