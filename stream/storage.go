package stream

import "time"

// StorageState says how close a log is to running out of room.
type StorageState string

// The storage states, in the order a filling disk goes through them.
const (
	// StorageOK: items are kept for their TTL.
	StorageOK StorageState = "ok"
	// StoragePressure: the log is near its size budget and the purge deletes items before
	// their TTL (from the groups over their share first); writes are accepted.
	StoragePressure StorageState = "pressure"
	// StorageFull: writes are refused (507 storage_full) until the purge makes room; reads
	// continue.
	StorageFull StorageState = "full"
	// StorageRecovering: writes are accepted again after the log was full, and it is still
	// making room (its reserve is not yet back, or its file may not grow yet).
	StorageRecovering StorageState = "recovering"
)

// StorageStates lists every state, for metrics that show each as a series.
var StorageStates = [...]StorageState{StorageOK, StoragePressure, StorageFull, StorageRecovering}

// StorageStatus is a log's storage state, since when, and why.
type StorageStatus struct {
	State  StorageState `json:"state"`
	Since  time.Time    `json:"since"`
	Reason string       `json:"reason,omitempty"`
	// Budget is the size budget in force in bytes (0: none, or not known).
	Budget int64 `json:"budgetBytes,omitempty"`
}

// PurgeAsker is implemented by a log that can tell, after an append, that a purge should run
// now rather than at its next interval (it passed its high-water mark).
type PurgeAsker interface {
	PurgeDue() bool
}

// StorageReporter is implemented by a log that tracks its storage state.
type StorageReporter interface {
	Storage() StorageStatus
}
