package db

// CheckpointNow runs a TRUNCATE checkpoint on the writer at once: tests that fill a disk faster
// than the one-second checkpointer use it to keep the WAL as small as it is in service.
func (l *Log) CheckpointNow() error {
	_, err := l.checkpoint(true, "TRUNCATE")
	return err
}
