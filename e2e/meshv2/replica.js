// A replica of the parts of the Smalruby Mesh v2 extension (mesh-service.js and its mixins:
// group-lifecycle, polling-client, event-sender, heartbeat-manager) that decide what a
// classroom sees: the WebSocket probe, which transport a node uses, its poll position
// (lastFetchTime), its event batches, its heartbeats and its leave timer. The GraphQL
// documents are the extension's own; requests go through the real aws-appsync client.
'use strict';

global.WebSocket = global.WebSocket || require('ws');
const AWSAppSyncClient = require('aws-appsync').default;
const gqlTag = require('graphql-tag');

const gql = gqlTag.default || gqlTag;

const Q = {
    createDomain: gql`mutation CreateDomain { createDomain }`,
    createGroup: gql`mutation CreateGroup($name: String!, $hostId: ID!, $domain: String!, $maxConnectionTimeSeconds: Int, $useWebSocket: Boolean!) {
        createGroup(name: $name, hostId: $hostId, domain: $domain, maxConnectionTimeSeconds: $maxConnectionTimeSeconds, useWebSocket: $useWebSocket) {
            id domain fullId name hostId expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds } }`,
    join: gql`mutation JoinGroup($groupId: ID!, $domain: String!, $nodeId: ID!, $useWebSocket: Boolean) {
        joinGroup(groupId: $groupId, domain: $domain, nodeId: $nodeId, useWebSocket: $useWebSocket) {
            id name groupId domain expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds } }`,
    memberHeartbeat: gql`mutation SendMemberHeartbeat($groupId: ID!, $domain: String!, $nodeId: ID!) {
        sendMemberHeartbeat(groupId: $groupId, domain: $domain, nodeId: $nodeId) { nodeId groupId domain expiresAt heartbeatIntervalSeconds } }`,
    renew: gql`mutation RenewHeartbeat($groupId: ID!, $domain: String!, $hostId: ID!) {
        renewHeartbeat(groupId: $groupId, domain: $domain, hostId: $hostId) { groupId domain expiresAt heartbeatIntervalSeconds } }`,
    fire: gql`mutation FireEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
        fireEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) {
            groupId domain batchEvent { events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp } } }`,
    record: gql`mutation RecordEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
        recordEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) { groupId domain recordedCount nextSince } }`,
    poll: gql`query PollGroupData($groupId: ID!, $domain: String!, $since: String!) {
        pollGroupData(groupId: $groupId, domain: $domain, since: $since) {
            events { name firedByNodeId groupId domain payload timestamp cursor orderKey }
            nodeStatuses { nodeId groupId domain data { key value } timestamp } } }`,
    eventsSince: gql`query GetEventsSince($groupId: ID!, $domain: String!, $since: String!) {
        getEventsSince(groupId: $groupId, domain: $domain, since: $since) { name firedByNodeId payload timestamp cursor orderKey } }`,
    nodes: gql`query ListNodesInGroup($groupId: ID!, $domain: String!) { listNodesInGroup(groupId: $groupId, domain: $domain) { id name groupId domain expiresAt } }`,
    report: gql`mutation ReportDataByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $data: [SensorDataInput!]!) {
        reportDataByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, data: $data) {
            groupId domain nodeStatus { nodeId groupId domain data { key value } timestamp } } }`,
    listGroups: gql`query ListGroupsByDomain($domain: String!) {
        listGroupsByDomain(domain: $domain) { id domain fullId name hostId expiresAt useWebSocket } }`,
    leave: gql`mutation LeaveGroup($groupId: ID!, $nodeId: ID!, $domain: String!) {
        leaveGroup(groupId: $groupId, nodeId: $nodeId, domain: $domain) { peerId groupId domain message } }`,
    onMessage: gql`subscription OnMessageInGroup($groupId: ID!, $domain: String!) {
        onMessageInGroup(groupId: $groupId, domain: $domain) {
            groupId domain
            nodeStatus { nodeId groupId domain data { key value } timestamp }
            batchEvent { events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp }
            groupDissolve { groupId domain message } } }`
};

const newAppSyncClient = (endpoint, apiKey) => new AWSAppSyncClient({
    url: endpoint,
    region: 'local',
    auth: {type: 'API_KEY', apiKey},
    disableOffline: true
});

// probeWebSocket is the extension's testWebSocket: a bare graphql-ws connection to the
// real-time endpoint, given 3 seconds.
const probeWebSocket = endpoint => new Promise(resolve => {
    const url = `${endpoint.replace(/^http/, 'ws')}/realtime`;
    let socket;
    const timer = setTimeout(() => {
        if (socket) socket.close();
        resolve(false);
    }, 3000);
    try {
        socket = new WebSocket(url, 'graphql-ws');
    } catch (e) {
        clearTimeout(timer);
        resolve(false);
        return;
    }
    socket.onopen = () => {
        clearTimeout(timer);
        socket.close();
        resolve(true);
    };
    socket.onerror = () => {
        clearTimeout(timer);
        resolve(false);
    };
});

