package db

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations is the ordered schema history; the database's user_version is how many have run.
// Append only: never edit a step that has shipped.
var migrations = []string{
	`CREATE TABLE groups (
		id           TEXT PRIMARY KEY,
		domain       TEXT NOT NULL,
		name         TEXT NOT NULL,
		host         TEXT NOT NULL,
		created_at   INTEGER NOT NULL,
		expires_at   INTEGER NOT NULL,
		host_seen_at INTEGER NOT NULL,
		use_ws       INTEGER NOT NULL DEFAULT 1,
		first_cursor INTEGER NOT NULL,
		ended_at     INTEGER NOT NULL DEFAULT 0,
		end_reason   TEXT NOT NULL DEFAULT ''
	);
	CREATE INDEX groups_domain ON groups(domain);
	CREATE TABLE nodes (
		group_id   TEXT NOT NULL REFERENCES groups(id) ON DELETE CASCADE,
		id         TEXT NOT NULL,
		name       TEXT NOT NULL,
		token_hash BLOB NOT NULL,
		joined_at  INTEGER NOT NULL,
		last_seen  INTEGER NOT NULL,
		expires_at INTEGER NOT NULL,
		data       TEXT NOT NULL DEFAULT '{}',
		data_at    INTEGER NOT NULL DEFAULT 0,
		PRIMARY KEY (group_id, id)
	) WITHOUT ROWID;
	-- AUTOINCREMENT: without it SQLite reuses max(rowid)+1 once a purge empties the table, and
	-- cursors that clients hold would point into the future.
	CREATE TABLE items (
		cursor   INTEGER PRIMARY KEY AUTOINCREMENT,
		group_id TEXT NOT NULL,
		at       INTEGER NOT NULL,
		body     BLOB NOT NULL
	);
	CREATE INDEX items_group ON items(group_id, cursor);
	CREATE TABLE meta (
		key   TEXT PRIMARY KEY,
		value INTEGER NOT NULL
	);`,
	// Per group, the newest of its items that the purge deleted: only a reader behind it has
	// missed anything.
	`ALTER TABLE groups ADD COLUMN purged_through INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE groups ADD COLUMN end_cursor INTEGER NOT NULL DEFAULT 0;`,
	// Mesh v2 reaches only groups opened to it, and acts only as its own nodes.
	`ALTER TABLE groups ADD COLUMN mesh_v2 INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE nodes ADD COLUMN mesh_v2 INTEGER NOT NULL DEFAULT 0;`,
}

// SchemaVersion is the schema version this binary writes.
func SchemaVersion() int { return len(migrations) }

func migrate(ctx context.Context, conn *sql.Conn) error {
	var version int
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this meshbox (%d): upgrade meshbox", version, len(migrations))
	}
	for i := version; i < len(migrations); i++ {
		if err := migrateStep(ctx, conn, i); err != nil {
			return err
		}
	}
	return nil
}

func migrateStep(ctx context.Context, conn *sql.Conn, i int) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, migrations[i]); err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", i+1)); err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migration %d: %w", i+1, err)
	}
	return nil
}
