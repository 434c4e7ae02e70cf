package bench

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	"meshbox/app"
	"meshbox/config"
	"meshbox/jetstream/natstest"
)

// startMeshbox runs a real meshbox on loopback with the per-node and
// per-IP limits lifted, as the bench's documentation tells users to.
func startMeshbox(t *testing.T) string {
	t.Helper()
	a := app.StartTest(t, func(c *config.Config) {
		c.PublishRate, c.NodeByteRate = 0, 0
		c.IPRate, c.NodeRate, c.GroupRate, c.GroupCreateRate = 0, 0, 0, 0
		c.MaxConnsPerIP = 0
		c.Pprof = true
	})
	return a.URL()
}

// The scenarios at small scale against the real server: every item must
// reach every reader exactly once and in order, over every transport.
func TestScenariosAgainstMeshbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real meshbox")
	}
	t.Parallel()
	url := startMeshbox(t)
	pid := strconv.Itoa(os.Getpid()) // the server runs in this process

	for _, tr := range []string{transportWS, transportSSE, transportPoll} {
		t.Run("fanout-"+tr, func(t *testing.T) {
			r := runJSON(t, "-url", url, "-transport", tr, "-readers", "30", "-streams-per-node", "8",
				"-rate", "100", "-duration", "500ms", "-warmup", "100ms", "-pid", pid)
			assertComplete(t, r, 30)
			// Server and tool share this process, so both saw CPU time.
			if r.ServerProcess == nil || r.ServerProcess.CPUSeconds <= 0 || r.ToolCPUCores <= 0 {
				t.Fatalf("server process %+v, tool cpu %v", r.ServerProcess, r.ToolCPUCores)
			}
		})
	}
	t.Run("publish", func(t *testing.T) {
		r := runJSON(t, "-url", url, "-scenario", "publish", "-publishers", "8", "-duration", "500ms")
		if r.Published < 50 || r.PublishErrors != nil || r.AckLatency == nil {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("saturate", func(t *testing.T) {
		r := runJSON(t, "-url", url, "-scenario", "saturate", "-readers", "40", "-publishers", "3",
			"-duration", "500ms", "-warmup", "100ms", "-window", "300")
		assertComplete(t, r, 40)
		// Readers that fall behind get several items per frame.
		if r.Frames > r.Delivered {
			t.Fatalf("frames %d > deliveries %d", r.Frames, r.Delivered)
		}
	})
	t.Run("classroom", func(t *testing.T) {
		r := runJSON(t, "-url", url, "-scenario", "classroom", "-groups", "3", "-nodes", "6",
			"-data-rate", "20", "-event-rate", "5", "-duration", "500ms", "-warmup", "100ms", "-pid", pid)
		assertComplete(t, r, 6)
		if r.Readers != 18 || r.Groups != 3 || r.PublishErrors != nil {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("idle", func(t *testing.T) {
		r := runJSON(t, "-url", url, "-scenario", "idle", "-readers", "100", "-streams-per-node", "10",
			"-nodes", "4", "-duration", "200ms", "-pid", pid)
		if r.Connections != 100 || r.Groups != 3 || r.ServerProcess == nil {
			t.Fatalf("result %+v", r)
		}
	})
	t.Run("cpuprofile", func(t *testing.T) {
		prof := t.TempDir() + "/server.pprof"
		runJSON(t, "-url", url, "-scenario", "publish", "-publishers", "2", "-duration", "1s", "-cpuprofile", prof)
		if st, err := os.Stat(prof); err != nil || st.Size() == 0 {
			t.Fatalf("profile %v %v", st, err)
		}
	})
}

// The district scenario against one real meshbox, briefly and scaled down: every pupil's
// broadcasts and variables reach every pupil of its class once and in order, and the
// processes given with --pids are measured.
func TestDistrictAgainstMeshbox(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real meshbox")
	}
	t.Parallel()
	url := startMeshbox(t)
	pid := strconv.Itoa(os.Getpid())
	r := runJSON(t, "--url", url, "--scenario", "district", "--classes", "3", "--nodes", "6",
		"--burst-interval", "200ms", "--data-interval", "100ms", "--duration", "700ms", "--warmup", "100ms",
		"--pid", pid, "--pids", "instance="+pid)
	assertComplete(t, r, 6)
	if r.Readers != 18 || r.Groups != 3 || r.Publishers != 18 || r.PublishErrors != nil || r.AckLatency == nil {
		t.Fatalf("result %+v", r)
	}
	if len(r.Processes) != 1 || r.Processes[0].Name != "instance" || r.Processes[0].CPUSeconds <= 0 || r.AllCPUPerDelivery <= 0 {
		t.Fatalf("processes %+v, all cpu per delivery %v", r.Processes, r.AllCPUPerDelivery)
	}
}

// The district scenario over two meshbox instances sharing groups through one NATS server:
// each class writes to one instance and its pupils read from the other, so every delivery
// crossed NATS, and still every item reaches every pupil once and in order.
func TestDistrictAcrossTwoInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and two meshbox instances")
	}
	t.Parallel()
	a, b := twoInstances(t)
	r := runJSON(t, "--url", a.URL(), "--scenario", "district", "--classes", "2", "--nodes", "5",
		"--write-urls", a.URL()+","+b.URL(), "--read-urls", b.URL()+","+a.URL(),
		"--burst-interval", "200ms", "--data-interval", "100ms", "--duration", "700ms", "--warmup", "100ms")
	assertComplete(t, r, 5)
	if r.Readers != 10 || r.Groups != 2 || r.PublishErrors != nil {
		t.Fatalf("result %+v", r)
	}
}

// Publishers spread over several instances (--write-urls): each instance's publishers write to
// a group created through it, every acknowledgement is counted once, and the groups are
// dissolved through the instance that created them.
func TestPublishAcrossInstances(t *testing.T) {
	if testing.Short() {
		t.Skip("starts NATS and two meshbox instances")
	}
	t.Parallel()
	a, b := twoInstances(t)
	r := runJSON(t, "--url", a.URL(), "--scenario", "publish", "--publishers", "5",
		"--write-urls", a.URL()+","+b.URL(), "--duration", "500ms")
	if r.Publishers != 5 || r.Groups != 2 || r.Published == 0 || r.PublishErrors != nil || r.AckLatency.Count != r.Published {
		t.Fatalf("result %+v", r)
	}
	// Both instances committed events: each served its own publishers.
	for name, inst := range map[string]*app.App{"A": a, "B": b} {
		if n := appendedEvents(t, inst.URL()); n == 0 {
			t.Fatalf("instance %s committed no event", name)
		}
	}
}

// appendedEvents reads meshbox_items_appended_total{kind="event"} from an instance's /metrics.
func appendedEvents(t *testing.T, base string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(line, `meshbox_items_appended_total{kind="event"} `); ok {
			n, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// twoInstances starts NATS and two meshbox instances sharing groups through it, with the
// limits that would throttle the tool lifted.
func twoInstances(t *testing.T) (a, b *app.App) {
	t.Helper()
	nats := natstest.Run(t)
	cfg := func(c *config.Config) {
		c.NATSURL, c.NATSReplicas = nats.URLs(), 1
		c.PublishRate, c.NodeByteRate = 0, 0
		c.IPRate, c.NodeRate, c.GroupRate, c.GroupCreateRate = 0, 0, 0, 0
		c.MaxConnsPerIP = 0
	}
	return app.StartTest(t, cfg), app.StartTest(t, cfg)
}
