package lan_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/mdns/v2"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"meshbox/app"
	"meshbox/config"
	"meshbox/lan"
	"meshbox/netns"
)

// testLink is the namespace's stand-in for a classroom network: a veth pair, both ends in the
// test's own network namespace, so whatever is sent on it never leaves this test.
var testLink = []string{
	"ip link add lan0 type veth peer name lan1",
	"ip addr add 192.0.2.1/24 dev lan0",
	"ip link set lan1 up",
	"ip link set lan0 up",
}

// browser is a DNS-SD client built from the library's own client side, on the given interfaces.
func browser(t *testing.T, ifaces []net.Interface) *mdns.Conn {
	t.Helper()
	l4, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: 5353})
	if err != nil {
		t.Fatal(err)
	}
	var v6 *ipv6.PacketConn
	if l6, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("ff02::"), Port: 5353}); err == nil {
		v6 = ipv6.NewPacketConn(l6)
	}
	c, err := mdns.NewServer(ipv4.NewPacketConn(l4), v6, mdns.WithInterfaces(ifaces...),
		mdns.WithIncludeLoopback(true), mdns.WithQueryInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// browse waits for the first _http._tcp instance named name.
func browse(t *testing.T, c *mdns.Conn, name string) mdns.ServiceEvent {
	t.Helper()
	found := make(chan mdns.ServiceEvent, 16)
	c.OnServiceDiscovered(func(e mdns.ServiceEvent) {
		if e.Instance.Instance == name {
			select {
			case found <- e:
			default:
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go c.Browse(ctx, lan.ServiceType)
	select {
	case e := <-found:
		return e
	case <-ctx.Done():
		t.Fatalf("no %s instance %q found", lan.ServiceType, name)
		return mdns.ServiceEvent{}
	}
}

func text(e mdns.ServiceEvent) map[string]string {
	m := map[string]string{}
	for _, kv := range e.Instance.Text {
		m[kv.Key] = string(kv.Value)
	}
	return m
}

func iface(t *testing.T, name string) net.Interface {
	t.Helper()
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return *ifc
}

// The advertiser answers on the loopback interface: a browser finds the service with its port
// and TXT record, and resolves the host name to the loopback address.
func TestBrowseAndResolveOnLoopback(t *testing.T) {
	if !netns.Run(t, "ip link set lo multicast on") {
		return
	}
	lo := []net.Interface{iface(t, "lo")}
	adv, err := lan.Start(lan.Config{Name: "meshbox", Port: 8080, Interfaces: lo,
		Text: [][2]string{{"path", "/"}, {"meshv2", "/graphql"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer adv.Stop()
	if adv.Host() != "meshbox.local" {
		t.Fatalf("host %q", adv.Host())
	}
	c := browser(t, lo)
	e := browse(t, c, "meshbox")
	if e.Instance.Port != 8080 || e.Instance.Host != "meshbox.local." || text(e)["path"] != "/" || text(e)["meshv2"] != "/graphql" {
		t.Fatalf("found %+v, text %v", e.Instance, text(e))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, addr, err := c.QueryAddr(ctx, "meshbox.local")
	if err != nil || !addr.IsLoopback() {
		t.Fatalf("meshbox.local resolved to %v, %v", addr, err)
	}
}

// A whole meshbox, started as main starts it, advertises itself on the network interface by
// default: a browser on that network finds it at its real port, resolves meshbox.local to the
// box's address, and reaches the dashboard and the Mesh v2 endpoint the TXT record names.
func TestMeshboxIsFoundByName(t *testing.T) {
	if !netns.Run(t, testLink...) {
		return
	}
	editorDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(editorDir, "index.html"), []byte("<title>Smalruby</title>"), 0o644); err != nil {
		t.Fatal(err)
	}
	a := app.StartTest(t, func(c *config.Config) {
		c.Addr = ":0"
		c.MDNS = true
		c.Smalruby = editorDir
	})
	_, p, _ := net.SplitHostPort(strings.TrimPrefix(a.URL(), "http://"))
	port, _ := strconv.Atoi(p)
	c := browser(t, []net.Interface{iface(t, "lan0")})
	e := browse(t, c, "meshbox")
	if int(e.Instance.Port) != port || text(e)["path"] != "/" || text(e)["meshv2"] != "/graphql" {
		t.Fatalf("found %+v, text %v, want port %d", e.Instance, text(e), port)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, addr, err := c.QueryAddr(ctx, "meshbox.local")
	if err != nil || addr.String() != "192.0.2.1" {
		t.Fatalf("meshbox.local resolved to %v, %v", addr, err)
	}
	if text(e)["smalruby"] != "/smalruby/" {
		t.Errorf("TXT smalruby=%q, want /smalruby/", text(e)["smalruby"])
	}
	if resp, err := http.Get(fmt.Sprintf("http://%s:%d%s", addr, port, text(e)["smalruby"])); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET the editor's path: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, path := range []string{text(e)["path"], text(e)["meshv2"]} {
		resp, err := http.Post(fmt.Sprintf("http://%s:%d%s", addr, port, path), "application/json", strings.NewReader(`{"query":"{__typename}"}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			t.Fatalf("POST %s: %d: the TXT record names a path meshbox does not serve", path, resp.StatusCode)
		}
	}
}

// With mDNS off (--mdns=false, MESHBOX_MDNS=false), or listening on loopback only, meshbox opens
// no mDNS socket at all, so it neither answers nor sends anything on UDP 5353.
func TestMDNSOffOpensNoSocket(t *testing.T) {
	if !netns.Run(t, testLink...) {
		return
	}
	on := app.StartTest(t, func(c *config.Config) { c.Addr = ":0"; c.MDNS = true })
	if !udpPortOpen(t, 5353) {
		t.Fatal("mDNS on, but no socket on UDP 5353: the check below would prove nothing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	on.Shutdown(ctx)
	if udpPortOpen(t, 5353) {
		t.Fatal("mDNS socket still open after shutdown")
	}
	// A box that listens on loopback only is not advertised either: no one on the LAN could
	// reach it.
	app.StartTest(t, func(c *config.Config) { c.Addr = "127.0.0.1:0"; c.MDNS = true })
	if udpPortOpen(t, 5353) {
		t.Fatal("a loopback-only box opened an mDNS socket")
	}
	for _, setting := range [][]string{{"--mdns=false"}, {"MESHBOX_MDNS=false"}} {
		env := map[string]string{}
		var args []string
		if k, v, ok := strings.Cut(setting[0], "="); ok && !strings.HasPrefix(k, "-") {
			env[k] = v
		} else {
			args = setting
		}
		cfg, err := config.Parse(args, func(k string) string { return env[k] }, io.Discard, "test")
		if err != nil || cfg.MDNS {
			t.Fatalf("%v: mdns=%v, %v", setting, cfg.MDNS, err)
		}
		app.StartTest(t, func(c *config.Config) { c.Addr = ":0"; c.MDNS = cfg.MDNS })
		if udpPortOpen(t, 5353) {
			t.Fatalf("%v: a socket is open on UDP 5353", setting)
		}
	}
}

// udpPortOpen reports whether any socket in this network namespace is bound to the UDP port.
func udpPortOpen(t *testing.T, port int) bool {
	t.Helper()
	for _, f := range []string{"/proc/net/udp", "/proc/net/udp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 1 && strings.HasSuffix(fields[1], fmt.Sprintf(":%04X", port)) {
				return true
			}
		}
	}
	return false
}
