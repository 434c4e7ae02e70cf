package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"meshbox/netns"
)

// offlineNet is a namespace with a stand-in classroom network (a veth pair whose both ends stay
// in the namespace) carrying default routes for IPv4 and IPv6, so that any connection meshbox
// tried to the outside world would be routed, and counted, instead of failing before it left.
// nftables counts every packet leaving through it: mDNS to its multicast groups (with the
// IGMP/MLD membership reports joining them) apart, everything else as "other".
var offlineNet = []string{
	"ip link add lan0 type veth peer name lan1",
	"ip addr add 192.0.2.1/24 dev lan0",
	"ip link set lan1 up",
	"ip link set lan0 up",
	"ip route add default dev lan0",
	"ip -6 route add default dev lan0",
	`nft -f - <<'EOF'
table inet probe {
	counter mdns {}
	counter other {}
	chain out {
		type filter hook output priority 0; policy accept;
		oifname "lo" accept
		meta l4proto { ipv6-icmp, igmp } accept
		udp dport 5353 ip daddr 224.0.0.251 counter name mdns accept
		udp dport 5353 ip6 daddr ff02::fb counter name mdns accept
		counter name other
	}
}
EOF`,
}

// TestMakesNoOutboundConnection starts meshbox as main does (mDNS on, the default) in a network
// namespace whose routes would carry any outgoing packet, uses every entrance (dashboard, API,
// streams, Mesh v2, metrics), shuts it down, and checks that nothing but mDNS left the box. A
// deliberate connection from the test afterwards proves the counter sees outbound traffic.
func TestMakesNoOutboundConnection(t *testing.T) {
	if _, err := exec.LookPath("nft"); err != nil {
		if os.Getenv("MESHBOX_E2E") != "" {
			t.Fatal("needs nft (apt-get install nftables)")
		}
		t.Skip("needs nft (apt-get install nftables)")
	}
	if !netns.Run(t, offlineNet...) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, done, out := startRunEnv(t, ctx, map[string]string{
		"MESHBOX_DB": filepath.Join(t.TempDir(), "meshbox.db"), "MESHBOX_ADDR": ":0", "MESHBOX_ADMIN_TOKEN": "t0ken-long-enough-1",
	})

	get := func(path string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer t0ken-long-enough-1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, p := range []string{"/", "/meshbox.js", "/readyz", "/healthz", "/metrics", "/api/v1/domain", "/api/v1/groups"} {
		get(p)
	}
	j := createGroup(t, base, "offline")
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/groups/"+j.Group.ID+"/events", strings.NewReader(`{"events":[{"name":"e"}]}`))
	req.Header.Set("Authorization", "Bearer "+j.Token)
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	get("/api/v1/groups/" + j.Group.ID + "/events?since=0&token=" + j.Token)
	resp, err := http.Post(base+"/graphql", "application/json", strings.NewReader(`{"query":"mutation { createDomain }"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "advertised on the LAN") {
		t.Fatalf("mDNS did not start, so this test did not cover it:\n%s", out)
	}
	if n := packets(t, "other"); n != 0 {
		t.Fatalf("meshbox sent %d packets that were not mDNS", n)
	}
	t.Logf("mDNS packets sent: %d (the documented exception)", packets(t, "mdns"))

	// The control: an outbound connection attempt is seen.
	c, err := net.DialTimeout("tcp", "192.0.2.9:80", 200*time.Millisecond)
	if err == nil {
		c.Close()
	}
	if n := packets(t, "other"); n == 0 {
		t.Fatal("a connection attempt was not counted: the check above proves nothing")
	}
}

// packets reads an nftables counter of the probe table.
func packets(t *testing.T, counter string) int {
	t.Helper()
	out, err := exec.Command("nft", "list", "counter", "inet", "probe", counter).CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("nft counter output %q", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}
