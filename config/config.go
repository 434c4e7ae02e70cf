// Package config holds every meshbox setting. Each setting has a flag and a MESHBOX_* environment
// variable: the variable sets the default, the flag overrides it, and --help lists both.
//
// A value that cannot be used is reported as one line naming the setting the way the user gave it
// (--event-ttl or MESHBOX_EVENT_TTL), the value, and what is accepted: a teacher who mistyped one
// setting must not have to find that line in a screen of usage text.
//
// Kept on the standard library's flag package rather than github.com/peterbourgon/ff/v4 (which
// also reads an environment twin per flag): ff applies the environment by setting the flags
// and reports a bad variable as the flag's parse error, so the message would name the flag
// (--event-ttl) for a value the user set as MESHBOX_EVENT_TTL, and its help output lists
// settings in its own layout. Both are the points of this package; what ff would save is the
// loop that reads the environment before flag.Parse, a few lines.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"meshbox/rules"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Config is the complete set of settings of one meshbox process.
type Config struct {
	Addr        string
	DB          string
	Synchronous string // NORMAL or FULL
	LogLevel    string // debug, info, warn or error
	LogFormat   string // text or json
	// PublicURL is the address students' devices use to reach this box (for example behind a
	// port mapping or a reverse proxy); empty means the dashboard works it out.
	PublicURL string
	// Smalruby is the school's copy of the Smalruby editor (a folder, or the ZIP of its
	// published build), served at /smalruby/ pointed at this box; empty serves none.
	Smalruby string

	EventTTL      time.Duration
	PurgeInterval time.Duration
	// MaxDBSize is the database file's size budget in bytes (0: only the disk bounds it).
	// Near it the oldest items are purged before their TTL; at it writes are refused (507).
	MaxDBSize int64

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
	// MaxDecoding bounds the bytes of request bodies being read and decoded at once, on every
	// entrance (0: no bound); past it a body waits briefly, then gets 503 busy.
	MaxDecoding int64
	// BodyTimeout is how long a request body may take to arrive, counted from the end of its
	// headers: a body that stops mid-way is cut when it passes.
	BodyTimeout time.Duration
	PublishRate float64 // publish requests per node per second; 0 = unlimited
	// NodeByteRate is the bytes of events and data per node per second, burst 16 s of it;
	// 0 = unlimited.
	NodeByteRate int64
	NodeRate     float64 // authenticated requests per node per second; 0 = unlimited
	GroupRate    float64 // authenticated requests per group per second; 0 = unlimited
	IPRate       float64 // unauthenticated requests per client address per second; 0 = unlimited
	// MaxConnsPerIP bounds the open connections of one client address (idle keep-alive,
	// unfinished requests, requests and streams alike; behind --trust-proxy, the streams of
	// one forwarded address); 0 = unlimited.
	MaxConnsPerIP int
	// MaxConns is the connection budget of the whole server (0: derived from the open-file
	// limit). Near it the heaviest address's idle connections close first; past it only the
	// probes, the dashboard page and the teacher's requests are served.
	MaxConns int
	// IdleTimeout is how long a keep-alive connection may wait for its next request, and
	// HeaderTimeout how long a request's headers may take: a silent connection holds its
	// slot no longer.
	IdleTimeout   time.Duration
	HeaderTimeout time.Duration
	// MaxGroups bounds the live groups of the whole server, MaxGroupsPerClient those one
	// client address created (in every domain), and GroupCreateRate how fast one client
	// address may create them (per second, burst GroupCreateBurst).
	MaxGroups          int
	MaxGroupsPerClient int
	GroupCreateRate    float64
	// Fair shares of one client address (0: none): live groups it created in one domain,
	// members it joined to one group, members it joined in all groups. Each is below the
	// cap it shares (MaxGroupsPerDomain, MaxNodesPerGroup), so one laptop cannot fill it.
	MaxGroupsPerClientDomain int
	MaxNodesPerClientGroup   int
	MaxNodesPerClient        int
	MaxWait                  time.Duration
	TailItems                int
	TailBytes                int // recent items kept in memory per group, in bytes
	FeedBytes                int // the dashboard's feed of every group's items, in bytes

	AdminToken      string
	APIKey          string
	PollingInterval time.Duration
	NoWebSocket     bool
	// GraphQLIntrospection lets Mesh v2 GraphQL clients read the schema (__schema, __type).
	GraphQLIntrospection bool
	PingInterval         time.Duration
	ShutdownTimeout      time.Duration
	Pprof                bool

	// NATS: when NATSURL is set, the log is a NATS JetStream stream shared by every instance
	// given the same servers, stream and subjects; empty keeps the SQLite file (the default).
	NATSURL      string // comma-separated server URLs (user:password@ in a URL works too)
	NATSCreds    string // a .creds file (JWT and NKey seed)
	NATSToken    string
	NATSCA       string // CA certificate file to verify the servers
	NATSCert     string // client certificate file (with NATSKey) for mutual TLS
	NATSKey      string
	NATSStream   string
	NATSSubjects string
	NATSReplicas int
	NATSMaxBatch int

	// MDNS advertises the box on the LAN as MDNSName.local with an _http._tcp service.
	MDNS     bool
	MDNSName string
	// MemoryLimit is the Go runtime's soft memory limit in bytes; 0 leaves it to GOMEMLIMIT.
	MemoryLimit int64

	// sources maps a flag name to how the user gave its value ("--db" or "MESHBOX_DB"), so a
	// later check (the database file) names the setting the same way the parser does.
	sources map[string]string
	// given holds the settings the user gave (a flag or an environment variable), not defaulted.
	given map[string]bool
}

