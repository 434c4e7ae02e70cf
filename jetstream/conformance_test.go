package jetstream_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"testing"

	"meshbox/jetstream"
	"meshbox/jetstream/natstest"
	"meshbox/stream"
	"meshbox/stream/logtest"
)

// conformance runs the log suite against logs over cluster c: each directory the suite gives
// is one stream (named after it), so a reopen on the same directory is a restart of the
// instance over the same stream. The opener does not Load: a log must know its position at
// open, as the suite checks.
func conformance(t *testing.T, c *natstest.Cluster, replicas int) {
	logtest.Run(t, func(t *testing.T, dir string) stream.Log {
		sum := sha256.Sum256([]byte(dir))
		name := "c" + hex.EncodeToString(sum[:6])
		l, err := jetstream.Open(context.Background(), c.Connect(), jetstream.Options{
			Stream: "S" + name, Subjects: name, Replicas: replicas, MaxBatch: 64,
		})
		if err != nil {
			t.Fatalf("open %s: %v", name, err)
		}
		return l
	})
}

func TestLogConformanceSingleServer(t *testing.T) {
	t.Parallel()
	conformance(t, natstest.Run(t), 1)
}

func TestLogConformanceCluster(t *testing.T) {
	t.Parallel()
	conformance(t, natstest.RunCluster(t, 3), 3)
}
