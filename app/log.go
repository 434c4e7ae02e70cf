package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"

	"meshbox/config"
	"meshbox/db"
	"meshbox/jetstream"
	"meshbox/stream"
)

// openedLog is the log the settings pick, with what closing it takes.
type openedLog struct {
	log stream.Log
	// db is the SQLite log (nil on NATS), for its pool statistics.
	db *db.Log
	nc *nats.Conn
	// maxBatchItems bounds the rules' batches (0: the rules' default).
	maxBatchItems int
}

// openLog opens the SQLite file, or, with a NATS URL, the JetStream stream.
func openLog(ctx context.Context, cfg config.Config, version string, log *slog.Logger) (*openedLog, error) {
	if !cfg.UsesNATS() {
		l, err := db.Open(ctx, cfg.DB, db.Options{Synchronous: cfg.Synchronous, MaxBytes: cfg.MaxDBSize, Logger: log.With("component", "db")})
		if err != nil {
			return nil, err
		}
		return &openedLog{log: l, db: l}, nil
	}
	nc, err := jetstream.Connect(jetstream.ConnectOptions{
		URLs: cfg.NATSURL, Creds: cfg.NATSCreds, Token: cfg.NATSToken,
		CA: cfg.NATSCA, Cert: cfg.NATSCert, Key: cfg.NATSKey,
		Name: "meshbox " + version, Logger: log.With("component", "nats"),
	})
	if err != nil {
		return nil, err
	}
	l, err := jetstream.Open(ctx, nc, jetstream.Options{
		Stream: cfg.NATSStream, Subjects: cfg.NATSSubjects, Replicas: cfg.NATSReplicas,
		MaxBatch: cfg.NATSMaxBatch, Logger: log.With("component", "jetstream"),
	})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("open jetstream log: %w", err)
	}
	// A group commit's items and changes should fit one atomic batch (config keeps a
	// publish's events to half of one).
	return &openedLog{log: l, nc: nc, maxBatchItems: max(1, cfg.NATSMaxBatch/4)}, nil
}

// Close closes the log, then its connection (draining what is in flight).
func (o *openedLog) Close() error {
	err := o.log.Close()
	if o.nc != nil {
		err = errors.Join(err, o.nc.Drain())
	}
	return err
}
