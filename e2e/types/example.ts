// An example that uses the whole browser client API as docs/api.md "### API" documents it,
// checked with `tsc --noEmit --strict` against the /meshbox.d.ts a real meshbox serves
// (types_test.go). The @ts-expect-error lines are misuses the declarations must refuse: if one
// of them compiled, tsc would report the directive as unused and the test would fail.
import MeshClientDefault, {
  MeshClient,
  MeshError,
  MESSAGE_KEYS,
  type ClientOptions,
  type Item,
  type Link,
  type NodeView,
  type Status,
} from './meshbox.js';

const BOX = 'http://192.168.1.20:8080';

const options: ClientOptions = {
  transport: 'auto',
  connectTimeoutMs: 4000,
  maxQueue: 1000,
  maxQueueAgeMs: 60000,
  minBackoffMs: 1000,
  maxBackoffMs: 30000,
  pollWaitSeconds: 25,
  heartbeatSeconds: 20,
  leaveOnUnload: false,
};

export async function host(): Promise<void> {
  const domain: string = await MeshClient.domain(BOX);
  const groups = await MeshClient.groups(BOX, domain);
  for (const g of groups) console.log(g.id, g.name, g.nodes, g.expiresAt);
  await MeshClient.groups(['http://10.0.0.11:8080', 'http://10.0.0.12:8080']);

  const mesh = await MeshClient.create(BOX, { ...options, name: 'our class', nodeName: 'teacher', domain, maxConnectionTimeSeconds: 1500 });
  const gid: string = mesh.groupId;
  const me: string = mesh.nodeId;
  const hosting: boolean = mesh.isHost;
  console.log(gid, me, hosting, mesh.group.name, mesh.node.joinedAt, mesh.baseURL, mesh.baseURLs.length);

  mesh.on('status', (s: Status) => {
    const text = s.state === 'connected' ? `connected over ${s.transport}` : s.state;
    if (s.state === 'reconnecting') console.log(text, s.delayMs, s.attempt, s.error?.code);
    if (s.state === 'closed') console.log(s.reason);
  });
  mesh.on('event', (item: Item) => {
    const who = mesh.nodes.get(item.node)?.name ?? item.node;
    console.log(`${who}: ${item.name} ${item.payload ?? ''}`, item.cursor, item.at);
  });
  const stop: () => void = mesh.on('item', (item) => console.log(item.kind));
  stop();
  for (const kind of ['join', 'leave', 'data', 'dissolve'] as const) {
    mesh.on(kind, (item) => console.log(kind, item.reason, item.data));
  }
  const onReset = (r: { cursor: number }) => showMembers(mesh.nodes, r.cursor);
  mesh.on('reset', onReset);
  mesh.off('reset', onReset);
  mesh.on('link', (l: Link) => console.log(l.transport, l.rttMs, l.worstMs, l.measuredBy, l.quality, l.samples));

  const cursor: number = await mesh.publish('wave', '👋');
  await mesh.publish('score', { points: 3 });
  await mesh.publish('ping');
  const cursors: number[] = await mesh.publishMany([{ name: 'a', payload: 'x' }, { name: 'b' }]);
  const dataCursor: number = await mesh.setData({ mood: 'curious', score: 7, gone: '' });
  console.log(cursor, cursors, dataCursor, mesh.cursor, mesh.transport, mesh.status, mesh.link.quality);

  await mesh.flush();
  await mesh.flush(2000);
  await mesh.dissolve();

  // @ts-expect-error: an event's name is a string
  await mesh.publish(42);
  // @ts-expect-error: 'status' listeners get a Status, not an Item
  mesh.on('status', (item: Item) => item.cursor);
  // @ts-expect-error: no such listener kind
  mesh.on('message', () => {});
  // @ts-expect-error: transports are 'auto', 'ws', 'sse' or 'poll'
  await MeshClient.create(BOX, { transport: 'websocket' });
  // @ts-expect-error: mesh.status is the state's name, not the Status object
  const st: Status = mesh.status;
  void st;
}

export async function pupil(groupId: string): Promise<void> {
  const mesh = await MeshClientDefault.join(`${BOX},http://10.0.0.12:8080`, groupId, { name: 'alice', transport: 'sse' });
  try {
    await mesh.setData({ ready: true });
  } catch (e) {
    if (e instanceof MeshError) {
      const key: string = e.messageKey;
      console.log(e.code, e.message, e.status, e.retryAfterMs, e.network, e.unreachable, e.fatal, key, MESSAGE_KEYS[e.code]);
    }
  }
  addEventListener('pagehide', () => void mesh.leave());
  mesh.close();
}

function showMembers(nodes: Map<string, NodeView>, at: number): void {
  for (const n of nodes.values()) console.log(at, n.id, n.name, n.host, JSON.stringify(n.data));
}
