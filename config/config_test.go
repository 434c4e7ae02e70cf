package config

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEnvironmentSetsDefaultsAndFlagsOverride(t *testing.T) {
	env := map[string]string{"MESHBOX_ADDR": ":9000", "MESHBOX_EVENT_TTL": "30s", "MESHBOX_MAX_PAYLOAD": "100", "MESHBOX_NO_WEBSOCKET": "true", "MESHBOX_PUBLIC_URL": "http://192.168.1.20:9000"}
	c, err := Parse([]string{"--event-ttl", "1m", "--log-level=DEBUG"}, func(k string) string { return env[k] }, io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":9000" || c.EventTTL != time.Minute || c.MaxPayloadBytes != 100 || !c.NoWebSocket || c.PublicURL != "http://192.168.1.20:9000" || c.LogLevel != "debug" {
		t.Fatalf("config = %+v", c)
	}
	if c.Source("event-ttl") != "--event-ttl" || c.Source("addr") != "MESHBOX_ADDR" || c.Source("db") != "--db" {
		t.Errorf("sources: %s %s %s", c.Source("event-ttl"), c.Source("addr"), c.Source("db"))
	}
	d, err := Parse(nil, func(string) string { return "" }, io.Discard, "test")
	if err != nil {
		t.Fatal(err)
	}
	if d.Addr != ":8080" || d.DB != "./meshbox.db" || d.EventTTL != 10*time.Minute || d.Synchronous != "NORMAL" || d.DomainMode != "shared" || d.LogFormat != "text" || d.PublicURL != "" || d.GraphQLIntrospection {
		t.Fatalf("defaults = %+v", d)
	}
	if b, err := Parse([]string{"--trust-proxy"}, func(string) string { return "" }, io.Discard, "test"); err != nil || !b.TrustProxy {
		t.Fatalf("bare boolean flag: %v %v", b.TrustProxy, err)
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

// TestBadSettingsAreOneLine checks the exact message of each kind of bad setting: one line with
// the setting as given (flag or environment), the value and what is accepted.
func TestBadSettingsAreOneLine(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--event-ttl=abc"}, nil, "--event-ttl=abc is not a duration; use a number with a unit, such as 90s, 10m or 1h"},
		{nil, map[string]string{"MESHBOX_EVENT_TTL": "abc"}, "MESHBOX_EVENT_TTL=abc is not a duration; use a number with a unit, such as 90s, 10m or 1h"},
		{[]string{"--event-ttl", "0s"}, nil, "--event-ttl=0s is too short; use a duration above 0, such as 10m"},
		{nil, map[string]string{"MESHBOX_HOST_TTL": "30"}, "MESHBOX_HOST_TTL=30 is not a duration; use a number with a unit, such as 90s, 10m or 1h"},
		{[]string{"--synchronous=bogus"}, nil, "--synchronous=bogus is not a synchronous mode; use normal or full"},
		{nil, map[string]string{"MESHBOX_TRUST_PROXY": "maybe"}, "MESHBOX_TRUST_PROXY=maybe is not true or false; use true or false"},
		{[]string{"--trust-proxy=maybe"}, nil, "--trust-proxy=maybe is not true or false; use true or false"},
		{[]string{"--log-level=loud"}, nil, "--log-level=loud is not a log level; use debug, info, warn or error"},
		{[]string{"--log-format=xml"}, nil, "--log-format=xml is not a log format; use text or json"},
		{nil, map[string]string{"MESHBOX_LOG_FORMAT": "xml"}, "MESHBOX_LOG_FORMAT=xml is not a log format; use text or json"},
		{[]string{"--domain-mode", "galaxy"}, nil, "--domain-mode=galaxy is not a domain mode; use shared or ip"},
		{[]string{"--max-payload", "-1"}, nil, "--max-payload=-1 is out of range; use a whole number above 0"},
		{[]string{"--max-payload", "lots"}, nil, "--max-payload=lots is not a whole number; use a whole number above 0"},
		{[]string{"--max-conns-per-ip=-5"}, nil, "--max-conns-per-ip=-5 is out of range; use 0 (no limit) or a number above 0"},
		{[]string{"--publish-rate=fast"}, nil, "--publish-rate=fast is not a number; use 0 (no limit) or a number of requests per second, such as 100"},
		{[]string{"--max-db-size=big"}, nil, "--max-db-size=big is not a size; use 0 (no budget) or a number of bytes with an optional unit, such as 512MiB or 2GiB"},
		{nil, map[string]string{"MESHBOX_MAX_DB_SIZE": "3 parsecs"}, `MESHBOX_MAX_DB_SIZE="3 parsecs" is not a size; use 0 (no budget) or a number of bytes with an optional unit, such as 512MiB or 2GiB`},
		{[]string{"--addr=8080"}, nil, "--addr=8080 is not a listening address; use :PORT (every network) or HOST:PORT, such as :8080 or 127.0.0.1:8080"},
		{[]string{"--public-url=192.168.1.20:8080"}, nil, "--public-url=192.168.1.20:8080 is not a web address; use the address students type, starting with http:// or https://, such as http://192.168.1.20:8080"},
		{[]string{"--shared-domain=my room"}, nil, `--shared-domain="my room" is not a domain name; use 1 to 256 letters, digits, dots, dashes or underscores`},
		{[]string{"--admin-token=7391"}, nil, "--admin-token is too short (4 characters): a short password can be guessed from any pupil's computer; use at least 16 characters, or leave it unset and meshbox creates a strong one at first start"},
		{[]string{"--admin-token", "せんせいのひみつ"}, nil, "--admin-token is too short (8 characters): a short password can be guessed from any pupil's computer; use at least 16 characters, or leave it unset and meshbox creates a strong one at first start"},
		{[]string{"--event-tl=1m"}, nil, "--event-tl is not a setting; meshbox --help lists them"},
		{[]string{"--addr"}, nil, "--addr needs a value; write --addr=VALUE"},
		{[]string{"extra"}, nil, "extra is not a setting; settings are written --name=value; meshbox --help lists them"},
	} {
		var out bytes.Buffer
		_, err := Parse(tc.args, func(k string) string { return tc.env[k] }, &out, "test")
		var bad *Error
		if !errors.As(err, &bad) {
			t.Errorf("%v %v: error %v is not a *config.Error", tc.args, tc.env, err)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%v %v:\n got %s\nwant %s", tc.args, tc.env, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%v: printed %q besides the error", tc.args, out.String())
		}
	}
	// A flag overrides a bad environment value: only what takes effect is checked.
	if _, err := Parse([]string{"--event-ttl=1m"}, func(k string) string {
		if k == "MESHBOX_EVENT_TTL" {
			return "soon"
		}
		return ""
	}, io.Discard, "test"); err != nil {
		t.Errorf("flag did not override a bad environment value: %v", err)
	}
}

// TestDatabaseSizeBudget checks the size setting's units and its default.
func TestDatabaseSizeBudget(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int64
	}{
		{"", 1 << 30}, {"0", 0}, {"1048576", 1 << 20}, {"512MiB", 512 << 20}, {"512M", 512 << 20},
		{"2GiB", 2 << 30}, {"2 GB", 2_000_000_000}, {"64kb", 64_000}, {"100B", 100},
	} {
		c, err := Parse(nil, func(k string) string {
			if k == "MESHBOX_MAX_DB_SIZE" {
				return tc.text
			}
			return ""
		}, io.Discard, "test")
		if err != nil {
			t.Errorf("%q: %v", tc.text, err)
			continue
		}
		if c.MaxDBSize != tc.want {
			t.Errorf("%q: MaxDBSize = %d, want %d", tc.text, c.MaxDBSize, tc.want)
		}
	}
}

