// Package lan makes a box findable by name on the classroom network: it answers multicast DNS
// (RFC 6762) for NAME.local and advertises an _http._tcp DNS-SD service (RFC 6763) whose TXT
// record names the dashboard path and the Mesh v2 endpoint. These answers, sent to the mDNS
// multicast group of the local link, are the only packets meshbox sends that no client asked
// for; nothing is sent beyond the link.
//
// It is built on github.com/pion/mdns/v2: a maintained, pure-Go responder that sends its answers
// by multicast as the RFC asks (so Avahi, Bonjour and Windows resolvers accept them), answers
// A/AAAA per interface with that interface's own address, and has a DNS-SD browser used by the
// tests.
package lan

import (
	"fmt"
	"log/slog"
	"net"

	"github.com/pion/logging"
	"github.com/pion/mdns/v2"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ServiceType is the DNS-SD type the box is advertised under.
const ServiceType = "_http._tcp"

// Config says what to advertise.
type Config struct {
	// Name is the host label: the box answers for Name.local.
	Name string
	// Port is the HTTP port.
	Port int
	// Text is the service's TXT record, in order (for example path=/ and meshv2=/graphql).
	Text [][2]string
	// Interfaces limits the advertisement to these interfaces; nil means every interface that
	// is up, loopback excluded.
	Interfaces []net.Interface
	// Logger receives the responder's warnings.
	Logger *slog.Logger
}

// Advertiser answers mDNS queries until Stop.
type Advertiser struct {
	conn *mdns.Conn
	host string
}

// Start opens the mDNS sockets (UDP 5353, shared with any other responder such as Avahi) and
// begins answering. It fails when no interface can join the mDNS group.
func Start(cfg Config) (*Advertiser, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Port <= 0 || cfg.Port > 65535 {
		return nil, fmt.Errorf("mdns: bad port %d", cfg.Port)
	}
	v4, v6, err := listen()
	if err != nil {
		return nil, err
	}
	host := cfg.Name + ".local"
	opts := []mdns.ServerOption{
		mdns.WithName("meshbox"),
		mdns.WithLocalNames(host),
		mdns.WithLoggerFactory(slogFactory{cfg.Logger}),
		mdns.WithCacheRefresh(false), // a responder: it never re-asks for records it cached
	}
	if cfg.Interfaces != nil {
		opts = append(opts, mdns.WithInterfaces(cfg.Interfaces...))
		for _, ifc := range cfg.Interfaces {
			if ifc.Flags&net.FlagLoopback != 0 {
				opts = append(opts, mdns.WithIncludeLoopback(true))
				break
			}
		}
	}
	conn, err := mdns.NewServer(v4, v6, opts...)
	if err != nil {
		closeAll(v4, v6)
		return nil, fmt.Errorf("mdns: start responder: %w", err)
	}
	text := make([]mdns.TXTEntry, 0, len(cfg.Text))
	for _, kv := range cfg.Text {
		text = append(text, mdns.NewTXTString(kv[0], kv[1]))
	}
	if err := conn.Register(mdns.ServiceInstance{
		Instance: cfg.Name, Service: ServiceType, Domain: "local", Host: host + ".",
		Port: uint16(cfg.Port), Text: text,
	}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("mdns: register %s: %w", ServiceType, err)
	}
	return &Advertiser{conn: conn, host: host}, nil
}

// Host is the advertised name, such as meshbox.local.
func (a *Advertiser) Host() string { return a.host }

// Stop stops answering and closes the sockets; the responder's goroutines have ended when it
// returns.
func (a *Advertiser) Stop() error {
	if err := a.conn.Close(); err != nil {
		return fmt.Errorf("mdns: stop: %w", err)
	}
	return nil
}

// listen opens the IPv4 and IPv6 mDNS sockets; one of them is enough (an IPv4-only board).
func listen() (*ipv4.PacketConn, *ipv6.PacketConn, error) {
	var v4 *ipv4.PacketConn
	var v6 *ipv6.PacketConn
	// Go binds a multicast address as the wildcard with SO_REUSEADDR, so Avahi may hold the
	// port too.
	l4, err4 := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(224, 0, 0, 0), Port: 5353})
	if err4 == nil {
		v4 = ipv4.NewPacketConn(l4)
	}
	l6, err6 := net.ListenUDP("udp6", &net.UDPAddr{IP: net.ParseIP("ff02::"), Port: 5353})
	if err6 == nil {
		v6 = ipv6.NewPacketConn(l6)
	}
	if v4 == nil && v6 == nil {
		return nil, nil, fmt.Errorf("mdns: listen on UDP 5353: %w; %w", err4, err6)
	}
	return v4, v6, nil
}

func closeAll(v4 *ipv4.PacketConn, v6 *ipv6.PacketConn) {
	if v4 != nil {
		v4.Close()
	}
	if v6 != nil {
		v6.Close()
	}
}

// slogFactory hands the responder's log lines to slog. Its trace and debug lines (one per
// packet) stay at debug level.
type slogFactory struct{ log *slog.Logger }

func (f slogFactory) NewLogger(scope string) logging.LeveledLogger {
	return slogLogger{f.log.With("scope", scope)}
}

type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Trace(msg string)                  { l.log.Debug(msg) }
func (l slogLogger) Tracef(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l slogLogger) Debug(msg string)                  { l.log.Debug(msg) }
func (l slogLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l slogLogger) Info(msg string)                   { l.log.Info(msg) }
func (l slogLogger) Infof(format string, args ...any)  { l.log.Info(fmt.Sprintf(format, args...)) }
func (l slogLogger) Warn(msg string)                   { l.log.Warn(msg) }
func (l slogLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l slogLogger) Error(msg string)                  { l.log.Error(msg) }
func (l slogLogger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