// UsesNATS reports whether the log is NATS JetStream rather than SQLite.
func (c Config) UsesNATS() bool { return c.NATSURL != "" }

// ErrHelp is returned when --help or --version was asked for and answered.
var ErrHelp = errors.New("help requested")

// Error is a setting whose value cannot be used. Its text is one line: the setting as the user
// gave it, the value, what is wrong and what is accepted, for example
// `--event-ttl=abc is not a duration; use a number with a unit, such as 90s, 10m or 1h`.
type Error struct {
	Setting  string // "--event-ttl" or "MESHBOX_EVENT_TTL"
	Value    string
	NoValue  bool   // the problem is the setting itself (an unknown flag), not a value
	Problem  string // "is not a duration"
	Accepted string // "use a number with a unit, such as 90s, 10m or 1h"
}

func (e *Error) Error() string {
	s := e.Setting
	if !e.NoValue {
		s += "=" + quoteIfNeeded(e.Value)
	}
	s += " " + e.Problem
	if e.Accepted != "" {
		s += "; " + e.Accepted
	}
	return s
}

// quoteIfNeeded keeps plain values as typed and quotes ones a reader could misread (empty, with
// spaces or control characters).
func quoteIfNeeded(v string) string {
	if v == "" || strings.ContainsAny(v, " \t\r\n\"'") || strconv.Quote(v) != `"`+v+`"` {
		return strconv.Quote(v)
	}
	return v
}

// Given reports whether the user gave the setting name (as a flag or in the environment),
// rather than leaving it at its default.
func (c Config) Given(name string) bool { return c.given[name] }

// Source returns how the setting named by its flag name was given: "--name" for a flag or the
// default, "MESHBOX_…" for the environment.
func (c Config) Source(name string) string {
	if s, ok := c.sources[name]; ok {
		return s
	}
	return "--" + name
}

// raw is a flag.Value that only records the text it was given; parsing happens afterwards, in
// one place for flags and environment alike, so both report errors the same way.
type raw struct {
	text    string
	set     bool
	boolean bool
}

func (r *raw) String() string {
	if r == nil {
		return ""
	}
	return r.text
}

func (r *raw) Set(s string) error { r.text, r.set = s, true; return nil }

// IsBoolFlag lets a boolean setting be given as a bare --name.
func (r *raw) IsBoolFlag() bool { return r.boolean }

// binding is one setting: where its text came from and how it becomes a value.
type binding struct {
	name, env string
	def       string
	flag      *raw
	apply     func(text string) (problem, accepted string)
}

// Accepted-value descriptions shared by many settings.
const (
	acceptDuration = "use a number with a unit, such as 90s, 10m or 1h"
	acceptPositive = "use a whole number above 0"
	acceptLimit    = "use 0 (no limit) or a number above 0"
)

