// Drives a running meshbox with the real aws-appsync client, configured as the Smalruby Mesh v2
// extension configures it (API_KEY auth, offline support off). Run by meshv2_e2e_test.go, or
// by hand: MESHBOX_URL=http://127.0.0.1:8080 MESHBOX_API_KEY=key npm test
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
// The client opens subscriptions with the global WebSocket, as in a browser.
global.WebSocket = require('ws');
const AWSAppSyncClient = require('aws-appsync').default;
const gqlTag = require('graphql-tag');

const gql = gqlTag.default || gqlTag;
const BASE = process.env.MESHBOX_URL;
const API_KEY = process.env.MESHBOX_API_KEY || 'any-key';
if (!BASE) {
    throw new Error('MESHBOX_URL must name a running meshbox, for example http://127.0.0.1:8080');
}
const ENDPOINT = `${BASE.replace(/\/$/, '')}/graphql`;

const newClient = apiKey => new AWSAppSyncClient({
    url: ENDPOINT,
    region: 'local',
    auth: {type: 'API_KEY', apiKey: apiKey},
    disableOffline: true
});

const GROUP_FIELDS = 'id domain fullId name hostId expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds';
const STATUS_FIELDS = 'nodeId groupId domain data { key value } timestamp';
const EVENT_FIELDS = 'name firedByNodeId groupId domain payload timestamp cursor orderKey';

const Q = {
    createDomain: gql`mutation CreateDomain { createDomain }`,
    createGroup: gql`mutation CreateGroup($name: String!, $hostId: ID!, $domain: String!, $maxConnectionTimeSeconds: Int, $useWebSocket: Boolean!) {
        createGroup(name: $name, hostId: $hostId, domain: $domain, maxConnectionTimeSeconds: $maxConnectionTimeSeconds, useWebSocket: $useWebSocket) { ${GROUP_FIELDS} } }`,
    listGroups: gql`query ListGroupsByDomain($domain: String!) { listGroupsByDomain(domain: $domain) { id domain fullId name hostId expiresAt } }`,
    search: gql`query SearchGroupsByNamePrefix($namePrefix: String!, $limit: Int) {
        searchGroupsByNamePrefix(namePrefix: $namePrefix, limit: $limit) { id domain fullId name hostId expiresAt } }`,
    join: gql`mutation JoinGroup($groupId: ID!, $domain: String!, $nodeId: ID!, $useWebSocket: Boolean) {
        joinGroup(groupId: $groupId, domain: $domain, nodeId: $nodeId, useWebSocket: $useWebSocket) {
            id name groupId domain expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds } }`,
    leave: gql`mutation LeaveGroup($groupId: ID!, $nodeId: ID!, $domain: String!) {
        leaveGroup(groupId: $groupId, nodeId: $nodeId, domain: $domain) { peerId groupId domain message } }`,
    dissolve: gql`mutation DissolveGroup($groupId: ID!, $domain: String!, $hostId: ID!) {
        dissolveGroup(groupId: $groupId, domain: $domain, hostId: $hostId) { groupId domain groupDissolve { groupId domain message } } }`,
    renew: gql`mutation RenewHeartbeat($groupId: ID!, $domain: String!, $hostId: ID!) {
        renewHeartbeat(groupId: $groupId, domain: $domain, hostId: $hostId) { groupId domain expiresAt heartbeatIntervalSeconds } }`,
    memberHeartbeat: gql`mutation SendMemberHeartbeat($groupId: ID!, $domain: String!, $nodeId: ID!) {
        sendMemberHeartbeat(groupId: $groupId, domain: $domain, nodeId: $nodeId) { nodeId groupId domain expiresAt heartbeatIntervalSeconds } }`,
    report: gql`mutation ReportDataByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $data: [SensorDataInput!]!) {
        reportDataByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, data: $data) { groupId domain nodeStatus { ${STATUS_FIELDS} } } }`,
    fire: gql`mutation FireEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
        fireEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) {
            groupId domain batchEvent { events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp } } }`,
    record: gql`mutation RecordEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
        recordEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) { groupId domain recordedCount nextSince } }`,
    eventsSince: gql`query GetEventsSince($groupId: ID!, $domain: String!, $since: String!) {
        getEventsSince(groupId: $groupId, domain: $domain, since: $since) { ${EVENT_FIELDS} } }`,
    poll: gql`query PollGroupData($groupId: ID!, $domain: String!, $since: String!) {
        pollGroupData(groupId: $groupId, domain: $domain, since: $since) { events { ${EVENT_FIELDS} } nodeStatuses { ${STATUS_FIELDS} } } }`,
    statuses: gql`query ListGroupStatuses($groupId: ID!, $domain: String!) { listGroupStatuses(groupId: $groupId, domain: $domain) { ${STATUS_FIELDS} } }`,
    nodes: gql`query ListNodesInGroup($groupId: ID!, $domain: String!) { listNodesInGroup(groupId: $groupId, domain: $domain) { id name groupId domain expiresAt } }`,
    nodeStatus: gql`query GetNodeStatus($nodeId: ID!) { getNodeStatus(nodeId: $nodeId) { ${STATUS_FIELDS} } }`,
    onMessage: gql`subscription OnMessageInGroup($groupId: ID!, $domain: String!) {
        onMessageInGroup(groupId: $groupId, domain: $domain) {
            groupId domain
            nodeStatus { ${STATUS_FIELDS} }
            batchEvent { events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp }
            groupDissolve { groupId domain message } } }`
};