// Node is one editor tab.
class Node {
    constructor ({endpoint, apiKey, meshId, domain, forcePolling = false}) {
        this.endpoint = endpoint;
        this.client = newAppSyncClient(endpoint, apiKey);
        this.meshId = meshId;
        this.domain = domain;
        this.forcePolling = forcePolling;
        this.useWebSocket = !forcePolling;
        this.pollingIntervalSeconds = 2;
        this.memberHeartbeatInterval = 120;
        this.hostHeartbeatInterval = 60;
        this.lastFetchTime = '';
        this.eventQueue = [];
        this.eventSequence = 0;
        this.eventBatchInterval = 1000;
        this.received = []; // other nodes' events, in the order they were handed to playback
        this.data = {}; // this node's variables, as reportDataByNode sends them (all at once)
        this.peerData = {}; // other nodes' variables: node id -> {key: value}
        this.polls = 0;
        this.heartbeats = 0;
        this.disconnected = null; // why the node left on its own
        this.timers = [];
        this.waiters = [];
    }

    async createGroup () {
        this.useWebSocket = this.forcePolling ? false : await probeWebSocket(this.endpoint);
        this.lastFetchTime = new Date().toISOString();
        this.eventSequence = 0;
        const group = (await this.client.mutate({mutation: Q.createGroup, variables: {
            name: this.meshId, hostId: this.meshId, domain: this.domain, useWebSocket: this.useWebSocket
        }})).data.createGroup;
        this.group = group;
        this.groupId = group.id;
        this.domain = group.domain;
        this.expiresAt = group.expiresAt;
        this.useWebSocket = group.useWebSocket;
        if (group.pollingIntervalSeconds) this.pollingIntervalSeconds = group.pollingIntervalSeconds;
        this.isHost = true;
        if (group.heartbeatIntervalSeconds) this.hostHeartbeatInterval = group.heartbeatIntervalSeconds;
        this.start();
        return group;
    }

    async joinGroup (groupId, domain) {
        this.lastFetchTime = new Date().toISOString();
        this.eventSequence = 0;
        const node = (await this.client.mutate({mutation: Q.join, variables: {
            groupId, domain: domain || this.domain, nodeId: this.meshId, useWebSocket: this.useWebSocket
        }})).data.joinGroup;
        this.joined = node;
        this.groupId = groupId;
        this.domain = node.domain;
        this.expiresAt = node.expiresAt;
        this.useWebSocket = this.forcePolling ? false : node.useWebSocket;
        if (node.pollingIntervalSeconds) this.pollingIntervalSeconds = node.pollingIntervalSeconds;
        this.isHost = false;
        if (node.heartbeatIntervalSeconds) this.memberHeartbeatInterval = node.heartbeatIntervalSeconds;
        this.start();
        return node;
    }

    start () {
        if (this.useWebSocket) {
            this.subscription = this.client.subscribe({query: Q.onMessage, variables: {groupId: this.groupId, domain: this.domain}})
                .subscribe({next: ({data}) => this.onMessage(data && data.onMessageInGroup), error: () => {}});
        } else {
            this.startPolling();
        }
        this.startHeartbeat();
        this.timers.push(setInterval(() => this.processBatchEvents(), this.eventBatchInterval));
        this.startConnectionTimer();
    }

    onMessage (m) {
        if (m && m.nodeStatus) this.takeStatuses([m.nodeStatus]);
        if (!m || !m.batchEvent) return;
        const others = m.batchEvent.events.filter(e => e.firedByNodeId !== this.meshId);
        this.deliver(others);
    }

    // takeStatuses records other nodes' variables from a nodeStatus message or a poll.
    takeStatuses (statuses) {
        for (const st of statuses || []) {
            if (st.nodeId === this.meshId) continue;
            this.peerData[st.nodeId] = Object.fromEntries(st.data.map(d => [d.key, d.value]));
        }
        this.notify();
    }

    // sendData is the extension's data sender: a variable change sends the node's whole list
    // (reportDataByNode replaces it), at most one mutation per batch interval.
    sendData (key, value) {
        this.data[key] = String(value);
        if (this.dataTimer) return;
        this.dataTimer = setTimeout(async () => {
            this.dataTimer = null;
            const data = Object.entries(this.data).map(([k, v]) => ({key: k, value: v}));
            try {
                await this.client.mutate({mutation: Q.report, variables: {groupId: this.groupId, domain: this.domain, nodeId: this.meshId, data}});
                this.dataSent = (this.dataSent || 0) + 1;
            } catch (error) {
                this.sendError = error;
            }
            this.notify();
        }, this.eventBatchInterval);
    }