// Parse reads the settings from args (without the program name) and the environment.
// The version is printed for --version; usage goes to out for --help. Every problem is an *Error.
func Parse(args []string, getenv func(string) string, out io.Writer, version string) (Config, error) {
	c := Config{sources: map[string]string{}, given: map[string]bool{}}
	fs := flag.NewFlagSet("meshbox", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported as one line each, without the usage text
	var binds []*binding
	bind := func(name, env, def, usage string, boolean bool, apply func(string) (string, string)) {
		b := &binding{name: name, env: env, def: def, flag: &raw{boolean: boolean}, apply: apply}
		// The flag's shown default is the environment's value when set, as it takes effect.
		b.flag.text = def
		if v := strings.TrimSpace(getenv(env)); v != "" {
			b.flag.text = v
		}
		fs.Var(b.flag, name, usage+" ($"+env+")")
		binds = append(binds, b)
	}
	str := func(p *string, name, env, def, usage string, check func(string) (string, string)) {
		bind(name, env, def, usage, false, func(s string) (string, string) {
			if check != nil {
				if problem, accepted := check(s); problem != "" {
					return problem, accepted
				}
			}
			*p = s
			return "", ""
		})
	}
	oneOf := func(p *string, name, env, def, usage, what string, choices ...string) {
		accepted := "use " + orList(choices)
		bind(name, env, def, usage, false, func(s string) (string, string) {
			for _, ch := range choices {
				if strings.EqualFold(s, ch) {
					*p = ch
					return "", ""
				}
			}
			return "is not " + what, accepted
		})
	}
	dur := func(p *time.Duration, name, env string, def time.Duration, usage string) {
		bind(name, env, shortDuration(def), usage, false, func(s string) (string, string) {
			d, err := time.ParseDuration(s)
			if err != nil {
				return "is not a duration", acceptDuration
			}
			if d <= 0 {
				return "is too short", "use a duration above 0, such as " + shortDuration(def)
			}
			*p = d
			return "", ""
		})
	}
	num := func(p *int, name, env string, def int, usage string, zeroOK bool) {
		accepted := acceptPositive
		if zeroOK {
			accepted = acceptLimit
		}
		bind(name, env, strconv.Itoa(def), usage, false, func(s string) (string, string) {
			n, err := strconv.Atoi(s)
			if err != nil {
				return "is not a whole number", accepted
			}
			if n < 0 || (n == 0 && !zeroOK) {
				return "is out of range", accepted
			}
			*p = n
			return "", ""
		})
	}
	rate := func(p *float64, name, env string, def float64, usage string) {
		bind(name, env, strconv.FormatFloat(def, 'g', -1, 64), usage, false, func(s string) (string, string) {
			n, err := strconv.ParseFloat(s, 64)
			if err != nil || n != n { // NaN is not a rate
				return "is not a number", "use 0 (no limit) or a number of requests per second, such as 100"
			}
			if n < 0 {
				return "is out of range", "use 0 (no limit) or a number of requests per second, such as 100"
			}
			*p = n
			return "", ""
		})
	}
	size := func(p *int64, name, env, def, usage string) {
		bind(name, env, def, usage, false, func(s string) (string, string) {
			n, ok := parseSize(s)
			if !ok {
				return "is not a size", "use 0 (no budget) or a number of bytes with an optional unit, such as 512MiB or 2GiB"
			}
			*p = n
			return "", ""
		})
	}
	boolean := func(p *bool, name, env string, def bool, usage string) {
		bind(name, env, strconv.FormatBool(def), usage, true, func(s string) (string, string) {
			switch strings.ToLower(s) {
			case "1", "t", "true", "yes", "on":
				*p = true
			case "0", "f", "false", "no", "off":
				*p = false
			default:
				return "is not true or false", "use true or false"
			}
			return "", ""
		})
	}

	str(&c.Addr, "addr", "MESHBOX_ADDR", ":8080", "listen address (:8080 accepts every network; 127.0.0.1:8080 only this computer)", checkAddr)
	str(&c.DB, "db", "MESHBOX_DB", "./meshbox.db", "SQLite database file (created if missing)", func(s string) (string, string) {
		if s == "" {
			return "is empty", "use a file path, such as ./meshbox.db"
		}
		return "", ""
	})
	str(&c.PublicURL, "public-url", "MESHBOX_PUBLIC_URL", "", "address students use to reach this box, shown on the dashboard and in its QR code (empty: worked out from this computer's network)", checkPublicURL)
	oneOf(&c.Synchronous, "synchronous", "MESHBOX_SYNCHRONOUS", "normal", "SQLite synchronous mode: normal (survives a process crash) or full (survives power loss)", "a synchronous mode", "normal", "full")
	oneOf(&c.LogLevel, "log-level", "MESHBOX_LOG_LEVEL", "info", "log level: debug, info, warn or error", "a log level", "debug", "info", "warn", "error")
	oneOf(&c.LogFormat, "log-format", "MESHBOX_LOG_FORMAT", "text", "log format: text or json", "a log format", "text", "json")
	dur(&c.EventTTL, "event-ttl", "MESHBOX_EVENT_TTL", 10*time.Minute, "how long stream items are kept")
	dur(&c.PurgeInterval, "purge-interval", "MESHBOX_PURGE_INTERVAL", 2*time.Second, "how often expired items, groups and nodes are cleaned up")
	// 1 GiB: a classroom's ten minutes of events (100 nodes × 10 events/s × 600 s × ~200 B)
	// is about 120 MB, so the budget holds the TTL's worth with room to spare, while a Pi's
	// 16–32 GB SD card, most of it the system, keeps gigabytes free for the OS and its logs.
	size(&c.MaxDBSize, "max-db-size", "MESHBOX_MAX_DB_SIZE", "1GiB", "database size budget (such as 512MiB or 2GiB; 0 = only the disk limits it), at most half the space meshbox can use on its disk: near it items are purged before their TTL, from the groups holding the most first, at it writes get 507 until the purge makes room")
	dur(&c.MaxGroupLifetime, "max-group-lifetime", "MESHBOX_MAX_GROUP_LIFETIME", 6*time.Hour, "longest lifetime of a group (also the Mesh v2 maxConnectionTimeSeconds cap)")
	dur(&c.HostHeartbeatInterval, "host-heartbeat-interval", "MESHBOX_HOST_HEARTBEAT_INTERVAL", 60*time.Second, "how often hosts are told to send heartbeats")
	dur(&c.HostTTL, "host-ttl", "MESHBOX_HOST_TTL", 150*time.Second, "a group ends when its host is silent this long")
	dur(&c.MemberHeartbeatInterval, "member-heartbeat-interval", "MESHBOX_MEMBER_HEARTBEAT_INTERVAL", 120*time.Second, "how often members are told to send heartbeats")
	dur(&c.MemberTTL, "member-ttl", "MESHBOX_MEMBER_TTL", 600*time.Second, "a member is removed when silent this long (an open stream counts as activity)")
	oneOf(&c.DomainMode, "domain-mode", "MESHBOX_DOMAIN_MODE", "shared", "domain for clients that name none: shared (one for the whole server) or ip (derived from the client IP)", "a domain mode", "shared", "ip")
	str(&c.SharedDomain, "shared-domain", "MESHBOX_SHARED_DOMAIN", "classroom", "the domain used in shared mode", checkDomain)
	str(&c.DomainSecret, "domain-secret", "MESHBOX_DOMAIN_SECRET", "", "secret mixed into IP-derived domains", nil)
	boolean(&c.TrustProxy, "trust-proxy", "MESHBOX_TRUST_PROXY", false, "take the client IP from X-Forwarded-For (only behind a reverse proxy you run)")
	num(&c.MaxPayloadBytes, "max-payload", "MESHBOX_MAX_PAYLOAD", 16*1024, "largest event payload in bytes", false)
	num(&c.MaxEventsPerPublish, "max-events-per-publish", "MESHBOX_MAX_EVENTS_PER_PUBLISH", 1000, "most events in one publish", false)
	num(&c.MaxDataKeys, "max-data-keys", "MESHBOX_MAX_DATA_KEYS", 100, "most data keys per node", false)
	num(&c.MaxDataKeyBytes, "max-data-key", "MESHBOX_MAX_DATA_KEY", 128, "longest data key in bytes", false)
	num(&c.MaxDataValueBytes, "max-data-value", "MESHBOX_MAX_DATA_VALUE", 4096, "longest data value in bytes", false)
	num(&c.MaxNodesPerGroup, "max-nodes-per-group", "MESHBOX_MAX_NODES_PER_GROUP", 250, "most nodes in one group", false)
	num(&c.MaxGroupsPerDomain, "max-groups-per-domain", "MESHBOX_MAX_GROUPS_PER_DOMAIN", 200, "most live groups in one domain", false)
	maxBody := int(4 << 20)
	num(&maxBody, "max-body", "MESHBOX_MAX_BODY", maxBody, "largest request body in bytes", false)
	// 8 MiB: two bodies of the largest size at once (plus a quarter of it for ordinary small
	// bodies), so eight hostile 4 MiB bodies at once stay tens of MiB instead of a gigabyte;
	// with --memory-limit, at most a 32nd of it (see below).
	size(&c.MaxDecoding, "max-decoding", "MESHBOX_MAX_DECODING", "8MiB", "request body bytes being read and decoded at once, all entrances together (0 = no bound); past it a body waits up to 2s, then gets 503 busy (default 8MiB, smaller with a small --memory-limit)")
	rate(&c.PublishRate, "publish-rate", "MESHBOX_PUBLISH_RATE", 100, "publish requests per node per second, burst twice that (0 = unlimited)")
	// 256 KiB/s: a Smalruby sprite sending 100 events a second of 200 B uses a tenth of it,
	// while a flood of 4 MB publishes gets one in 16 s (the burst) instead of one a second.
	size(&c.NodeByteRate, "node-byte-rate", "MESHBOX_NODE_BYTE_RATE", "256KiB", "bytes of events and data one node may store per second, burst 16 seconds of it (0 = unlimited); beyond it publishes get 429 with Retry-After")
	dur(&c.BodyTimeout, "body-timeout", "MESHBOX_BODY_TIMEOUT", 30*time.Second, "longest time a request body may take to arrive; a body that stops mid-way is cut")
	rate(&c.NodeRate, "node-rate", "MESHBOX_NODE_RATE", 200, "requests per node (token holder) per second, burst twice that (0 = unlimited)")
	rate(&c.GroupRate, "group-rate", "MESHBOX_GROUP_RATE", 10000, "requests of all nodes of one group per second, burst twice that (0 = unlimited)")
	rate(&c.IPRate, "ip-rate", "MESHBOX_IP_RATE", 1000, "requests without a valid token per client address per second, burst twice that (0 = unlimited)")
	// 256: a class of 40 behind one NAT address, each browser holding a few connections (a
	// stream, a keep-alive connection or two, six at most while a page loads), with room left.
	num(&c.MaxConnsPerIP, "max-conns-per-ip", "MESHBOX_MAX_CONNS_PER_IP", 256, "most open connections per client IP, idle keep-alive and streams included (behind --trust-proxy: streams per forwarded IP; 0 = unlimited)", true)
	num(&c.MaxConns, "max-conns", "MESHBOX_MAX_CONNS", 0, "most open connections; near it the heaviest client IP's idle connections close first, past it only the probes, the dashboard page and admin-token requests are served (0 = from the open-file limit)", true)
	// 30 s: a browser opens a new connection when it needs one, so a keep-alive connection
	// silent for longer only holds a slot (a Pi's file descriptors) for nobody.
	dur(&c.IdleTimeout, "idle-timeout", "MESHBOX_IDLE_TIMEOUT", 30*time.Second, "how long an idle keep-alive connection is kept open")
	// 5 s: a request's headers are a few hundred bytes, which even a crowded classroom Wi-Fi
	// carries in well under a second.
	dur(&c.HeaderTimeout, "header-timeout", "MESHBOX_HEADER_TIMEOUT", 5*time.Second, "longest time a request's headers may take to arrive (a new connection that sends nothing is closed after it)")
	num(&c.MaxGroups, "max-groups", "MESHBOX_MAX_GROUPS", 2000, "most live groups on this server", false)
	// 100: a class of 40 behind one NAT shares an address; two groups each still fit, while
	// twenty addresses are needed to fill the server's --max-groups.
	num(&c.MaxGroupsPerClient, "max-groups-per-client", "MESHBOX_MAX_GROUPS_PER_CLIENT", 100, "most live groups created from one client address, in all domains together", false)
	// 40: a class of 40 behind one NAT may each create a group in the shared domain, and one
	// laptop takes at most a fifth of the domain's 200.
	num(&c.MaxGroupsPerClientDomain, "max-groups-per-client-domain", "MESHBOX_MAX_GROUPS_PER_CLIENT_DOMAIN", 40, "most live groups created from one client address in one domain; below --max-groups-per-domain (0 = no share)", true)
	// 50: a class of 40 behind one NAT, with its teacher and a few second tabs, joins one
	// group from one address; one laptop fills at most a fifth of a group of 250.
	num(&c.MaxNodesPerClientGroup, "max-nodes-per-client-group", "MESHBOX_MAX_NODES_PER_CLIENT_GROUP", 50, "most live nodes joined from one client address to one group (the host included); below --max-nodes-per-group (0 = no share)", true)
	// 200: five nodes for each of a class of 40 behind one NAT, in all groups together.
	num(&c.MaxNodesPerClient, "max-nodes-per-client", "MESHBOX_MAX_NODES_PER_CLIENT", 200, "most live nodes joined from one client address in all groups together (0 = no limit)", true)
	rate(&c.GroupCreateRate, "group-create-rate", "MESHBOX_GROUP_CREATE_RATE", 1, "groups one client address may create per second, after a burst of 60 (0 = unlimited)")
	dur(&c.MaxWait, "max-wait", "MESHBOX_MAX_WAIT", 30*time.Second, "longest long-poll wait")
	num(&c.TailItems, "tail-items", "MESHBOX_TAIL_ITEMS", 4096, "recent items kept in memory per group for live readers", false)
	num(&c.TailBytes, "tail-bytes", "MESHBOX_TAIL_BYTES", 2<<20, "bytes of recent items kept in memory per group for live readers (older ones are read from the database)", false)
	num(&c.FeedBytes, "feed-bytes", "MESHBOX_FEED_BYTES", 1<<20, "bytes of recent items of all groups kept for the dashboard's live feed", false)
	str(&c.AdminToken, "admin-token", "MESHBOX_ADMIN_TOKEN", "", "token for the dashboard's details and admin calls (empty: one is created at first start and kept beside the database)", nil)
	str(&c.APIKey, "api-key", "MESHBOX_API_KEY", "", "Mesh v2 API key required from GraphQL clients (empty: any key is accepted)", nil)
	dur(&c.PollingInterval, "polling-interval", "MESHBOX_POLLING_INTERVAL", 2*time.Second, "Mesh v2 polling interval told to clients without WebSocket")
	boolean(&c.NoWebSocket, "no-websocket", "MESHBOX_NO_WEBSOCKET", false, "refuse WebSocket upgrades, native and Mesh v2 (to test firewall fallback)")
	str(&c.Smalruby, "smalruby", "MESHBOX_SMALRUBY", "", "the Smalruby editor to serve at /smalruby/, talking to this box: its folder, or the ZIP GitHub's \"Download ZIP\" gives of smalruby/smalruby.app (empty: none)", nil)
	boolean(&c.GraphQLIntrospection, "graphql-introspection", "MESHBOX_GRAPHQL_INTROSPECTION", false, "allow GraphQL introspection (__schema, __type) on /graphql")
	dur(&c.PingInterval, "ping-interval", "MESHBOX_PING_INTERVAL", 20*time.Second, "how often WebSocket peers are pinged; one that does not answer within the next interval is dropped")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "MESHBOX_SHUTDOWN_TIMEOUT", 5*time.Second, "longest graceful shutdown")
	boolean(&c.Pprof, "pprof", "MESHBOX_PPROF", false, "serve /debug/pprof (for profiling)")
	str(&c.NATSURL, "nats-url", "MESHBOX_NATS_URL", "", "NATS servers, comma-separated, to share groups with other meshbox instances through JetStream (empty: the SQLite file)", nil)
	str(&c.NATSCreds, "nats-creds", "MESHBOX_NATS_CREDS", "", "NATS credentials file (.creds)", nil)
	str(&c.NATSToken, "nats-token", "MESHBOX_NATS_TOKEN", "", "NATS authentication token", nil)
	str(&c.NATSCA, "nats-ca", "MESHBOX_NATS_CA", "", "CA certificate file to verify the NATS servers' TLS certificates", nil)
	str(&c.NATSCert, "nats-cert", "MESHBOX_NATS_CERT", "", "client certificate file for NATS mutual TLS", nil)
	str(&c.NATSKey, "nats-key", "MESHBOX_NATS_KEY", "", "client key file for NATS mutual TLS", nil)
	str(&c.NATSStream, "nats-stream", "MESHBOX_NATS_STREAM", "MESHBOX", "JetStream stream holding the groups", checkStreamName)
	str(&c.NATSSubjects, "nats-subjects", "MESHBOX_NATS_SUBJECTS", "meshbox", "subject prefix of the stream", checkSubjectPrefix)
	num(&c.NATSReplicas, "nats-replicas", "MESHBOX_NATS_REPLICAS", 1, "stream replicas: 1, or 3 on a 3-node cluster (survives a node)", false)
	num(&c.NATSMaxBatch, "nats-max-batch", "MESHBOX_NATS_MAX_BATCH", 1000, "most messages in one atomic batch publish: the servers' jetstream max_batch_size", false)
	boolean(&c.MDNS, "mdns", "MESHBOX_MDNS", true, "advertise the box on the LAN by multicast DNS as NAME.local and an _http._tcp service (the only packets meshbox sends unasked)")
	str(&c.MDNSName, "mdns-name", "MESHBOX_MDNS_NAME", "meshbox", "host name advertised by mDNS, without .local (give each box in one network its own)", checkHostLabel)
	size(&c.MemoryLimit, "memory-limit", "MESHBOX_MEMORY_LIMIT", "0", "soft memory limit of the Go runtime, such as 256MiB (0: $GOMEMLIMIT or none); on a 1 GB Raspberry Pi use about 300MiB")
	showVersion := fs.Bool("version", false, "print the version and exit")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs, out, version)
			return c, ErrHelp
		}
		return c, flagError(err)
	}
	if *showVersion {
		fmt.Fprintf(out, "meshbox %s\n", version)
		return c, ErrHelp
	}
	if fs.NArg() > 0 {
		return c, &Error{Setting: quoteIfNeeded(fs.Arg(0)), NoValue: true, Problem: "is not a setting",
			Accepted: "settings are written --name=value; meshbox --help lists them"}
	}
	var errs []error
	given := map[string]bool{} // settings the user gave, by flag or environment
	for _, b := range binds {
		text, source := b.def, "--"+b.name
		if v := strings.TrimSpace(getenv(b.env)); v != "" {
			text, source = v, b.env
			given[b.name] = true
		}
		if b.flag.set {
			text, source = b.flag.text, "--"+b.name
			given[b.name] = true
		}
		c.sources[b.name] = source
		c.given[b.name] = b.flag.set || strings.TrimSpace(getenv(b.env)) != ""
		if problem, accepted := b.apply(text); problem != "" {
			errs = append(errs, &Error{Setting: source, Value: text, Problem: problem, Accepted: accepted})
		}
	}
	c.Synchronous = strings.ToUpper(c.Synchronous) // SQLite's spelling
	c.MaxBodyBytes = int64(maxBody)
	// A box told to live in little memory decodes less at once: a 32nd of the limit (decoded
	// requests take a few times their body's bytes, and the rest of the box needs the room),
	// unless the teacher chose the budget.
	if c.MemoryLimit > 0 && !given["max-decoding"] {
		c.MaxDecoding = min(c.MaxDecoding, max(c.MemoryLimit/32, 1<<20))
	}
	errs = append(errs, c.checkNATS()...)
	if err := c.checkAdminToken(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, c.checkShares()...)
	return c, errors.Join(errs...)
}

