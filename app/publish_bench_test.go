package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"testing"

	"meshbox/app"
	"meshbox/config"
)

// BenchmarkPublish is one publish request end to end in-process: a real HTTP client posting a
// single event to a real meshbox on loopback, acknowledged after COMMIT, from as many
// concurrent publishers as GOMAXPROCS × 8 (up to 200) (each its own node, as in `meshbox bench -scenario
// publish`).
func BenchmarkPublish(b *testing.B) {
	a := app.StartTest(b, func(c *config.Config) {
		c.PublishRate, c.NodeRate, c.GroupRate, c.IPRate, c.NodeByteRate = 0, 0, 0, 0, 0
		c.MaxNodesPerClientGroup = 0 // 200 publishers from one address
	})
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	post := func(path, token string, body any) map[string]any {
		raw, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, a.URL()+path, bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 {
			b.Fatalf("%s: %d %s", path, resp.StatusCode, out)
		}
		var m map[string]any
		_ = json.Unmarshal(out, &m)
		return m
	}
	g := post("/api/v1/groups", "", map[string]any{"name": "bench"})
	gid := g["group"].(map[string]any)["id"].(string)
	nodes := make(chan string, 200) // under the default 250 nodes per group
	for range cap(nodes) {
		j := post("/api/v1/groups/"+gid+"/nodes", "", map[string]any{"name": "p"})
		nodes <- j["token"].(string)
	}
	body := []byte(`{"events":[{"name":"go","payload":"0123456789012345678901234567890123456789012345678901234567890123"}]}`)
	b.SetParallelism(8)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		token := <-nodes
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, a.URL()+"/api/v1/groups/"+gid+"/events", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := hc.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("publish: %d", resp.StatusCode)
				return
			}
		}
	})
}
