// Package config holds every meshbox setting. Each setting has a flag and a MESHBOX_* environment
// variable: the variable sets the default, the flag overrides it, and --help lists both.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Config is the complete set of settings of one meshbox process.
type Config struct {
	Addr        string
	DB          string
	Synchronous string // NORMAL or FULL
	LogLevel    string
	LogFormat   string

	EventTTL      time.Duration
	PurgeInterval time.Duration

	MaxGroupLifetime        time.Duration
	HostHeartbeatInterval   time.Duration
	HostTTL                 time.Duration
	MemberHeartbeatInterval time.Duration
	MemberTTL               time.Duration

	DomainMode   string // shared or ip
	SharedDomain string
	DomainSecret string
	TrustProxy   bool

	MaxPayloadBytes     int
	MaxEventsPerPublish int
	MaxDataKeys         int
	MaxDataKeyBytes     int
	MaxDataValueBytes   int
	MaxNodesPerGroup    int
	MaxGroupsPerDomain  int
	MaxBodyBytes        int64
	PublishRate         float64 // publish requests per node per second; 0 = unlimited
	IPRate              float64 // requests per client IP per second; 0 = unlimited
	MaxConnsPerIP       int     // open streams per client IP; 0 = unlimited
	MaxWait             time.Duration
	TailItems           int

	AdminToken      string
	APIKey          string
	PollingInterval time.Duration
	NoWebSocket     bool
	PingInterval    time.Duration
	ShutdownTimeout time.Duration
	Pprof           bool

	// MDNS advertises the box on the LAN as MDNSName.local with an _http._tcp service.
	MDNS     bool
	MDNSName string
	// MemoryLimit is the Go runtime's soft memory limit in bytes; 0 leaves it to GOMEMLIMIT.
	MemoryLimit int64
}

// ErrHelp is returned when --help or --version was asked for and answered.
var ErrHelp = errors.New("help requested")