// MinAdminTokenLen is the shortest admin token meshbox accepts. The token opens every group's
// details and the teacher's actions to anyone on the school network who can guess it: a PIN
// such as 7391 was found in seconds from one laptop. 16 characters of letters and digits are
// beyond guessing at any rate the box answers; the token meshbox creates has 24.
const MinAdminTokenLen = 16

// checkAdminToken refuses a weak teacher password at start rather than warning about it: a
// warning scrolls past on a Raspberry Pi's console, a box that will not start is noticed.
// The value is not echoed, since it is a password.
func (c *Config) checkAdminToken() error {
	n := utf8.RuneCountInString(c.AdminToken)
	if c.AdminToken == "" || n >= MinAdminTokenLen {
		return nil
	}
	return &Error{Setting: c.source("admin-token"), NoValue: true,
		Problem:  fmt.Sprintf("is too short (%d characters): a short password can be guessed from any pupil's computer", n),
		Accepted: fmt.Sprintf("use at least %d characters, or leave it unset and meshbox creates a strong one at first start", MinAdminTokenLen)}
}

// checkShares keeps each per-address share below the cap it shares: a share at or above it
// would let one laptop fill a whole group or domain again. A share the user gave that high is
// refused; a default that high (the cap was lowered) becomes half the cap, which still leaves
// the rest to the others. 0 turns a share off.
func (c *Config) checkShares() []error {
	var errs []error
	for _, s := range []struct {
		share      *int
		name, over string
		limit      int
	}{
		{&c.MaxGroupsPerClientDomain, "max-groups-per-client-domain", "max-groups-per-domain", c.MaxGroupsPerDomain},
		{&c.MaxNodesPerClientGroup, "max-nodes-per-client-group", "max-nodes-per-group", c.MaxNodesPerGroup},
	} {
		if *s.share < s.limit || *s.share == 0 || s.limit < 2 {
			continue // a cap of one cannot be shared
		}
		if !c.given[s.name] {
			*s.share = s.limit / 2
			continue
		}
		errs = append(errs, &Error{Setting: c.source(s.name), Value: strconv.Itoa(*s.share), Problem: "is not below " + c.source(s.over) + " (" + strconv.Itoa(s.limit) + ")",
			Accepted: "use a number below it, so one address cannot fill it alone, or 0 to turn the share off"})
	}
	return errs
}

