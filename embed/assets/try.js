// The /try page: a teacher opens it on two laptops to see meshbox work. Built only on the public
// API of /meshbox.js, so it doubles as an example of using the library. Every word shown comes
// from the message catalogs (/assets/i18n/), through i18n.js.
import { MeshClient, MeshError } from '/meshbox.js';
import { setup } from '/assets/i18n.js';

const i18n = await setup();
/** @param {string} key @param {Record<string, unknown>} [params] */
const t = (key, params) => i18n.t(key, params);

// Plain words for the transports (meshbox.js names), with the technical name as a tooltip.
const TRANSPORTS = {
  ws: ['transport.ws', 'transport.ws.tip'],
  sse: ['transport.sse', 'transport.sse.tip'],
  poll: ['transport.longpoll', 'transport.longpoll.tip'],
};
// Why a member left or a group ended (stream items).
const REASONS = {
  left: 'reason.left', expired: 'reason.expired', removed: 'reason.removed',
  host: 'reason.host', admin: 'reason.admin',
};
// Why this page's client stopped (status reason).
const CLOSED = {
  left: 'try.closed.left', dissolved: 'try.closed.dissolved', removed: 'try.closed.removed',
  closed: 'try.closed.closed', error: 'try.closed.error',
};
// The kind column of the activity log.
const KINDS = {
  event: 'try.kind.event', data: 'try.kind.data', join: 'try.kind.join', leave: 'try.kind.leave',
  dissolve: 'try.kind.dissolve', status: 'try.kind.status', reset: 'try.kind.reset',
};
const STATES = {
  connecting: 'try.status.connecting', connected: 'try.status.connected',
  reconnecting: 'try.status.reconnecting', closed: 'try.status.closed',
};

const $ = (id) => /** @type {HTMLElement} */ (document.getElementById(id));
const MAX_LOG = 300;

/** @type {MeshClient|null} */
let mesh = null;
/** Names of nodes seen in this session, so a leave item can still show who left. */
const names = new Map();
/** The activity log's entries, newest first, kept so a language change can redraw them. */
const entries = [];
/** The last status the client reported. */
let lastStatus = null;
/** The last group list, for redrawing. */
let lastGroups = null;

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

/**
 * Shows an error in plain words; the technical detail (code and the server's message) is in
 * the tooltip.
 * @param {string} id @param {unknown} err
 */
function showError(id, err) {
  const p = $(id);
  if (!err) {
    p.hidden = true;
    p.textContent = '';
    p.title = '';
    return;
  }
  p.hidden = false;
  if (err instanceof MeshError) {
    p.textContent = t(err.messageKey);
    p.title = `${err.code}: ${err.message}`;
    p.dataset.code = err.code;
  } else {
    p.textContent = err instanceof Error ? err.message : String(err);
    p.title = '';
  }
}

/** @param {string|null|undefined} tr */
function transportLabel(tr) {
  const k = tr && TRANSPORTS[/** @type {'ws'|'sse'|'poll'} */ (tr)];
  return k ? [t(k[0]), t(k[1])] : [tr || '', tr || ''];
}

/** @param {string} r */
const reason = (r) => (REASONS[/** @type {keyof REASONS} */ (r)] ? t(REASONS[/** @type {keyof REASONS} */ (r)]) : r);

function options() {
  return {
    transport: /** @type {any} */ (/** @type {HTMLSelectElement} */ ($('transport')).value),
    leaveOnUnload: true,
  };
}

async function refreshGroups() {
  try {
    lastGroups = await MeshClient.groups('', val('domain') || undefined);
    renderGroups();
    showError('connect-error', null);
  } catch (e) {
    showError('connect-error', e);
  }
}

function renderGroups() {
  const domain = val('domain');
  $('groups-title').textContent = domain ? t('try.groups.in', { domain }) : t('try.groups.here');
  const list = $('groups');
  list.replaceChildren();
  const groups = lastGroups || [];
  if (!groups.length) list.append(el('li', { class: 'empty' }, t('try.groups.none')));
  for (const g of groups) {
    const btn = el('button', { type: 'button', class: 'secondary' }, t('try.join.button'));
    btn.addEventListener('click', () => join(g.id));
    const count = typeof g.nodes === 'number' ? i18n.tp('try.groups.members', g.nodes) : '';
    list.append(el('li', { 'data-group': g.id }, el('strong', {}, g.name || g.id), el('code', {}, g.id), el('span', { class: 'count' }, count), el('span', { class: 'spacer' }), btn));
  }
}

/**
 * The address to share: the box's join address (the --public-url setting, or what the box
 * works out from its network), so a link copied on the box itself works on students' devices.
 * @param {string} gid
 */
async function shareURL(gid) {
  let base = location.origin + '/';
  try {
    const r = await fetch('/api/v1/dashboard/join');
    if (r.ok) {
      const j = await r.json();
      if (j.urls && j.urls.length) base = j.urls[0];
    }
  } catch (_) { /* keep this page's own address */ }
  const share = new URL('try', base);
  share.searchParams.set('group', gid);
  return share;
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
  $('group-title').textContent = mesh.group.name || t('try.group');
  $('group-id-shown').textContent = mesh.groupId;
  const here = new URL(location.pathname, location.href);
  here.searchParams.set('group', mesh.groupId);
  history.replaceState(null, '', here.href);
  const share = await shareURL(mesh.groupId);
  const a = /** @type {HTMLAnchorElement} */ ($('share-link'));
  a.href = share.href;
  a.textContent = share.href;
  $('dissolve').hidden = !mesh.isHost;
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
    log('reset', { cursor });
    renderMembers();
  });
  m.on('status', (s) => {
    lastStatus = s;
    renderStatus();
    log('status', { status: s });
    if (s.state === 'closed') {
      for (const b of document.querySelectorAll('#session form button, #leave, #dissolve')) /** @type {HTMLButtonElement} */ (b).disabled = true;
      const back = el('button', { type: 'button', id: 'back', 'data-i18n': 'try.again' }, t('try.again'));
      back.addEventListener('click', () => location.assign(location.pathname));
      $('leave').replaceWith(back);
    }
  });
}

