// Drives a running meshbox with the real Amplify 6 client (npm aws-amplify), configured as an
// app configures it for an AppSync API with an API key: the GraphQL endpoint,
// defaultAuthMode 'apiKey' and the key. Run by meshv2_e2e_test.go (TestAmplify6Client), or by
// hand against a meshbox behind HTTPS:
//   MESHBOX_URL=https://box.example:8443 MESHBOX_API_KEY=key node --test amplify.test.js
//
// Amplify 6 derives the real-time address itself and offers no setting for it: for any
// endpoint that is not an AppSync domain it appends /realtime and replaces http:// and https://
// alike with wss:// (getRealtimeEndpointUrl in @aws-amplify/api-graphql's
// Providers/AWSWebSocketProvider/appsyncUrl.js). So it reaches meshbox's /graphql/realtime
// only over TLS: MESHBOX_URL must be https://. The key travels in the WebSocket subprotocol
// `header-<base64url of {host, x-amz-date, x-api-key}>`, with no ?header= query.
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
// Node 20 has no global WebSocket; Amplify opens its socket with the global one, as in a
// browser.
if (typeof global.WebSocket === 'undefined') {
    global.WebSocket = require('ws');
}
const {Amplify} = require('aws-amplify');
const {generateClient} = require('aws-amplify/api');

const BASE = process.env.MESHBOX_URL;
const API_KEY = process.env.MESHBOX_API_KEY;
if (!BASE || !API_KEY) {
    throw new Error('MESHBOX_URL (https://…) and MESHBOX_API_KEY must name a running meshbox and its --api-key');
}
const ENDPOINT = `${BASE.replace(/\/$/, '')}/graphql`;

Amplify.configure({
    API: {
        GraphQL: {
            endpoint: ENDPOINT,
            region: 'local',
            defaultAuthMode: 'apiKey',
            apiKey: API_KEY
        }
    }
});
const client = generateClient();

const GROUP_FIELDS = 'id domain fullId name hostId expiresAt heartbeatIntervalSeconds useWebSocket pollingIntervalSeconds';
const BATCH_FIELDS = 'events { name firedByNodeId groupId domain payload timestamp orderKey } firedByNodeId groupId domain timestamp';
const Q = {
    createDomain: 'mutation CreateDomain { createDomain }',
    createGroup: `mutation CreateGroup($name: String!, $hostId: ID!, $domain: String!, $useWebSocket: Boolean!) {
        createGroup(name: $name, hostId: $hostId, domain: $domain, useWebSocket: $useWebSocket) { ${GROUP_FIELDS} } }`,
    join: `mutation JoinGroup($groupId: ID!, $domain: String!, $nodeId: ID!) {
        joinGroup(groupId: $groupId, domain: $domain, nodeId: $nodeId) { id groupId domain } }`,
    fire: `mutation FireEventsByNode($groupId: ID!, $domain: String!, $nodeId: ID!, $events: [EventInput!]!) {
        fireEventsByNode(groupId: $groupId, domain: $domain, nodeId: $nodeId, events: $events) {
            groupId domain batchEvent { ${BATCH_FIELDS} } } }`,
    onMessage: `subscription OnMessageInGroup($groupId: ID!, $domain: String!) {
        onMessageInGroup(groupId: $groupId, domain: $domain) {
            groupId domain
            nodeStatus { nodeId groupId domain data { key value } timestamp }
            batchEvent { ${BATCH_FIELDS} }
            groupDissolve { groupId domain message } } }`
};

const gql = async (query, variables, extra) => (await client.graphql(Object.assign({query, variables}, extra))).data;

// errorNames is what an Amplify failure says about its cause: a refused query is a GraphQL
// result whose errors wrap the HTTP error (named from the x-amzn-ErrorType header, as from
// AppSync); a refused subscription one whose errors carry the connection_error's type.
const errorNames = error => ((error && error.errors) || []).map(e => [
    e.errorType, e.message, e.originalError && e.originalError.name
].filter(Boolean).join(' ')).join(', ');

test('Amplify 6 through meshbox with an API key', {timeout: 90000}, async t => {
    const suffix = `${process.pid}-${Date.now()}`;
    const hostId = `host-${suffix}`;
    let domain;
    let groupId;

    await t.test('the real-time address Amplify uses is https→wss …/graphql/realtime', () => {
        assert.match(ENDPOINT, /^https:\/\//, 'Amplify 6 opens wss:// for any endpoint: meshbox must be behind TLS');
    });

    await t.test('a wrong key is refused on queries and on the real-time connection', async () => {
        await assert.rejects(gql(Q.createDomain, {}, {apiKey: 'wrong-key'}), err => {
            assert.match(errorNames(err), /UnauthorizedException/, JSON.stringify(err));
            return true;
        });
        // The key travels in the header- subprotocol; meshbox answers connection_init with
        // connection_error UnauthorizedException, which Amplify does not retry.
        const refused = await new Promise(resolve => {
            let timer;
            const sub = client.graphql({query: Q.onMessage, variables: {groupId: 'g', domain: 'd'}, apiKey: 'wrong-key'}).subscribe({
                next: data => {
                    clearTimeout(timer);
                    resolve({data});
                },
                error: err => {
                    clearTimeout(timer);
                    resolve({err});
                }
            });
            timer = setTimeout(() => {
                sub.unsubscribe();
                resolve({timeout: true});
            }, 30000);
        });
        assert.ok(refused.err, `the subscription with a wrong key was not refused: ${JSON.stringify(refused)}`);
        assert.match(errorNames(refused.err), /UnauthorizedException/, JSON.stringify(refused.err));
    });

    await t.test('createDomain, createGroup and joinGroup with the key', async () => {
        domain = (await gql(Q.createDomain)).createDomain;
        const g = (await gql(Q.createGroup, {name: hostId, hostId, domain, useWebSocket: true})).createGroup;
        groupId = g.id;
        assert.equal(g.hostId, hostId);
        const m = (await gql(Q.join, {groupId, domain, nodeId: `member-${suffix}`})).joinGroup;
        assert.equal(m.groupId, groupId);
    });

    await t.test('onMessageInGroup receives an event fired through a mutation', async () => {
        const received = [];
        let wake = () => {};
        const sub = client.graphql({query: Q.onMessage, variables: {groupId, domain}}).subscribe({
            next: ({data}) => {
                received.push(data.onMessageInGroup);
                wake();
            },
            error: err => received.push({error: err})
        });
        try {
            // Amplify gives no callback when the subscription is started (start_ack): fire
            // until one arrives, then check it is whole.
            const deadline = Date.now() + 30000;
            let n = 0;
            while (!received.some(m => m && m.batchEvent) && Date.now() < deadline) {
                n++;
                await gql(Q.fire, {groupId, domain, nodeId: hostId, events: [{
                    eventName: `go-${n}`, payload: `payload-${n}`, firedAt: new Date().toISOString()
                }]});
                await new Promise(resolve => {
                    wake = resolve;
                    setTimeout(resolve, 500);
                });
            }
            const m = received.find(x => x && x.batchEvent);
            assert.ok(m, `no batchEvent arrived through the subscription: ${JSON.stringify(received)}`);
            assert.equal(m.groupId, groupId);
            assert.equal(m.domain, domain);
            assert.equal(m.batchEvent.firedByNodeId, hostId);
            const ev = m.batchEvent.events[0];
            assert.match(ev.name, /^go-\d+$/);
            assert.equal(ev.payload, `payload-${ev.name.slice(3)}`);
        } finally {
            sub.unsubscribe();
        }
    });
});
