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

func TestMDNSIsOnUnlessTurnedOff(t *testing.T) {
	none := func(string) string { return "" }
	c, err := Parse(nil, none, io.Discard, "test")
	if err != nil || !c.MDNS || c.MDNSName != "meshbox" {
		t.Fatalf("default mdns=%v name=%q, %v", c.MDNS, c.MDNSName, err)
	}
	if c, err := Parse([]string{"--mdns=false"}, none, io.Discard, "test"); err != nil || c.MDNS {
		t.Fatalf("--mdns=false: mdns=%v, %v", c.MDNS, err)
	}
	env := func(k string) string {
		return map[string]string{"MESHBOX_MDNS": "false", "MESHBOX_MDNS_NAME": "room-12"}[k]
	}
	if c, err := Parse(nil, env, io.Discard, "test"); err != nil || c.MDNS || c.MDNSName != "room-12" {
		t.Fatalf("MESHBOX_MDNS=false: mdns=%v name=%q, %v", c.MDNS, c.MDNSName, err)
	}
	for _, bad := range []string{"two words", "dots.local", "-x", ""} {
		if _, err := Parse([]string{"--mdns-name", bad}, none, io.Discard, "test"); err == nil {
			t.Errorf("mdns-name %q accepted", bad)
		}
	}
}

func TestMemoryLimit(t *testing.T) {
	none := func(string) string { return "" }
	if c, _ := Parse(nil, none, io.Discard, "test"); c.MemoryLimit != 0 {
		t.Fatalf("default memory limit %d, want none (GOMEMLIMIT applies)", c.MemoryLimit)
	}
	c, err := Parse([]string{"--memory-limit", "300MiB"}, none, io.Discard, "test")
	if err != nil || c.MemoryLimit != 300<<20 {
		t.Fatalf("300MiB = %d, %v", c.MemoryLimit, err)
	}
	c, err = Parse(nil, func(k string) string { return map[string]string{"MESHBOX_MEMORY_LIMIT": "1GiB"}[k] }, io.Discard, "test")
	if err != nil || c.MemoryLimit != 1<<30 {
		t.Fatalf("MESHBOX_MEMORY_LIMIT=1GiB = %d, %v", c.MemoryLimit, err)
	}
	if _, err := Parse([]string{"--memory-limit", "lots"}, none, io.Discard, "test"); err == nil {
		t.Fatal("memory-limit lots accepted")
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1048576": 1 << 20, "512KiB": 512 << 10, "256MiB": 256 << 20, "2GiB": 2 << 30, "300MB": 300e6, "1gb": 1e9, "64B": 64, " 8 MiB ": 8 << 20} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "0", "1.5GiB", "12 apples", "99999999999TiB"} {
		if _, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) accepted", in)
		}
	}
}