const AWS_TIME = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));

const mutate = async (client, mutation, variables) => (await client.mutate({mutation, variables})).data;
const query = async (client, q, variables) => (await client.query({query: q, variables, fetchPolicy: 'network-only'})).data;

// rejectsWith checks that an operation fails with a GraphQL error of the given errorType,
// where the Smalruby client reads it: error.graphQLErrors[0].errorType.
const rejectsWith = async (errorType, promise) => {
    try {
        await promise;
    } catch (error) {
        assert.ok(error.graphQLErrors && error.graphQLErrors.length > 0, `no graphQLErrors in ${error}`);
        assert.equal(error.graphQLErrors[0].errorType, errorType, error.message);
        return;
    }
    assert.fail(`expected ${errorType}`);
};

// inbox collects a subscription's messages and lets a test wait for one that matches.
const inbox = () => {
    const messages = [];
    let waiters = [];
    return {
        messages,
        push (m) {
            messages.push(m);
            waiters = waiters.filter(w => !w(m));
        },
        async waitFor (predicate, what, timeoutMs = 10000) {
            const found = messages.find(predicate);
            if (found) return found;
            return new Promise((resolve, reject) => {
                const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
                waiters.push(m => {
                    if (!predicate(m)) return false;
                    clearTimeout(timer);
                    resolve(m);
                    return true;
                });
            });
        }
    };
};

const events = (names, offsetMs = 0) => names.map((name, i) => ({
    eventName: name,
    payload: `payload-${name}`,
    firedAt: new Date(Date.now() + offsetMs + (i * 100)).toISOString(),
    orderKey: `k-${name}`
}));

