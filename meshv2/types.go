package meshv2

import (
	"encoding/json"
	"fmt"
	"meshbox/apierror"
	"time"

	graphql "github.com/graph-gophers/graphql-go"
)

// awsTimeLayout is AppSync's AWSDateTime as the cloud service writes it: UTC, milliseconds.
const awsTimeLayout = "2006-01-02T15:04:05.000Z"

// DateTime is the AWSDateTime scalar: an ISO-8601 string with milliseconds.
type DateTime struct{ time.Time }

// ImplementsGraphQLType binds DateTime to the schema's AWSDateTime scalar.
func (DateTime) ImplementsGraphQLType(name string) bool { return name == "AWSDateTime" }

// UnmarshalGraphQL accepts any RFC 3339 time, which is what JavaScript's toISOString gives.
func (t *DateTime) UnmarshalGraphQL(input any) error {
	s, ok := input.(string)
	if !ok {
		return fmt.Errorf("AWSDateTime must be a string, got %T", input)
	}
	v, err := parseTime(s)
	if err != nil {
		return err
	}
	t.Time = v
	return nil
}

// MarshalJSON writes UTC with milliseconds, as AppSync does.
func (t DateTime) MarshalJSON() ([]byte, error) {
	return json.Marshal(formatTime(t.Time))
}

func formatTime(t time.Time) string { return t.UTC().Format(awsTimeLayout) }

func parseTime(s string) (time.Time, error) {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("not an ISO-8601 date-time: %q", s)
	}
	return v, nil
}

func dt(t time.Time) DateTime { return DateTime{t} }

func int32p(d time.Duration) *int32 {
	v := int32(d / time.Second)
	return &v
}

// The structs below are the schema's object types; graphql-go reads their fields by name.

type sensorData struct {
	Key   string
	Value string
}

type groupOut struct {
	ID                       graphql.ID
	Domain                   string
	FullID                   string
	Name                     string
	HostID                   graphql.ID
	ExpiresAt                DateTime
	HeartbeatIntervalSeconds *int32
	UseWebSocket             bool
	PollingIntervalSeconds   *int32
}

type nodeOut struct {
	ID                       graphql.ID
	Name                     string
	GroupID                  *graphql.ID
	Domain                   *string
	ExpiresAt                *DateTime
	HeartbeatIntervalSeconds *int32
	UseWebSocket             *bool
	PollingIntervalSeconds   *int32
}

type nodeStatus struct {
	NodeID    graphql.ID
	GroupID   graphql.ID
	Domain    string
	Data      []sensorData
	Timestamp DateTime
}

type eventOut struct {
	Name          string
	FiredByNodeID graphql.ID
	GroupID       graphql.ID
	Domain        string
	Payload       *string
	Timestamp     DateTime
	Cursor        *string
	OrderKey      *string
}

type batchEvent struct {
	Events        []eventOut
	FiredByNodeID graphql.ID
	GroupID       graphql.ID
	Domain        string
	Timestamp     DateTime
}

type groupDissolve struct {
	GroupID graphql.ID
	Domain  string
	Message string
}

type meshMessage struct {
	GroupID       graphql.ID
	Domain        string
	NodeStatus    *nodeStatus
	BatchEvent    *batchEvent
	GroupDissolve *groupDissolve
}

type heartbeatPayload struct {
	GroupID                  graphql.ID
	Domain                   string
	ExpiresAt                DateTime
	HeartbeatIntervalSeconds *int32
}

type memberHeartbeatPayload struct {
	NodeID                   graphql.ID
	GroupID                  graphql.ID
	Domain                   string
	ExpiresAt                DateTime
	HeartbeatIntervalSeconds *int32
}

type leaveGroupPayload struct {
	PeerID  graphql.ID
	GroupID graphql.ID
	Domain  string
	Message string
}

type recordEventsPayload struct {
	GroupID       graphql.ID
	Domain        string
	RecordedCount int32
	NextSince     string
}

type pollGroupData struct {
	Events       []eventOut
	NodeStatuses []nodeStatus
}

// Error types of the Mesh v2 protocol, as the client's DISCONNECT_ERROR_TYPES names them.
const (
	errGroupNotFound   = apierror.MeshGroupNotFound
	errUnauthorized    = apierror.MeshUnauthorized
	errNodeNotFound    = apierror.MeshNodeNotFound
	errValidation      = apierror.MeshValidation
	errInternal        = apierror.MeshInternal
	errUnauthenticated = apierror.MeshUnauthenticated
	// errBusy answers a request refused because every execution slot stayed busy.
	errBusy = apierror.MeshBusy
	// errStorageFull is meshbox's own: not one of the types the client disconnects on, so a
	// node keeps its group and its next call (a retry, the next heartbeat) goes through once
	// the purge has made room.
	errStorageFull = apierror.MeshStorageFull
)

// meshError is a resolver error that carries an AppSync errorType.
type meshError struct {
	kind string
	msg  string
}

func (e *meshError) Error() string { return e.msg }

// Extensions also exposes the type the way graphql-go clients look for it.
func (e *meshError) Extensions() map[string]any { return map[string]any{"errorType": e.kind} }

func newError(kind, format string, args ...any) error {
	return &meshError{kind: kind, msg: fmt.Sprintf(format, args...)}
}