    deliver (events) {
        for (const e of events) this.received.push(`${e.firedByNodeId}:${e.name}`);
        this.notify();
    }

    startPolling () {
        // stopPolling() runs first in the extension and empties lastFetchTime.
        this.lastFetchTime = '';
        this.timers.push(setInterval(() => this.pollEvents(), this.pollingIntervalSeconds * 1000));
    }

    async pollEvents () {
        if (!this.groupId || this.useWebSocket) return;
        if (!this.lastFetchTime) this.lastFetchTime = new Date().toISOString();
        try {
            const result = await this.client.query({query: Q.poll, variables: {
                groupId: this.groupId, domain: this.domain, since: this.lastFetchTime
            }, fetchPolicy: 'network-only'});
            const {events, nodeStatuses} = result.data.pollGroupData;
            this.takeStatuses(nodeStatuses);
            if (events && events.length > 0) {
                this.deliver(events.filter(e => e.firedByNodeId !== this.meshId));
                const lastEvent = events[events.length - 1];
                if (lastEvent.cursor) this.lastFetchTime = lastEvent.cursor;
            }
        } catch (error) {
            this.pollError = error;
        }
        this.polls++;
        this.notify();
    }

    fireEvent (eventName, payload = '') {
        if (this.eventQueue.some(e => e.eventName === eventName && e.payload === payload)) return;
        if (this.eventQueue.length >= 100) this.eventQueue.shift();
        const firedAt = new Date();
        this.eventSequence += 1;
        this.eventQueue.push({eventName, payload, firedAt: firedAt.toISOString(), orderKey: `${firedAt.getTime()}-${String(this.eventSequence).padStart(7, '0')}`});
    }

    async processBatchEvents () {
        if (this.eventQueue.length === 0) return;
        const events = this.eventQueue.splice(0);
        const variables = {groupId: this.groupId, domain: this.domain, nodeId: this.meshId, events};
        try {
            if (this.useWebSocket) {
                await this.client.mutate({mutation: Q.fire, variables});
            } else {
                const result = await this.client.mutate({mutation: Q.record, variables});
                const rec = result.data && result.data.recordEventsByNode;
                if (rec && rec.nextSince) this.lastFetchTime = rec.nextSince;
            }
            this.sent = (this.sent || 0) + events.length;
        } catch (error) {
            this.sendError = error;
        }
        this.notify();
    }

    startHeartbeat () {
        const interval = (this.isHost ? this.hostHeartbeatInterval : this.memberHeartbeatInterval) * 1000;
        this.timers.push(setInterval(async () => {
            try {
                if (this.isHost) {
                    const r = (await this.client.mutate({mutation: Q.renew, variables: {groupId: this.groupId, domain: this.domain, hostId: this.meshId}})).data.renewHeartbeat;
                    this.expiresAt = r.expiresAt;
                    this.startConnectionTimer();
                } else {
                    const r = (await this.client.mutate({mutation: Q.memberHeartbeat, variables: {groupId: this.groupId, domain: this.domain, nodeId: this.meshId}})).data.sendMemberHeartbeat;
                    if (r.expiresAt) this.expiresAt = r.expiresAt; // the timer is not re-armed
                }
                this.heartbeats++;
            } catch (error) {
                const t = error.graphQLErrors && error.graphQLErrors[0] && error.graphQLErrors[0].errorType;
                if (['GroupNotFound', 'Unauthorized', 'NodeNotFound'].includes(t)) this.disconnect(t);
            }
            this.notify();
        }, interval));
    }

    startConnectionTimer () {
        if (this.connectionTimer) clearTimeout(this.connectionTimer);
        const timeout = new Date(this.expiresAt).getTime() - Date.now();
        if (timeout <= 0) {
            this.disconnect('Group is already expired');
            return;
        }
        this.connectionTimer = setTimeout(() => this.disconnect('Connection timeout'), timeout);
    }

    disconnect (reason) {
        this.disconnected = this.disconnected || reason;
        this.stop();
        this.notify();
    }

    stop () {
        for (const t of this.timers) clearInterval(t);
        this.timers = [];
        if (this.connectionTimer) clearTimeout(this.connectionTimer);
        if (this.dataTimer) clearTimeout(this.dataTimer);
        if (this.subscription) this.subscription.unsubscribe();
        this.subscription = null;
    }

    notify () {
        this.waiters = this.waiters.filter(w => !w());
    }

    // until resolves once predicate holds, checked after every poll, heartbeat, batch and
    // message of this node.
    until (predicate, what, timeoutMs = 20000) {
        if (predicate()) return Promise.resolve();
        return new Promise((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`${this.meshId}: timed out waiting for ${what}`)), timeoutMs);
            this.waiters.push(() => {
                if (!predicate()) return false;
                clearTimeout(timer);
                resolve();
                return true;
            });
        });
    }
}

module.exports = {Q, Node, newAppSyncClient, probeWebSocket};