// TestDatabaseFileProblems checks that file problems are told in words, naming the setting.
func TestDatabaseFileProblems(t *testing.T) {
	dir := t.TempDir()
	cfg := func(path string) Config {
		c, err := Parse([]string{"--db", path}, func(string) string { return "" }, io.Discard, "test")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	missing := filepath.Join(dir, "nope", "meshbox.db")
	if err := cfg(missing).CheckDatabase(); err == nil || err.Error() != "--db="+missing+" is in a folder that does not exist ("+filepath.Dir(missing)+"); create the folder first, or choose a file in an existing folder" {
		t.Errorf("missing folder: %v", err)
	}
	if err := cfg(dir).CheckDatabase(); err == nil || err.Error() != "--db="+dir+" is a folder, not a file; name a file inside it, such as "+filepath.Join(dir, "meshbox.db") {
		t.Errorf("a folder: %v", err)
	}
	file := filepath.Join(dir, "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cfg(filepath.Join(file, "meshbox.db")).CheckDatabase(); err == nil || !strings.Contains(err.Error(), "is inside a file, not a folder") {
		t.Errorf("inside a file: %v", err)
	}
	ok := filepath.Join(dir, "meshbox.db")
	if err := cfg(ok).CheckDatabase(); err != nil {
		t.Errorf("a good path: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("the check left files behind: %v", entries)
	}
	// The unwritable folder is tested end to end in package main, as a user without root.
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

// TestClientSharesStayBelowTheirCaps: a per-address share at or above the cap it shares would
// let one laptop fill a group or a domain alone (issue 22, rows 4 and 5): given that high it is
// refused in one line, left that high by a lowered cap it becomes half the cap, and 0 turns it
// off.
func TestClientSharesStayBelowTheirCaps(t *testing.T) {
	parse := func(args []string, env map[string]string) (Config, error) {
		return Parse(args, func(k string) string { return env[k] }, io.Discard, "test")
	}
	d, err := parse(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.MaxGroupsPerClientDomain != 40 || d.MaxNodesPerClientGroup != 50 || d.MaxNodesPerClient != 200 || d.MaxGroupsPerClient != 100 ||
		d.MaxGroupsPerClientDomain >= d.MaxGroupsPerDomain || d.MaxNodesPerClientGroup >= d.MaxNodesPerGroup {
		t.Fatalf("defaults: %d groups per client in a domain of %d, %d nodes per client in a group of %d, %d nodes, %d groups per client",
			d.MaxGroupsPerClientDomain, d.MaxGroupsPerDomain, d.MaxNodesPerClientGroup, d.MaxNodesPerGroup, d.MaxNodesPerClient, d.MaxGroupsPerClient)
	}
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want string
	}{
		{[]string{"--max-groups-per-client-domain=200"}, nil, "--max-groups-per-client-domain=200 is not below --max-groups-per-domain (200); use a number below it, so one address cannot fill it alone, or 0 to turn the share off"},
		{[]string{"--max-groups-per-domain=30"}, map[string]string{"MESHBOX_MAX_GROUPS_PER_CLIENT_DOMAIN": "30"}, "MESHBOX_MAX_GROUPS_PER_CLIENT_DOMAIN=30 is not below --max-groups-per-domain (30); use a number below it, so one address cannot fill it alone, or 0 to turn the share off"},
		{[]string{"--max-nodes-per-client-group=300"}, nil, "--max-nodes-per-client-group=300 is not below --max-nodes-per-group (250); use a number below it, so one address cannot fill it alone, or 0 to turn the share off"},
		{[]string{"--max-nodes-per-client=-1"}, nil, "--max-nodes-per-client=-1 is out of range; use 0 (no limit) or a number above 0"},
	} {
		_, err := parse(tc.args, tc.env)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v %v:\n got %v\nwant %s", tc.args, tc.env, err, tc.want)
		}
	}
	c, err := parse([]string{"--max-groups-per-domain=30", "--max-nodes-per-group=20"}, nil)
	if err != nil || c.MaxGroupsPerClientDomain != 15 || c.MaxNodesPerClientGroup != 10 {
		t.Fatalf("lowered caps: shares %d and %d (%v), want 15 and 10", c.MaxGroupsPerClientDomain, c.MaxNodesPerClientGroup, err)
	}
	off, err := parse([]string{"--max-groups-per-client-domain=0", "--max-nodes-per-client-group=0", "--max-nodes-per-client=0"}, nil)
	if err != nil || off.MaxGroupsPerClientDomain != 0 || off.MaxNodesPerClientGroup != 0 || off.MaxNodesPerClient != 0 {
		t.Fatalf("shares turned off: %+v %v", off, err)
	}
}

// TestCheckSmalruby: a --smalruby path that is missing, or neither a folder nor a .zip, is told
// in one line naming the setting; a folder or a .zip passes (what is inside is the editor's
// business when it opens).
func TestCheckSmalruby(t *testing.T) {
	dir := t.TempDir()
	zip := filepath.Join(dir, "smalruby.zip")
	other := filepath.Join(dir, "notes.txt")
	for _, p := range []string{zip, other} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for path, want := range map[string]string{
		dir: "", zip: "",
		filepath.Join(dir, "missing.zip"): "--smalruby=" + filepath.Join(dir, "missing.zip") + " does not exist",
		other:                             "--smalruby=" + other + " is neither a folder nor a .zip file",
	} {
		c, err := Parse([]string{"--smalruby", path}, func(string) string { return "" }, io.Discard, "test")
		if err != nil {
			t.Fatal(err)
		}
		err = c.CheckSmalruby()
		if want == "" {
			if err != nil {
				t.Errorf("%s: %v", path, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want %q…", path, err, want)
		}
	}
}

func TestMaxDecoding(t *testing.T) {
	none := func(string) string { return "" }
	if c, err := Parse(nil, none, io.Discard, "test"); err != nil || c.MaxDecoding != 8<<20 {
		t.Fatalf("default decode budget %d, %v; want 8MiB", c.MaxDecoding, err)
	}
	// A small memory limit lowers the default to a 32nd of it...
	if c, _ := Parse([]string{"--memory-limit", "128MiB"}, none, io.Discard, "test"); c.MaxDecoding != 4<<20 {
		t.Fatalf("with --memory-limit 128MiB: %d, want 4MiB", c.MaxDecoding)
	}
	// ...but not one the teacher chose.
	env := func(k string) string {
		if k == "MESHBOX_MAX_DECODING" {
			return "32MiB"
		}
		return ""
	}
	if c, _ := Parse([]string{"--memory-limit", "128MiB"}, env, io.Discard, "test"); c.MaxDecoding != 32<<20 {
		t.Fatalf("MESHBOX_MAX_DECODING=32MiB with a memory limit: %d", c.MaxDecoding)
	}
	if c, _ := Parse([]string{"--max-decoding", "0"}, none, io.Discard, "test"); c.MaxDecoding != 0 {
		t.Fatalf("--max-decoding 0: %d, want no budget", c.MaxDecoding)
	}
	if _, err := Parse([]string{"--max-decoding", "lots"}, none, io.Discard, "test"); err == nil || !strings.Contains(err.Error(), "--max-decoding=lots") {
		t.Fatalf("--max-decoding lots: %v", err)
	}
}
