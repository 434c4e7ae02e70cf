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
	if d.Addr != ":8080" || d.DB != "./meshbox.db" || d.EventTTL != 10*time.Minute || d.Synchronous != "NORMAL" || d.DomainMode != "shared" ||
		d.GraphQLIntrospection {
		t.Fatalf("defaults = %+v", d)
	}
	g, err := Parse([]string{"--graphql-introspection"}, func(k string) string { return "" }, io.Discard, "test")
	if err != nil || !g.GraphQLIntrospection {
		t.Fatalf("--graphql-introspection: %+v, %v", g, err)
	}
	e, err := Parse(nil, func(k string) string { return map[string]string{"MESHBOX_GRAPHQL_INTROSPECTION": "true"}[k] }, io.Discard, "test")
	if err != nil || !e.GraphQLIntrospection {
		t.Fatalf("MESHBOX_GRAPHQL_INTROSPECTION: %+v, %v", e, err)
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
