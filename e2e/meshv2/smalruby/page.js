// The stand-in for the Smalruby editor's bundle in the meshbox tests: the project's replica of
// the Mesh v2 extension (../replica.js) with the npm aws-appsync client, driven block by block
// through window.mesh. Its Mesh address and key are written as the extension's mesh-client.js
// writes them (the build's environment first, the cloud's literals as fallbacks), so once built
// like the editor (a define of the environment, minified) lib.min.js holds one string literal
// of each, as the published build does. The literals below are made up: no cloud is behind them.
'use strict';
const {Q, Node} = require('../replica.js');

const GRAPHQL_ENDPOINT = process.env.MESH_GRAPHQL_ENDPOINT || 'https://meshboxfixture00000000000000.appsync-api.ap-northeast-1.amazonaws.com/graphql';
const API_KEY = process.env.MESH_API_KEY || 'da2-meshboxfixturekey000000000';

const params = new URLSearchParams(location.search);
const node = new Node({
    endpoint: GRAPHQL_ENDPOINT,
    apiKey: API_KEY,
    meshId: params.get('id') || Math.random().toString(36).slice(2, 10),
    domain: params.get('mesh') || '', // the editor's ?mesh=DOMAIN
    forcePolling: params.get('mesh_polling') === '1'
});

const show = () => {
    document.getElementById('status').textContent = JSON.stringify({
        endpoint: GRAPHQL_ENDPOINT, domain: node.domain, group: node.groupId || null,
        useWebSocket: node.useWebSocket, received: node.received, peers: node.peerData,
        error: String(node.sendError || node.pollError || '')
    }, null, 2);
};
node.waiters.push(() => {
    show();
    return false; // stays registered: every notify redraws
});

// ensureDomain is the extension's: without ?mesh= the server assigns one.
const ensureDomain = async () => {
    if (!node.domain) node.domain = (await node.client.mutate({mutation: Q.createDomain})).data.createDomain;
};

window.mesh = {
    endpoint: GRAPHQL_ENDPOINT,
    node,
    // "create a group" (the host).
    async createGroup () {
        await ensureDomain();
        const group = await node.createGroup();
        show();
        return group.id;
    },
    // "join a group": the first group listed in this page's domain, as the join menu offers.
    async joinGroup () {
        await ensureDomain();
        const groups = (await node.client.query({query: Q.listGroups, variables: {domain: node.domain}, fetchPolicy: 'network-only'})).data.listGroupsByDomain;
        if (groups.length === 0) throw new Error(`no group in domain ${node.domain}`);
        await node.joinGroup(groups[0].id, node.domain);
        show();
        return groups[0].id;
    },
    // "broadcast NAME".
    broadcast (name) {
        node.fireEvent(name);
    },
    // "set VARIABLE to VALUE" for a global variable, which the extension shares.
    setVariable (key, value) {
        node.sendData(key, value);
    },
    // What "when I receive" and "VARIABLE of NODE" would see.
    received: () => node.received.slice(),
    variable: key => Object.values(node.peerData).map(d => d[key]).find(v => v !== undefined)
};
show();
