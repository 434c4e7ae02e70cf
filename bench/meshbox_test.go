package bench

import (
	"os"
	"strconv"
	"testing"

	"meshbox/app"
	"meshbox/config"
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
