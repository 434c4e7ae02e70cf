// The /try page: a teacher opens it on two laptops to see meshbox work. Built only on the public
// API of /meshbox.js, so it doubles as an example of using the library.
import { MeshClient } from '/meshbox.js';

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const MAX_LOG = 300;

/** @type {MeshClient|null} */
let mesh = null;
/** Names of nodes seen in this session, so a leave item can still show who left. */
const names = new Map();

const params = new URLSearchParams(location.search);
for (const [param, id] of [['group', 'group-id'], ['name', 'node-name'], ['domain', 'domain']]) {
  const v = params.get(param);
  if (v) /** @type {HTMLInputElement} */ ($(id)).value = v;
}
const forced = params.get('transport');
if (forced && ['auto', 'ws', 'sse', 'poll'].includes(forced)) /** @type {HTMLSelectElement} */ ($('transport')).value = forced;

/** @param {string} id */
function val(id) {
  return /** @type {HTMLInputElement} */ ($(id)).value.trim();
}

/** @param {string} tag @param {Record<string, string>} [attrs] @param {...(Node|string)} children */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

/** @param {string} id @param {unknown} err */
function showError(id, err) {
  const p = $(id);
  if (!err) {
    p.hidden = true;
    p.textContent = '';
    return;
  }
  p.hidden = false;
  p.textContent = err instanceof Error ? err.message : String(err);
}

function options() {
  return {
    transport: /** @type {any} */ (/** @type {HTMLSelectElement} */ ($('transport')).value),
    leaveOnUnload: true,
  };
}

async function refreshGroups() {
  const list = $('groups');
  const domain = val('domain');
  $('domain-shown').textContent = domain || 'this domain';
  try {
    const groups = await MeshClient.groups('', domain || undefined);
    list.replaceChildren();
    if (!groups.length) list.append(el('li', { class: 'empty' }, 'No groups yet.'));
    for (const g of groups) {
      const btn = el('button', { type: 'button', class: 'secondary' }, 'Join');
      btn.addEventListener('click', () => join(g.id));
      list.append(el('li', { 'data-group': g.id }, el('strong', {}, g.name || g.id), el('code', {}, g.id), el('span', { class: 'count' }, `${g.nodes ?? '?'} nodes`), el('span', { class: 'spacer' }), btn));
    }
    showError('connect-error', null);
  } catch (e) {
    showError('connect-error', e);
  }
}

/** @param {() => Promise<MeshClient>} start */
async function enter(start) {
  for (const b of document.querySelectorAll('#connect button')) /** @type {HTMLButtonElement} */ (b).disabled = true;
  try {
    mesh = await start();
  } catch (e) {
    showError('connect-error', e);
    return;
  } finally {
    for (const b of document.querySelectorAll('#connect button')) /** @type {HTMLButtonElement} */ (b).disabled = false;
  }
  showError('connect-error', null);
  // Exposed for the browser console (and for tests that look behind the page).
  /** @type {any} */ (window).mesh = mesh;
  wire(mesh);
  $('connect').hidden = true;
  $('session').hidden = false;
  $('group-title').textContent = mesh.group.name || 'Group';
  $('group-id-shown').textContent = mesh.groupId;
  const share = new URL(location.pathname, location.href);
  share.searchParams.set('group', mesh.groupId);
  const a = /** @type {HTMLAnchorElement} */ ($('share-link'));
  a.href = share.href;
  a.textContent = share.href;
  $('dissolve').hidden = !mesh.isHost;
  history.replaceState(null, '', share.href);
  renderMembers();
}

async function create() {
  await enter(() => MeshClient.create('', { ...options(), name: val('group-name'), nodeName: val('node-name') || undefined, domain: val('domain') || undefined }));
}

/** @param {string} gid */
async function join(gid) {
  if (!gid) return;
  await enter(() => MeshClient.join('', gid, { ...options(), name: val('node-name') || undefined }));
}

