package meshv2

// schemaSDL is the Smalruby Mesh v2 schema as the cloud service publishes it, so the
// unmodified client's documents validate here exactly as they do there.
const schemaSDL = `
schema {
  query: Query
  mutation: Mutation
  subscription: Subscription
}

scalar AWSDateTime

input SensorDataInput { key: String!  value: String! }
type SensorData { key: String!  value: String! }

type Group {
  id: ID!
  domain: String!
  fullId: String!
  name: String!
  hostId: ID!
  expiresAt: AWSDateTime!
  heartbeatIntervalSeconds: Int
  useWebSocket: Boolean!
  pollingIntervalSeconds: Int
}

type Node {
  id: ID!
  name: String!
  groupId: ID
  domain: String
  expiresAt: AWSDateTime
  heartbeatIntervalSeconds: Int
  useWebSocket: Boolean
  pollingIntervalSeconds: Int
}

type MeshMessage {
  groupId: ID!
  domain: String!
  nodeStatus: NodeStatus
  batchEvent: BatchEvent
  groupDissolve: GroupDissolvePayload
}

type NodeStatus {
  nodeId: ID!
  groupId: ID!
  domain: String!
  data: [SensorData!]!
  timestamp: AWSDateTime!
}

type Event {
  name: String!
  firedByNodeId: ID!
  groupId: ID!
  domain: String!
  payload: String
  timestamp: AWSDateTime!
  cursor: String
  orderKey: String
}

input EventInput {
  eventName: String!
  payload: String
  firedAt: AWSDateTime!
  orderKey: String
}

type BatchEvent {
  events: [Event!]!
  firedByNodeId: ID!
  groupId: ID!
  domain: String!
  timestamp: AWSDateTime!
}

type GroupDissolvePayload { groupId: ID!  domain: String!  message: String! }
type HeartbeatPayload { groupId: ID!  domain: String!  expiresAt: AWSDateTime!  heartbeatIntervalSeconds: Int }
type MemberHeartbeatPayload { nodeId: ID!  groupId: ID!  domain: String!  expiresAt: AWSDateTime!  heartbeatIntervalSeconds: Int }
type LeaveGroupPayload { peerId: ID!  groupId: ID!  domain: String!  message: String! }
type RecordEventsPayload { groupId: ID!  domain: String!  recordedCount: Int!  nextSince: String! }
type PollGroupData { events: [Event!]!  nodeStatuses: [NodeStatus!]! }

type Query {
  listGroupsByDomain(domain: String!): [Group!]!
  getNodeStatus(nodeId: ID!): NodeStatus
  listGroupStatuses(groupId: ID!, domain: String!): [NodeStatus!]!
  listNodesInGroup(groupId: ID!, domain: String!): [Node!]!
  searchGroupsByNamePrefix(namePrefix: String!, limit: Int): [Group!]!
  getEventsSince(groupId: ID!, domain: String!, since: String!): [Event!]!
  pollGroupData(groupId: ID!, domain: String!, since: String!): PollGroupData!
}

type Mutation {
  createDomain: String!
  createGroup(name: String!, hostId: ID!, domain: String!, maxConnectionTimeSeconds: Int, useWebSocket: Boolean!): Group!
  joinGroup(groupId: ID!, domain: String!, nodeId: ID!, useWebSocket: Boolean): Node!
  leaveGroup(groupId: ID!, domain: String!, nodeId: ID!): LeaveGroupPayload
  dissolveGroup(groupId: ID!, domain: String!, hostId: ID!): MeshMessage
  renewHeartbeat(groupId: ID!, domain: String!, hostId: ID!): HeartbeatPayload!
  sendMemberHeartbeat(groupId: ID!, domain: String!, nodeId: ID!): MemberHeartbeatPayload!
  reportDataByNode(groupId: ID!, domain: String!, nodeId: ID!, data: [SensorDataInput!]!): MeshMessage
  fireEventsByNode(groupId: ID!, domain: String!, nodeId: ID!, events: [EventInput!]!): MeshMessage
  recordEventsByNode(groupId: ID!, domain: String!, nodeId: ID!, events: [EventInput!]!): RecordEventsPayload!
}

type Subscription {
  onMessageInGroup(groupId: ID!, domain: String!): MeshMessage
}
`