// checkNATS checks the NATS settings against each other, and fits the publish size to one
// atomic batch (a publish's events and the changes beside them).
func (c *Config) checkNATS() []error {
	if !c.UsesNATS() {
		return nil
	}
	var errs []error
	if c.NATSReplicas > 5 {
		errs = append(errs, &Error{Setting: c.source("nats-replicas"), Value: strconv.Itoa(c.NATSReplicas), Problem: "is too many replicas", Accepted: "use 1, 3 or 5"})
	}
	if c.NATSMaxBatch < 16 {
		errs = append(errs, &Error{Setting: c.source("nats-max-batch"), Value: strconv.Itoa(c.NATSMaxBatch), Problem: "is too small", Accepted: "use at least 16 (the servers' max_batch_size, 1000 by default)"})
	}
	if (c.NATSCert == "") != (c.NATSKey == "") {
		errs = append(errs, &Error{Setting: c.source("nats-cert"), NoValue: true, Problem: "needs its key, and the key its certificate", Accepted: "give both --nats-cert and --nats-key"})
	}
	if limit := c.NATSMaxBatch / 2; c.MaxEventsPerPublish > limit && limit > 0 {
		c.MaxEventsPerPublish = limit
	}
	return errs
}

// source is how the user gave a setting ("--name" when not at all).
func (c *Config) source(name string) string {
	if s := c.sources[name]; s != "" {
		return s
	}
	return "--" + name
}

