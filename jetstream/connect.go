package jetstream

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ConnectOptions are how a meshbox reaches its NATS servers, in the terms NATS users know.
type ConnectOptions struct {
	// URLs is a comma-separated list of servers; user:password@ in a URL authenticates.
	URLs  string
	Creds string // a .creds file (JWT and NKey seed)
	Token string
	// CA verifies the servers' certificates; Cert and Key are a client certificate for
	// mutual TLS.
	CA, Cert, Key string
	Name          string // the connection's name, shown by the servers' monitoring
	Logger        *slog.Logger
}

// Connect connects to the servers and keeps reconnecting (to any of them) for as long as the
// connection is open: an instance outlives a NATS node's restart.
func Connect(o ConnectOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	if o.Creds != "" {
		opts = append(opts, nats.UserCredentials(o.Creds))
	}
	if o.Token != "" {
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CA != "" {
		opts = append(opts, nats.RootCAs(o.CA))
	}
	if o.Cert != "" {
		opts = append(opts, nats.ClientCert(o.Cert, o.Key))
	}
	var urls []string
	for _, u := range strings.Split(o.URLs, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats: %w", err)
	}
	return nc, nil
}