test('Mesh v2 through the aws-appsync client', {timeout: 120000}, async t => {
    const host = newClient(API_KEY);
    const wsMember = newClient(API_KEY);
    const pollMember = newClient(API_KEY);
    const suffix = `${process.pid}-${Date.now()}`;
    const hostId = `host-${suffix}`;
    const wsId = `ws-${suffix}`;
    const pollId = `poll-${suffix}`;
    let domain;
    let groupId;
    let subscription;
    const received = inbox();
    const vars = extra => Object.assign({groupId, domain}, extra);

    await t.test('the WebSocket probe opens without credentials', async () => {
        const url = `${ENDPOINT.replace(/^http/, 'ws')}/realtime`;
        await new Promise((resolve, reject) => {
            const socket = new WebSocket(url, 'graphql-ws');
            const timer = setTimeout(() => reject(new Error('probe timed out')), 3000);
            socket.onopen = () => {
                clearTimeout(timer);
                assert.equal(socket.protocol, 'graphql-ws');
                socket.close();
                resolve();
            };
            socket.onerror = err => reject(err);
        });
    });

    await t.test('createDomain', async () => {
        domain = (await mutate(host, Q.createDomain)).createDomain;
        assert.match(domain, /^[A-Za-z0-9._-]{1,256}$/);
    });

    await t.test('createGroup is idempotent per host and domain', async () => {
        const create = () => mutate(host, Q.createGroup, {name: hostId, hostId, domain, useWebSocket: true});
        const g = (await create()).createGroup;
        groupId = g.id;
        assert.equal(g.hostId, hostId);
        assert.equal(g.domain, domain);
        assert.equal(g.fullId, `${g.id}@${domain}`);
        assert.equal(g.useWebSocket, true);
        assert.equal(g.pollingIntervalSeconds, null);
        assert.ok(g.heartbeatIntervalSeconds > 0);
        assert.match(g.expiresAt, AWS_TIME);
        const again = (await create()).createGroup;
        assert.equal(again.id, groupId);
        assert.equal(again.expiresAt, g.expiresAt);
    });

    await t.test('listGroupsByDomain and searchGroupsByNamePrefix find the group', async () => {
        const groups = (await query(wsMember, Q.listGroups, {domain})).listGroupsByDomain;
        assert.ok(groups.some(g => g.id === groupId), JSON.stringify(groups));
        const found = (await query(wsMember, Q.search, {namePrefix: hostId.slice(0, 6), limit: 10})).searchGroupsByNamePrefix;
        assert.ok(found.some(g => g.id === groupId), JSON.stringify(found));
    });

    let pollSince;
    await t.test('joinGroup for a WebSocket member and a forced-polling member', async () => {
        const group = (await query(host, Q.listGroups, {domain})).listGroupsByDomain.find(g => g.id === groupId);
        const ws = (await mutate(wsMember, Q.join, vars({nodeId: wsId, useWebSocket: true}))).joinGroup;
        assert.equal(ws.id, wsId);
        assert.equal(ws.groupId, groupId);
        assert.equal(ws.useWebSocket, true);
        assert.ok(ws.heartbeatIntervalSeconds > 0);
        // The group's expiry: the client arms its leave timer from it.
        assert.equal(ws.expiresAt, group.expiresAt);
        pollSince = new Date().toISOString();
        // A forced poller asks false and is told the group's mode; it polls anyway, at the
        // interval it is given.
        const poll = (await mutate(pollMember, Q.join, vars({nodeId: pollId, useWebSocket: false}))).joinGroup;
        assert.equal(poll.useWebSocket, true);
        assert.ok(poll.pollingIntervalSeconds > 0);
        assert.equal(poll.expiresAt, group.expiresAt);
    });

    await t.test('the subscription receives nodeStatus', async () => {
        subscription = wsMember.subscribe({query: Q.onMessage, variables: {groupId, domain}}).subscribe({
            next: ({data}) => data && data.onMessageInGroup && received.push(data.onMessageInGroup),
            error: err => received.push({error: err})
        });
        // The subscription has no ready callback in this API: report data until it arrives.
        let n = 0;
        const seen = received.waitFor(m => m.nodeStatus && m.nodeStatus.nodeId === hostId, 'nodeStatus', 15000);
        let done = false;
        seen.then(() => {
            done = true;
        }, () => {
            done = true;
        });
        while (!done) {
            n++;
            const res = (await mutate(host, Q.report, vars({nodeId: hostId, data: [{key: 'score', value: String(n)}, {key: 'name', value: 'host'}]}))).reportDataByNode;
            assert.equal(res.nodeStatus.nodeId, hostId);
            await Promise.race([seen.catch(() => null), sleep(300)]);
        }
        const m = await seen;
        assert.equal(m.groupId, groupId);
        assert.deepEqual(m.nodeStatus.data.map(d => d.key).sort(), ['name', 'score']);
        assert.match(m.nodeStatus.timestamp, AWS_TIME);
    });

    await t.test('fireEventsByNode reaches the subscriber as one batchEvent', async () => {
        const sent = events(['go', 'stop']);
        const res = (await mutate(host, Q.fire, vars({nodeId: hostId, events: sent}))).fireEventsByNode;
        assert.equal(res.batchEvent.events.length, 2);
        const m = await received.waitFor(x => x.batchEvent && x.batchEvent.events.some(e => e.name === 'go'), 'batchEvent');
        assert.equal(m.batchEvent.firedByNodeId, hostId);
        assert.deepEqual(m.batchEvent.events.map(e => e.name), ['go', 'stop']);
        assert.deepEqual(m.batchEvent.events.map(e => e.timestamp), sent.map(e => e.firedAt));
        assert.equal(m.batchEvent.events[1].orderKey, 'k-stop');
    });

    let lastCursor;
    await t.test('a polling member and a WebSocket member see each other\'s events', async () => {
        // WebSocket member fires; the polling member reads it with getEventsSince (ISO time first).
        await mutate(wsMember, Q.fire, vars({nodeId: wsId, events: events(['from-ws'])}));
        const polled = (await query(pollMember, Q.eventsSince, vars({since: pollSince}))).getEventsSince;
        const names = polled.map(e => e.name);
        assert.deepEqual(names.filter(n => ['go', 'stop', 'from-ws'].includes(n)), ['go', 'stop', 'from-ws']);
        const fromWs = polled.find(e => e.name === 'from-ws');
        assert.equal(fromWs.firedByNodeId, wsId);
        assert.equal(fromWs.payload, 'payload-from-ws');
        // The first poll was attributed to the member that joined as a poller: the
        // positions it is handed name it.
        lastCursor = polled[polled.length - 1].cursor;
        assert.equal(lastCursor.split('~')[1], pollId);

        // The polling member records; the WebSocket member's subscription gets it, stamped
        // with the server's time.
        const sent = events(['from-poll', 'again'], -3600000);
        const rec = (await mutate(pollMember, Q.record, vars({nodeId: pollId, events: sent}))).recordEventsByNode;
        assert.equal(rec.recordedCount, 2);
        // nextSince is the position the member already holds, not past its unread events.
        assert.equal(rec.nextSince, lastCursor);
        const m = await received.waitFor(x => x.batchEvent && x.batchEvent.firedByNodeId === pollId, 'recorded batch');
        assert.deepEqual(m.batchEvent.events.map(e => e.name), ['from-poll', 'again']);
        assert.notEqual(m.batchEvent.events[0].timestamp, sent[0].firedAt);
        assert.ok(Math.abs(Date.parse(m.batchEvent.events[0].timestamp) - Date.now()) < 60000);

        // Polling from there returns what came after it, including the member's own events.
        const next = (await query(pollMember, Q.eventsSince, vars({since: rec.nextSince}))).getEventsSince;
        assert.deepEqual(next.map(e => e.name), ['from-poll', 'again']);
    });

    await t.test('pollGroupData returns events and every node status', async () => {
        await mutate(wsMember, Q.report, vars({nodeId: wsId, data: [{key: 'x', value: '10'}]}));
        const res = (await query(pollMember, Q.poll, vars({since: lastCursor}))).pollGroupData;
        assert.deepEqual(res.events.map(e => e.name), ['from-poll', 'again']);
        const ws = res.nodeStatuses.find(s => s.nodeId === wsId);
        assert.deepEqual(ws.data, [{key: 'x', value: '10', __typename: 'SensorData'}]);
        assert.ok(res.nodeStatuses.some(s => s.nodeId === hostId));
    });

    await t.test('listGroupStatuses, listNodesInGroup and getNodeStatus', async () => {
        // Only nodes that reported data have a status (the polling member never did), and
        // the host is not a member, as in the cloud.
        const statuses = (await query(host, Q.statuses, vars())).listGroupStatuses;
        assert.deepEqual(statuses.map(s => s.nodeId).sort(), [hostId, wsId].sort());
        const nodes = (await query(host, Q.nodes, vars())).listNodesInGroup;
        assert.deepEqual(nodes.map(n => n.id).sort(), [pollId, wsId].sort());
        const status = (await query(host, Q.nodeStatus, {nodeId: wsId})).getNodeStatus;
        assert.equal(status.groupId, groupId);
        assert.deepEqual(status.data.map(d => [d.key, d.value]), [['x', '10']]);
        const nobody = (await query(host, Q.nodeStatus, {nodeId: `nobody-${suffix}`})).getNodeStatus;
        assert.equal(nobody, null);
    });

    await t.test('renewHeartbeat and sendMemberHeartbeat', async () => {
        const before = (await query(host, Q.listGroups, {domain})).listGroupsByDomain.find(g => g.id === groupId);
        const hb = (await mutate(host, Q.renew, vars({hostId}))).renewHeartbeat;
        assert.equal(hb.expiresAt, before.expiresAt);
        assert.ok(hb.heartbeatIntervalSeconds > 0);
        for (const [client, nodeId] of [[wsMember, wsId], [pollMember, pollId]]) {
            const m = (await mutate(client, Q.memberHeartbeat, vars({nodeId}))).sendMemberHeartbeat;
            assert.equal(m.nodeId, nodeId);
            assert.match(m.expiresAt, AWS_TIME);
        }
    });

    await t.test('each error type', async () => {
        await rejectsWith('GroupNotFound', mutate(wsMember, Q.join, {groupId: 'no-such-group', domain, nodeId: wsId, useWebSocket: true}));
        await rejectsWith('GroupNotFound', mutate(wsMember, Q.join, {groupId, domain: 'another-domain', nodeId: wsId, useWebSocket: true}));
        await rejectsWith('Unauthorized', mutate(wsMember, Q.renew, vars({hostId: wsId})));
        await rejectsWith('Unauthorized', mutate(wsMember, Q.dissolve, vars({hostId: wsId})));
        await rejectsWith('NodeNotFound', mutate(wsMember, Q.memberHeartbeat, vars({nodeId: `ghost-${suffix}`})));
        await rejectsWith('ValidationError', query(host, Q.listGroups, {domain: 'not/valid'}));
        await rejectsWith('ValidationError', query(host, Q.search, {namePrefix: 'toolong', limit: 5}));
        await rejectsWith('ValidationError', mutate(host, Q.createGroup, {name: 'x', hostId: `h2-${suffix}`, domain, maxConnectionTimeSeconds: 0, useWebSocket: true}));
    });

    await t.test('a wrong API key is refused when the server has one', {skip: !process.env.MESHBOX_API_KEY}, async () => {
        const stranger = newClient('wrong-key');
        try {
            await mutate(stranger, Q.createDomain);
            assert.fail('a wrong key was accepted');
        } catch (error) {
            assert.equal(error.networkError && error.networkError.statusCode, 401, String(error));
        }
    });

    await t.test('leaveGroup removes the member', async () => {
        const res = (await mutate(pollMember, Q.leave, vars({nodeId: pollId}))).leaveGroup;
        assert.equal(res.peerId, pollId);
        const nodes = (await query(host, Q.nodes, vars())).listNodesInGroup;
        assert.ok(!nodes.some(n => n.id === pollId));
        await rejectsWith('NodeNotFound', mutate(pollMember, Q.memberHeartbeat, vars({nodeId: pollId})));
    });

    await t.test('dissolveGroup reaches the subscriber as groupDissolve', async () => {
        const res = (await mutate(host, Q.dissolve, vars({hostId}))).dissolveGroup;
        assert.equal(res.groupDissolve.groupId, groupId);
        const m = await received.waitFor(x => x.groupDissolve, 'groupDissolve');
        assert.equal(m.groupDissolve.groupId, groupId);
        assert.ok(m.groupDissolve.message.length > 0);
        await rejectsWith('GroupNotFound', mutate(host, Q.renew, vars({hostId})));
    });

    assert.ok(!received.messages.some(m => m.error), JSON.stringify(received.messages.filter(m => m.error)));
    if (subscription) subscription.unsubscribe();
    // Give the link a moment to send stop before the process exits.
    await sleep(200);
});