// Parse reads the settings from args (without the program name) and the environment.
// The version is printed for --version; usage goes to out for --help.
func Parse(args []string, getenv func(string) string, out io.Writer, version string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("meshbox", flag.ContinueOnError)
	fs.SetOutput(out)
	var errs []error
	envOr := func(env, def string) string {
		if v := strings.TrimSpace(getenv(env)); v != "" {
			return v
		}
		return def
	}
	str := func(p *string, name, env, def, usage string) {
		fs.StringVar(p, name, envOr(env, def), usage+" ($"+env+")")
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		d := def
		if v := envOr(env, ""); v != "" {
			pd, err := time.ParseDuration(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			d = pd
		}
		fs.DurationVar(p, name, d, usage+" ($"+env+")")
	}
	num := func(p *int, name, env string, def int, usage string) {
		n := def
		if v := envOr(env, ""); v != "" {
			pn, err := strconv.Atoi(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			n = pn
		}
		fs.IntVar(p, name, n, usage+" ($"+env+")")
	}
	flt := func(p *float64, name, env string, def float64, usage string) {
		n := def
		if v := envOr(env, ""); v != "" {
			pn, err := strconv.ParseFloat(v, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			n = pn
		}
		fs.Float64Var(p, name, n, usage+" ($"+env+")")
	}
	boolean := func(p *bool, name, env string, def bool, usage string) {
		b := def
		if v := envOr(env, ""); v != "" {
			pb, err := strconv.ParseBool(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
			}
			b = pb
		}
		fs.BoolVar(p, name, b, usage+" ($"+env+")")
	}

	str(&c.Addr, "addr", "MESHBOX_ADDR", ":8080", "listen address")
	str(&c.DB, "db", "MESHBOX_DB", "./meshbox.db", "SQLite database file (created if missing)")
	str(&c.Synchronous, "synchronous", "MESHBOX_SYNCHRONOUS", "normal", "SQLite synchronous mode: normal (survives a process crash) or full (survives power loss)")
	str(&c.LogLevel, "log-level", "MESHBOX_LOG_LEVEL", "info", "log level: debug, info, warn, error")
	str(&c.LogFormat, "log-format", "MESHBOX_LOG_FORMAT", "text", "log format: text or json")
	dur(&c.EventTTL, "event-ttl", "MESHBOX_EVENT_TTL", 10*time.Minute, "how long stream items are kept")
	dur(&c.PurgeInterval, "purge-interval", "MESHBOX_PURGE_INTERVAL", 2*time.Second, "how often expired items, groups and nodes are cleaned up")
	dur(&c.MaxGroupLifetime, "max-group-lifetime", "MESHBOX_MAX_GROUP_LIFETIME", 6*time.Hour, "longest lifetime of a group (also the Mesh v2 maxConnectionTimeSeconds cap)")
	dur(&c.HostHeartbeatInterval, "host-heartbeat-interval", "MESHBOX_HOST_HEARTBEAT_INTERVAL", 60*time.Second, "how often hosts are told to send heartbeats")
	dur(&c.HostTTL, "host-ttl", "MESHBOX_HOST_TTL", 150*time.Second, "a group ends when its host is silent this long")
	dur(&c.MemberHeartbeatInterval, "member-heartbeat-interval", "MESHBOX_MEMBER_HEARTBEAT_INTERVAL", 120*time.Second, "how often members are told to send heartbeats")
	dur(&c.MemberTTL, "member-ttl", "MESHBOX_MEMBER_TTL", 600*time.Second, "a member is removed when silent this long (an open stream counts as activity)")
	str(&c.DomainMode, "domain-mode", "MESHBOX_DOMAIN_MODE", "shared", "domain for clients that name none: shared (one for the whole server) or ip (derived from the client IP)")
	str(&c.SharedDomain, "shared-domain", "MESHBOX_SHARED_DOMAIN", "classroom", "the domain used in shared mode")
	str(&c.DomainSecret, "domain-secret", "MESHBOX_DOMAIN_SECRET", "", "secret mixed into IP-derived domains")
	boolean(&c.TrustProxy, "trust-proxy", "MESHBOX_TRUST_PROXY", false, "take the client IP from X-Forwarded-For (only behind a reverse proxy you run)")
	num(&c.MaxPayloadBytes, "max-payload", "MESHBOX_MAX_PAYLOAD", 16*1024, "largest event payload in bytes")
	num(&c.MaxEventsPerPublish, "max-events-per-publish", "MESHBOX_MAX_EVENTS_PER_PUBLISH", 1000, "most events in one publish")
	num(&c.MaxDataKeys, "max-data-keys", "MESHBOX_MAX_DATA_KEYS", 100, "most data keys per node")
	num(&c.MaxDataKeyBytes, "max-data-key", "MESHBOX_MAX_DATA_KEY", 128, "longest data key in bytes")
	num(&c.MaxDataValueBytes, "max-data-value", "MESHBOX_MAX_DATA_VALUE", 4096, "longest data value in bytes")
	num(&c.MaxNodesPerGroup, "max-nodes-per-group", "MESHBOX_MAX_NODES_PER_GROUP", 250, "most nodes in one group")
	num(&c.MaxGroupsPerDomain, "max-groups-per-domain", "MESHBOX_MAX_GROUPS_PER_DOMAIN", 200, "most live groups in one domain")
	maxBody := int(4 << 20)
	num(&maxBody, "max-body", "MESHBOX_MAX_BODY", maxBody, "largest request body in bytes")
	flt(&c.PublishRate, "publish-rate", "MESHBOX_PUBLISH_RATE", 100, "publish requests per node per second, burst twice that (0 = unlimited)")
	flt(&c.IPRate, "ip-rate", "MESHBOX_IP_RATE", 1000, "API requests per client IP per second, burst twice that (0 = unlimited)")
	num(&c.MaxConnsPerIP, "max-conns-per-ip", "MESHBOX_MAX_CONNS_PER_IP", 1000, "most open streams per client IP (0 = unlimited)")
	dur(&c.MaxWait, "max-wait", "MESHBOX_MAX_WAIT", 30*time.Second, "longest long-poll wait")
	num(&c.TailItems, "tail-items", "MESHBOX_TAIL_ITEMS", 4096, "recent items kept in memory per group for live readers")
	str(&c.AdminToken, "admin-token", "MESHBOX_ADMIN_TOKEN", "", "token for admin calls and dashboard actions (empty: dashboard is read-only)")
	str(&c.APIKey, "api-key", "MESHBOX_API_KEY", "", "Mesh v2 API key required from GraphQL clients (empty: any key is accepted)")
	dur(&c.PollingInterval, "polling-interval", "MESHBOX_POLLING_INTERVAL", 2*time.Second, "Mesh v2 polling interval told to clients without WebSocket")
	boolean(&c.NoWebSocket, "no-websocket", "MESHBOX_NO_WEBSOCKET", false, "refuse WebSocket upgrades (to test firewall fallback)")
	dur(&c.PingInterval, "ping-interval", "MESHBOX_PING_INTERVAL", 20*time.Second, "how often WebSocket peers are pinged; one that does not answer within the next interval is dropped")

	dur(&c.ShutdownTimeout, "shutdown-timeout", "MESHBOX_SHUTDOWN_TIMEOUT", 5*time.Second, "longest graceful shutdown")
	boolean(&c.Pprof, "pprof", "MESHBOX_PPROF", false, "serve /debug/pprof (for profiling)")
	boolean(&c.MDNS, "mdns", "MESHBOX_MDNS", true, "advertise the box on the LAN by multicast DNS as NAME.local and an _http._tcp service (the only packets meshbox sends unasked)")
	str(&c.MDNSName, "mdns-name", "MESHBOX_MDNS_NAME", "meshbox", "host name advertised by mDNS, without .local (give each box in one network its own)")
	memLimit := ""
	str(&memLimit, "memory-limit", "MESHBOX_MEMORY_LIMIT", "", "soft memory limit of the Go runtime, such as 256MiB (empty: $GOMEMLIMIT or none); on a 1 GB Raspberry Pi use about 300MiB")
	showVersion := fs.Bool("version", false, "print the version and exit")

	fs.Usage = func() {
		fmt.Fprintf(out, "meshbox %s: a self-hosted real-time relay for classrooms\n\n", version)
		fmt.Fprintf(out, "Usage: meshbox [flags]        run the server\n       meshbox bench [flags]  load-test a running meshbox\n       meshbox service install [flags]  write a systemd unit (see meshbox service --help)\n\nFlags (each also read from the environment variable in brackets):\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, ErrHelp
		}
		return c, err
	}
	if *showVersion {
		fmt.Fprintf(out, "meshbox %s\n", version)
		return c, ErrHelp
	}
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	c.MaxBodyBytes = int64(maxBody)
	if memLimit != "" {
		n, err := ParseBytes(memLimit)
		if err != nil {
			errs = append(errs, fmt.Errorf("memory-limit: %w", err))
		}
		c.MemoryLimit = n
	}
	errs = append(errs, c.validate()...)
	return c, errors.Join(errs...)
}

func (c *Config) validate() []error {
	var errs []error
	c.Synchronous = strings.ToUpper(c.Synchronous)
	if c.Synchronous != "NORMAL" && c.Synchronous != "FULL" {
		errs = append(errs, fmt.Errorf("synchronous must be normal or full, not %q", c.Synchronous))
	}
	if c.DomainMode != "shared" && c.DomainMode != "ip" {
		errs = append(errs, fmt.Errorf("domain-mode must be shared or ip, not %q", c.DomainMode))
	}
	for name, d := range map[string]time.Duration{
		"event-ttl": c.EventTTL, "purge-interval": c.PurgeInterval, "max-group-lifetime": c.MaxGroupLifetime,
		"host-heartbeat-interval": c.HostHeartbeatInterval, "host-ttl": c.HostTTL,
		"member-heartbeat-interval": c.MemberHeartbeatInterval, "member-ttl": c.MemberTTL,
		"max-wait": c.MaxWait, "polling-interval": c.PollingInterval, "shutdown-timeout": c.ShutdownTimeout,
		"ping-interval": c.PingInterval,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	for name, n := range map[string]int{
		"max-payload": c.MaxPayloadBytes, "max-events-per-publish": c.MaxEventsPerPublish,
		"max-data-keys": c.MaxDataKeys, "max-data-key": c.MaxDataKeyBytes, "max-data-value": c.MaxDataValueBytes,
		"max-nodes-per-group": c.MaxNodesPerGroup, "max-groups-per-domain": c.MaxGroupsPerDomain,
		"max-body": int(c.MaxBodyBytes), "tail-items": c.TailItems,
	} {
		if n <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.MDNS && !validHostLabel(c.MDNSName) {
		errs = append(errs, fmt.Errorf("mdns-name must be one DNS label of letters, digits and hyphens, not %q", c.MDNSName))
	}
	if c.PublishRate < 0 || c.IPRate < 0 || c.MaxConnsPerIP < 0 {
		errs = append(errs, errors.New("rates and connection limits must not be negative"))
	}
	return errs
}