/** @param {MeshClient} m */
function wire(m) {
  for (const n of m.nodes.values()) names.set(n.id, n.name);
  m.on('item', (item) => {
    if (item.kind === 'join') names.set(item.node, item.name || '');
    log(item.kind, item);
    if (item.kind !== 'event') renderMembers();
  });
  m.on('reset', ({ cursor }) => {
    log('reset', { cursor, text: 'items were purged before this client read them; re-read the group' });
    renderMembers();
  });
  m.on('status', (s) => {
    const badge = $('status');
    badge.dataset.state = s.state;
    badge.textContent = s.state === 'connected' ? `connected · ${s.transport}` : s.state === 'reconnecting' ? `reconnecting in ${(s.delayMs / 1000).toFixed(1)} s` : s.state === 'closed' ? `closed · ${s.reason}` : s.state;
    log('status', { text: badge.textContent + (s.error && s.state !== 'connected' ? ` (${s.error.message})` : '') });
    if (s.state === 'closed') {
      for (const b of document.querySelectorAll('#session form button, #leave, #dissolve')) /** @type {HTMLButtonElement} */ (b).disabled = true;
      const back = el('button', { type: 'button', id: 'back' }, 'Start again');
      back.addEventListener('click', () => location.assign(location.pathname));
      $('leave').replaceWith(back);
    }
  });
}

function renderMembers() {
  if (!mesh) return;
  const body = /** @type {HTMLTableElement} */ ($('members')).tBodies[0];
  body.replaceChildren();
  const hostId = mesh.group && mesh.group.host;
  for (const n of mesh.nodes.values()) {
    names.set(n.id, n.name);
    const name = el('td', {}, n.name || '(no name)');
    if (n.host || n.id === hostId) name.append(el('span', { class: 'badge' }, 'host'));
    const data = el('td', {});
    for (const [k, v] of Object.entries(n.data).sort(([a], [b]) => a.localeCompare(b))) data.append(el('span', { class: 'kv' }, `${k}=${v}`));
    const row = el('tr', { 'data-node': n.id }, name, el('td', { class: 'mono' }, n.id), data);
    if (n.id === mesh.nodeId) row.classList.add('me');
    body.append(row);
  }
  $('member-count').textContent = String(mesh.nodes.size);
}

/** @param {string} kind @param {any} item */
function log(kind, item) {
  const li = el('li', { 'data-kind': kind });
  if (item.cursor) li.dataset.cursor = String(item.cursor);
  const time = item.at ? new Date(item.at) : new Date();
  li.append(el('span', { class: 'time' }, time.toLocaleTimeString()));
  li.append(el('span', { class: 'cur' }, item.cursor && kind !== 'reset' ? `#${item.cursor}` : ''));
  li.append(el('span', { class: `kind k-${kind}` }, kind));
  const who = item.node ? names.get(item.node) || item.node : '';
  let text = item.text || '';
  if (kind === 'event') text = `${who}: ${item.name}${item.payload !== undefined ? ' ' + item.payload : ''}`;
  else if (kind === 'data') text = `${who}: ${Object.entries(item.data || {}).map(([k, v]) => (v === '' ? `${k} deleted` : `${k}=${v}`)).join(', ')}`;
  else if (kind === 'join') text = `${item.name || item.node} joined`;
  else if (kind === 'leave') text = `${who} left (${item.reason})`;
  else if (kind === 'dissolve') text = `group dissolved (${item.reason})`;
  li.append(text);
  const ol = $('log');
  ol.prepend(li);
  while (ol.children.length > MAX_LOG) ol.lastElementChild?.remove();
}

$('create-form').addEventListener('submit', (e) => {
  e.preventDefault();
  create();
});
$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  join(val('group-id'));
});
$('refresh-groups').addEventListener('click', refreshGroups);
$('domain').addEventListener('change', refreshGroups);
$('event-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!mesh) return;
  try {
    await mesh.publish(val('event-name'), /** @type {HTMLInputElement} */ ($('event-payload')).value);
    showError('session-error', null);
  } catch (err) {
    showError('session-error', err);
  }
});
$('data-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!mesh) return;
  try {
    await mesh.setData({ [val('data-key')]: /** @type {HTMLInputElement} */ ($('data-value')).value });
    showError('session-error', null);
  } catch (err) {
    showError('session-error', err);
  }
});
$('leave').addEventListener('click', async () => {
  if (!mesh) return;
  try {
    await mesh.leave();
  } catch (err) {
    showError('session-error', err);
  }
});
$('dissolve').addEventListener('click', async () => {
  if (!mesh || !confirm('Dissolve the group for everyone?')) return;
  try {
    await mesh.dissolve();
  } catch (err) {
    showError('session-error', err);
  }
});
$('clear-log').addEventListener('click', () => $('log').replaceChildren());

refreshGroups();
