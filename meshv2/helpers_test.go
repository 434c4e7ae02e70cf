package meshv2

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
)

type testServer struct {
	*httptest.Server
	h      *Handler
	apiKey string
}

// newTestServer serves a Handler over backend on a real listener.
func newTestServer(t *testing.T, cfg Config, backend Backend) *testServer {
	t.Helper()
	if cfg.DomainFor == nil {
		cfg.DomainFor = func(*http.Request) string { return "classroom" }
	}
	h, err := New(cfg, backend, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := chi.NewRouter()
	h.Routes(r)
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
		srv.Close()
	})
	return &testServer{Server: srv, h: h, apiKey: cfg.APIKey}
}

type gqlResult struct {
	Status int
	Header http.Header
	Data   map[string]any
	Errors []map[string]any
}

// do posts one GraphQL request as the aws-appsync client does.
func (s *testServer) do(t *testing.T, query string, vars map[string]any) gqlResult {
	t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", s.apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Data   map[string]any   `json:"data"`
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, raw)
	}
	return gqlResult{Status: resp.StatusCode, Header: resp.Header, Data: out.Data, Errors: out.Errors}
}

// ok runs a request that must succeed and returns the named field of data.
func (s *testServer) ok(t *testing.T, field, query string, vars map[string]any) any {
	t.Helper()
	res := s.do(t, query, vars)
	if res.Status != http.StatusOK || len(res.Errors) > 0 {
		t.Fatalf("%s: status %d errors %v", field, res.Status, res.Errors)
	}
	return res.Data[field]
}

// fails runs a request that must fail with errorType kind.
func (s *testServer) fails(t *testing.T, kind, query string, vars map[string]any) {
	t.Helper()
	res := s.do(t, query, vars)
	if len(res.Errors) == 0 {
		t.Fatalf("want %s, got data %v", kind, res.Data)
	}
	if got := res.Errors[0]["errorType"]; got != kind {
		t.Fatalf("want errorType %s, got %v (%v)", kind, got, res.Errors[0]["message"])
	}
}

func obj(t *testing.T, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not an object: %#v", v)
	}
	return m
}

func list(t *testing.T, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok {
		t.Fatalf("not a list: %#v", v)
	}
	return l
}

// The documents below are the ones the Smalruby client sends.
const (
	qCreateDomain = `mutation CreateDomain { createDomain }`
	qCreateGroup  = `mutation CreateGroup($name: String!, $hostId: ID!, $domain: String!, $maxConnectionTimeSeconds: Int, $useWebSocket: Boolean!) {
  createGroup(name: $name, hostId: $hostId, domain: $domain, maxConnectionTimeSeconds: $maxConnectionTimeSeconds, useWebSocket: $useWebSocket) {
    id domain fullId name hostId expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds __typename } }`
	qJoin = `mutation JoinGroup($groupId: ID!, $domain: String!, $nodeId: ID!, $useWebSocket: Boolean) {
  joinGroup(groupId: $groupId, domain: $domain, nodeId: $nodeId, useWebSocket: $useWebSocket) {
    id name groupId domain expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds } }`
	qLeave = `mutation LeaveGroup($groupId: ID!, $nodeId: ID!, $domain: String!) {
  leaveGroup(groupId: $groupId, nodeId: $nodeId, domain: $domain) { peerId groupId domain message } }`
	qDissolve = `mutation DissolveGroup($groupId: ID!, $domain: String!, $hostId: ID!) {
  dissolveGroup(groupId: $groupId, domain: $domain, hostId: $hostId) { groupId domain groupDissolve { groupId domain message } } }`
	qRenew = `mutation RenewHeartbeat($groupId: ID!, $domain: String!, $hostId: ID!) {
  renewHeartbeat(groupId: $groupId, domain: $domain, hostId: $hostId) { groupId domain expiresAt heartbeatIntervalSeconds } }`
	qMemberHB = `mutation SendMemberHeartbeat($groupId: ID!, $domain: String!, $nodeId: ID!) {
  sendMemberHeartbeat(groupId: $groupId, domain: $domain, nodeId: $nodeId) { nodeId groupId domain expiresAt heartbeatIntervalSeconds } }`
	qReport = `mutation ReportDataByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $data: [SensorDataInput!]!) {
  reportDataByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, data: $data) {
    groupId domain nodeStatus { nodeId groupId domain data { key value } timestamp } } }`
	qFire = `mutation FireEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
  fireEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) {
    groupId domain batchEvent { events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp } } }`
	qRecord = `mutation RecordEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
  recordEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) { groupId domain recordedCount nextSince } }`
	qEventsSince = `query GetEventsSince($groupId: ID!, $domain: String!, $since: String!) {
  getEventsSince(groupId: $groupId, domain: $domain, since: $since) { name firedByNodeId groupId domain payload timestamp cursor orderKey } }`
	qPoll = `query PollGroupData($groupId: ID!, $domain: String!, $since: String!) {
  pollGroupData(groupId: $groupId, domain: $domain, since: $since) {
    events { name firedByNodeId payload timestamp cursor orderKey } nodeStatuses { nodeId groupId domain data { key value } timestamp } } }`
	qListGroups = `query ListGroupsByDomain($domain: String!) { listGroupsByDomain(domain: $domain) { id domain fullId name hostId expiresAt } }`
	qSearch     = `query SearchGroupsByNamePrefix($namePrefix: String!, $limit: Int) {
  searchGroupsByNamePrefix(namePrefix: $namePrefix, limit: $limit) { id domain fullId name hostId expiresAt } }`
	qStatuses = `query ListGroupStatuses($groupId: ID!, $domain: String!) {
  listGroupStatuses(groupId: $groupId, domain: $domain) { nodeId groupId domain data { key value } timestamp } }`
	qNodes      = `query ListNodesInGroup($groupId: ID!, $domain: String!) { listNodesInGroup(groupId: $groupId, domain: $domain) { id name groupId domain expiresAt } }`
	qNodeStatus = `query GetNodeStatus($nodeId: ID!) { getNodeStatus(nodeId: $nodeId) { nodeId groupId domain data { key value } timestamp } }`
	qSubscribe  = `subscription OnMessageInGroup($groupId: ID!, $domain: String!) {
  onMessageInGroup(groupId: $groupId, domain: $domain) {
    groupId domain
    nodeStatus { nodeId groupId domain data { key value } timestamp }
    batchEvent { events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp }
    groupDissolve { groupId domain message } } }`
)

// group creates a group with host "host" in domain "classroom" and returns its id.
func (s *testServer) group(t *testing.T, useWS bool) string {
	t.Helper()
	g := obj(t, s.ok(t, "createGroup", qCreateGroup, map[string]any{
		"name": "host", "hostId": "host", "domain": "classroom", "useWebSocket": useWS,
	}))
	return g["id"].(string)
}

func (s *testServer) join(t *testing.T, gid, nid string) {
	t.Helper()
	s.ok(t, "joinGroup", qJoin, map[string]any{"groupId": gid, "domain": "classroom", "nodeId": nid})
}