func checkStreamName(s string) (string, string) {
	if s == "" || strings.ContainsAny(s, ".*> ") {
		return "is not a stream name", "use letters, digits, dashes or underscores, such as MESHBOX"
	}
	return "", ""
}

func checkSubjectPrefix(s string) (string, string) {
	if s == "" || strings.ContainsAny(s, "*> ") {
		return "is not a subject prefix", "use dot-separated words without wildcards, such as meshbox"
	}
	return "", ""
}

// parseSize reads a byte count: a whole number with an optional unit (B, KB, MB, GB, KiB, MiB,
// GiB; K, M, G mean the binary units, as df and ls -h print them).
func parseSize(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	i := len(s)
	for i > 0 && (s[i-1] < '0' || s[i-1] > '9') {
		i--
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s[:i]), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	mult := map[string]int64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1000,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1000 * 1000,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1000 * 1000 * 1000,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1000 * 1000 * 1000 * 1000,
	}[strings.ToLower(strings.TrimSpace(s[i:]))]
	if mult == 0 || (n > 0 && n > (1<<62)/mult) {
		return 0, false
	}
	return n * mult, true
}

func usage(fs *flag.FlagSet, out io.Writer, version string) {
	fmt.Fprintf(out, "meshbox %s: a self-hosted real-time relay for classrooms\n\n", version)
	fmt.Fprintf(out, "Usage: meshbox [flags]        run the server\n       meshbox bench [flags]  load-test a running meshbox\n       meshbox service install [flags]  write a systemd unit (see meshbox service --help)\n\nFlags (each also read from the environment variable in brackets):\n")
	fs.SetOutput(out)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

// flagError turns the flag package's own errors (unknown flag, missing value) into one line in
// the same shape as a bad value.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return &Error{Setting: "--" + strings.TrimLeft(name, "-"), NoValue: true, Problem: "is not a setting", Accepted: "meshbox --help lists them"}
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		name = "--" + strings.TrimLeft(name, "-")
		return &Error{Setting: name, NoValue: true, Problem: "needs a value", Accepted: "write " + name + "=VALUE"}
	}
	return &Error{Setting: msg, NoValue: true, Problem: "cannot be read", Accepted: "settings are written --name=value; meshbox --help lists them"}
}

func checkAddr(s string) (string, string) {
	const accepted = "use :PORT (every network) or HOST:PORT, such as :8080 or 127.0.0.1:8080"
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "is not a listening address", accepted
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "is not a listening address", accepted
	}
	return "", ""
}

func checkPublicURL(s string) (string, string) {
	if s == "" {
		return "", ""
	}
	const accepted = "use the address students type, starting with http:// or https://, such as http://192.168.1.20:8080"
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "is not a web address", accepted
	}
	return "", ""
}

func checkHostLabel(s string) (string, string) {
	if !validHostLabel(s) {
		return "is not a host name", "use one word of letters, digits and hyphens, such as meshbox or room-2"
	}
	return "", ""
}

func checkDomain(s string) (string, string) {
	if !rules.ValidDomain(s) {
		return "is not a domain name", "use 1 to 256 letters, digits, dots, dashes or underscores"
	}
	return "", ""
}

// orList writes choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) == 1 {
		return choices[0]
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// shortDuration prints 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
