// Classroom behaviours of the Smalruby Mesh v2 extension against meshbox, through a replica of
// the extension's own logic (replica.js) over the real aws-appsync client. Run by
// meshv2_e2e_test.go against servers started with short member TTLs and polling intervals,
// and once against a server started with --no-websocket (MESHBOX_EXPECT_NO_WEBSOCKET=1).
'use strict';

const test = require('node:test');
const assert = require('node:assert/strict');
const {Q, Node, newAppSyncClient, probeWebSocket} = require('./replica');

const BASE = process.env.MESHBOX_URL;
const API_KEY = process.env.MESHBOX_API_KEY || 'any-key';
if (!BASE) throw new Error('MESHBOX_URL must name a running meshbox');
const ENDPOINT = `${BASE.replace(/\/$/, '')}/graphql`;
const NO_WEBSOCKET = process.env.MESHBOX_EXPECT_NO_WEBSOCKET === '1';
const suffix = `${process.pid}-${Date.now()}`;
const nodes = [];
const node = (name, opts = {}) => {
    const n = new Node(Object.assign({endpoint: ENDPOINT, apiKey: API_KEY, meshId: `${name}-${suffix}`, domain: `classroom-${name}-${suffix}`}, opts));
    nodes.push(n);
    return n;
};
test.after(() => nodes.forEach(n => n.stop()));

test('with --no-websocket the host\'s WebSocket probe fails and its group polls', {skip: !NO_WEBSOCKET}, async () => {
    assert.equal(await probeWebSocket(ENDPOINT), false);
    const host = node('nows-host');
    const g = await host.createGroup();
    assert.equal(g.useWebSocket, false);
    assert.equal(host.useWebSocket, false);
    assert.ok(g.pollingIntervalSeconds > 0);
});

test('the WebSocket probe succeeds', {skip: NO_WEBSOCKET}, async () => {
    assert.equal(await probeWebSocket(ENDPOINT), true);
});

test('a member that keeps heartbeating stays past the member TTL', {skip: NO_WEBSOCKET, timeout: 60000}, async () => {
    const ttl = Number(process.env.MESHBOX_MEMBER_TTL_SECONDS);
    assert.ok(ttl > 0, 'MESHBOX_MEMBER_TTL_SECONDS is set by the Go test');
    const host = node('ttl-host', {forcePolling: true});
    const g = await host.createGroup();
    const member = node('ttl-member');
    const silent = node('ttl-silent');
    const joined = await member.joinGroup(g.id, g.domain);
    await silent.joinGroup(g.id, g.domain);
    silent.stop(); // a tab closed without leaving: no more heartbeats
    // The client arms its leave timer from joinGroup's expiresAt: it must be the group's.
    assert.equal(joined.expiresAt, g.expiresAt);
    assert.ok(member.memberHeartbeatInterval < ttl);

    const listNodes = async () => (await newAppSyncClient(ENDPOINT, API_KEY).query({
        query: Q.nodes, variables: {groupId: g.id, domain: g.domain}, fetchPolicy: 'network-only'
    })).data.listNodesInGroup.map(n => n.id);
    // Three TTLs of heartbeats later the heartbeating member is still there, and its leave
    // timer has not fired; the silent one has timed out.
    await member.until(() => member.heartbeats * member.memberHeartbeatInterval >= 3 * ttl, 'three TTLs of heartbeats', 4 * ttl * 1000 + 10000);
    assert.equal(member.disconnected, null);
    assert.deepEqual(await listNodes(), [member.meshId]);
});

test('a group created without WebSocket is joined in polling mode by a member that asked for WebSocket', {skip: NO_WEBSOCKET, timeout: 60000}, async () => {
    const host = node('poll-host', {forcePolling: true});
    const g = await host.createGroup();
    assert.equal(g.useWebSocket, false);
    const member = node('poll-member');
    assert.equal(member.useWebSocket, true); // not forced: it asks for WebSocket
    const joined = await member.joinGroup(g.id, g.domain);
    assert.equal(joined.useWebSocket, false);
    assert.equal(joined.pollingIntervalSeconds, g.pollingIntervalSeconds);
    assert.equal(member.useWebSocket, false);
    await member.until(() => member.polls >= 1, 'first poll');
    host.fireEvent('hello', 'from host');
    await member.until(() => member.received.includes(`${host.meshId}:hello`), 'the host\'s event by polling');
});

test('in a round where every node fires, every polling member gets every other node\'s events once, in order', {skip: NO_WEBSOCKET, timeout: 90000}, async () => {
    const host = node('round-host');
    const g = await host.createGroup();
    assert.equal(g.useWebSocket, true);
    const wsMember = node('round-ws');
    await wsMember.joinGroup(g.id, g.domain);
    const pollers = [];
    for (const name of ['round-p1', 'round-p2', 'round-p3']) {
        const p = node(name, {forcePolling: true});
        const joined = await p.joinGroup(g.id, g.domain);
        assert.equal(joined.useWebSocket, true); // the group's mode; the forced client polls anyway
        assert.equal(p.useWebSocket, false);
        // Students join one after another: each tab has polled before the next joins.
        await p.until(() => p.polls >= 1, 'first poll');
        pollers.push(p);
    }
    const all = [host, wsMember, ...pollers];
    const rounds = 4;
    for (let r = 0; r < rounds; r++) {
        for (const n of all) {
            n.fireEvent(`r${r}-a`);
            n.fireEvent(`r${r}-b`);
        }
        // The next round starts once every node has sent this one (batches go every second).
        await Promise.all(all.map(n => n.until(() => (n.sent || 0) >= 2 * (r + 1), `round ${r} sent`)));
    }
    for (const p of pollers) {
        assert.equal(p.sendError, undefined, String(p.sendError));
        const expected = all.filter(n => n !== p).length * 2 * rounds;
        await p.until(() => p.received.length >= expected, `${expected} events`, 30000);
        // Two more polls would show anything delivered twice.
        const after = p.polls + 2;
        await p.until(() => p.polls >= after, 'two more polls');
    }
    // The group's stream order, as meshbox stored it.
    const stream = (await newAppSyncClient(ENDPOINT, API_KEY).query({
        query: Q.eventsSince, variables: {groupId: g.id, domain: g.domain, since: ''}, fetchPolicy: 'network-only'
    })).data.getEventsSince.map(e => `${e.firedByNodeId}:${e.name}`);
    assert.equal(stream.length, all.length * 2 * rounds);
    for (const p of pollers) {
        const want = stream.filter(e => !e.startsWith(`${p.meshId}:`));
        assert.deepEqual(p.received, want, `${p.meshId} received`);
    }
});