/** The words of a client status. @param {any} s */
function statusText(s) {
  const [label] = transportLabel(s.transport);
  const params = { transport: label, seconds: i18n.num((s.delayMs || 0) / 1000, 1), reason: CLOSED[/** @type {keyof CLOSED} */ (s.reason)] ? t(CLOSED[/** @type {keyof CLOSED} */ (s.reason)]) : s.reason };
  const key = STATES[/** @type {keyof STATES} */ (s.state)];
  return key ? t(key, params) : s.state;
}

function renderStatus() {
  const s = lastStatus;
  if (!s) return;
  const badge = $('status');
  badge.dataset.state = s.state;
  badge.dataset.transport = s.transport || '';
  badge.textContent = statusText(s);
  badge.title = s.state === 'connected' ? transportLabel(s.transport)[1] : '';
}

function renderMembers() {
  if (!mesh) return;
  const body = /** @type {HTMLTableElement} */ ($('members')).tBodies[0];
  body.replaceChildren();
  const hostId = mesh.group && mesh.group.host;
  for (const n of mesh.nodes.values()) {
    names.set(n.id, n.name);
    const name = el('td', {}, n.name || t('try.members.noname'));
    if (n.host || n.id === hostId) name.append(el('span', { class: 'badge' }, t('try.members.host')));
    if (n.id === mesh.nodeId) name.append(el('span', { class: 'you' }, t('try.members.you')));
    const data = el('td', {});
    for (const [k, v] of Object.entries(n.data).sort(([a], [b]) => a.localeCompare(b))) data.append(el('span', { class: 'kv' }, `${k}=${v}`));
    const row = el('tr', { 'data-node': n.id }, name, el('td', { class: 'mono' }, n.id), data);
    if (n.id === mesh.nodeId) row.classList.add('me');
    body.append(row);
  }
  $('member-count').textContent = String(mesh.nodes.size);
}

/** Adds an entry to the activity log. @param {string} kind @param {any} item */
function log(kind, item) {
  const entry = { kind, item, who: item.node ? names.get(item.node) || item.node : '', at: item.at ? new Date(item.at) : new Date() };
  entries.unshift(entry);
  if (entries.length > MAX_LOG) entries.pop();
  const ol = $('log');
  ol.prepend(logLine(entry));
  while (ol.children.length > MAX_LOG) ol.lastElementChild?.remove();
}

/** One log line in the current language. @param {{kind: string, item: any, who: string, at: Date}} e */
function logLine({ kind, item, who, at }) {
  const li = el('li', { 'data-kind': kind });
  if (item.cursor) li.dataset.cursor = String(item.cursor);
  li.append(el('span', { class: 'time' }, i18n.time(at)));
  li.append(el('span', { class: 'cur' }, item.cursor && kind !== 'reset' ? `#${item.cursor}` : ''));
  li.append(el('span', { class: `kind k-${kind}` }, KINDS[/** @type {keyof KINDS} */ (kind)] ? t(KINDS[/** @type {keyof KINDS} */ (kind)]) : kind));
  let text = '';
  if (kind === 'event') text = t('try.log.event', { who, name: item.name, payload: item.payload ?? '' }).trim();
  else if (kind === 'data') text = t('try.log.data', { who, changes: Object.entries(item.data || {}).map(([k, v]) => (v === '' ? t('try.log.deleted', { key: k }) : `${k}=${v}`)).join(', ') });
  else if (kind === 'join') text = t('try.log.join', { who: item.name || item.node });
  else if (kind === 'leave') text = t('try.log.leave', { who, reason: reason(item.reason) });
  else if (kind === 'dissolve') text = t('try.log.dissolve', { reason: reason(item.reason) });
  else if (kind === 'reset') text = t('try.log.reset');
  else if (kind === 'status') {
    const s = item.status;
    text = statusText(s);
    if (s.error && s.state !== 'connected') text += ` (${s.error instanceof MeshError ? t(s.error.messageKey) : s.error.message})`;
  }
  li.append(text);
  return li;
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
// A new language: redraw what this script wrote (the rest carries data-i18n attributes).
i18n.onChange(() => {
  renderGroups();
  renderStatus();
  renderMembers();
  if (mesh) $('group-title').textContent = mesh.group.name || t('try.group');
  $('log').replaceChildren(...entries.map(logLine));
  for (const id of ['connect-error', 'session-error']) $(id).hidden = true;
});
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
  if (!mesh || !confirm(t('try.dissolve.confirm'))) return;
  try {
    await mesh.dissolve();
  } catch (err) {
    showError('session-error', err);
  }
});
$('clear-log').addEventListener('click', () => $('log').replaceChildren());

renderGroups();
refreshGroups();
