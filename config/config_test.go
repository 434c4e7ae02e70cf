package config

import (
	"io"
	"testing"
	"time"
)

func TestEnvironmentSetsDefaultsAndFlagsOverride(t *testing.T) {
	env := map[string]string{"MESHBOX_ADDR": ":9000", "MESHBOX_EVENT_TTL": "30s", "MESHBOX_MAX_PAYLOAD": "100", "MESHBOX_NO_WEBSOCKET": "true"}
	c, err := Parse([]string{"--event-ttl", "1m"}, func(k string) string { return env[k] }, io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9000" || c.EventTTL != time.Minute || c.MaxPayloadBytes != 100 || !c.NoWebSocket {
		t.Fatalf("config = %+v", c)
	}
	d, err := Parse(nil, func(string) string { return "" }, io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != ":8080" || d.DB != "./meshbox.db" || d.EventTTL != 10*time.Minute || d.Synchronous != "NORMAL" || d.DomainMode != "shared" {
		t.Fatalf("defaults = %+v", d)
	}
}

func TestBadSettingsAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"--synchronous", "maybe"}, {"--domain-mode", "galaxy"}, {"--event-ttl", "0s"}, {"--max-payload", "-1"}, {"extra"},
	} {
		if _, err := Parse(args, func(string) string { return "" }, io.Discard, "test"); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := Parse(nil, func(k string) string {
		if k == "MESHBOX_EVENT_TTL" {
			return "soon"
		}
		return ""
	}, io.Discard, "test"); err == nil {
		t.Error("bad environment value accepted")
	}
}

func TestNATSSettings(t *testing.T) {
	env := map[string]string{"MESHBOX_NATS_URL": "nats://a:4222,nats://b:4222", "MESHBOX_NATS_REPLICAS": "3"}
	c, err := Parse([]string{"--nats-stream", "DISTRICT"}, func(k string) string { return env[k] }, io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !c.UsesNATS() || c.NATSReplicas != 3 || c.NATSStream != "DISTRICT" || c.NATSSubjects != "meshbox" || c.NATSMaxBatch != 1000 {
		t.Fatalf("config = %+v", c)
	}
	// A publish's events must fit one atomic batch.
	if c.MaxEventsPerPublish != 500 {
		t.Fatalf("max events per publish %d, want it cut to half the batch", c.MaxEventsPerPublish)
	}
	d, err := Parse(nil, func(string) string { return "" }, io.Discard, "test")
	if err != nil || d.UsesNATS() || d.MaxEventsPerPublish != 1000 {
		t.Fatalf("default uses NATS or changed limits: %+v %v", d, err)
	}
	for _, args := range [][]string{
		{"--nats-url", "nats://x", "--nats-replicas", "0"},
		{"--nats-url", "nats://x", "--nats-cert", "c.pem"},
		{"--nats-url", "nats://x", "--nats-stream", "a.b"},
	} {
		if _, err := Parse(args, func(string) string { return "" }, io.Discard, "test"); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}
