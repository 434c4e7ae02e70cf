// Package natstest runs NATS servers with JetStream inside a test process, on loopback with
// their store in the test's temporary directory: one server, or a cluster of several, so the
// JetStream log and multi-instance meshbox are tested without any outside service.
package natstest

import (
	"fmt"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Cluster is a set of running servers.
type Cluster struct {
	t       testing.TB
	Servers []*server.Server
}

// Run starts one server with JetStream, shut down when the test ends.
func Run(t testing.TB) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	c.Servers = append(c.Servers, start(t, options(t, "n1", "", nil)))
	return c
}

// RunCluster starts n servers with JetStream, routed to each other as one cluster, and waits
// until JetStream has elected a meta leader.
func RunCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c := &Cluster{t: t}
	// The first server's route port is picked by the system; the others route to it.
	// Every server routes to every other; the route ports are picked free beforehand.
	ports := make([]int, n)
	for i := range ports {
		ports[i] = freePort(t)
	}
	for i := range n {
		var routes []*url.URL
		for j, p := range ports {
			if j != i {
				routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", p)})
			}
		}
		o := options(t, fmt.Sprintf("n%d", i+1), "meshbox-test", routes)
		o.Cluster.Port = ports[i]
		// A clustered server is ready for clients only once JetStream has a meta leader,
		// which needs the others: start all, then wait.
		c.Servers = append(c.Servers, launch(t, o))
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		ready := true
		for _, s := range c.Servers {
			if !s.ReadyForConnections(time.Millisecond) || s.NumRoutes() < n-1 || !s.JetStreamIsCurrent() {
				ready = false
			}
		}
		// Streams are placed only on peers the meta leader knows to be online with current
		// stats: wait for all of them, or creating a replicated stream fails ("peer offline").
		if l := c.leader(); ready && l != nil && len(l.JetStreamClusterPeers()) == n {
			return c
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range c.Servers {
		t.Logf("%s: ready %v routes %d current %v leader %v", s.Name(), s.ReadyForConnections(0), s.NumRoutes(), s.JetStreamIsCurrent(), s.JetStreamIsLeader())
	}
	t.Fatalf("cluster of %d did not form", n)
	return nil
}

func (c *Cluster) leader() *server.Server {
	for _, s := range c.Servers {
		if s.JetStreamIsLeader() {
			return s
		}
	}
	return nil
}

// URLs is the client URLs of the running servers, comma-separated as --nats-url takes them.
func (c *Cluster) URLs() string {
	var urls []string
	for _, s := range c.Servers {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// Connect opens a client connection to the cluster, closed when the test ends.
func (c *Cluster) Connect() *nats.Conn {
	c.t.Helper()
	nc, err := nats.Connect(c.URLs(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(nc.Close)
	return nc
}

// Stop shuts server i down (a NATS node dying).
func (c *Cluster) Stop(i int) {
	c.Servers[i].Shutdown()
	c.Servers[i].WaitForShutdown()
}

func options(t testing.TB, name, cluster string, routes []*url.URL) *server.Options {
	o := &server.Options{
		ServerName: name,
		Host:       "127.0.0.1",
		Port:       -1,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   t.TempDir(),
	}
	if cluster != "" {
		o.Cluster = server.ClusterOpts{Name: cluster, Host: "127.0.0.1", Port: -1}
		o.Routes = routes
	}
	return o
}

func start(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s := launch(t, o)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	return s
}

// launch starts a server without waiting for it, shut down when the test ends.
func launch(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
