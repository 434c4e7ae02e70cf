// meshbox.js: the browser client for meshbox's native API (/api/v1).
//
// A dependency-free ES module. It creates or joins a group, keeps a live view of the group's
// members and their data, delivers every stream item exactly once and in cursor order, and keeps
// doing so across reconnects and transport changes by resuming from the last cursor it delivered.
//
//   import { MeshClient } from '/meshbox.js';
//   const mesh = await MeshClient.create(location.origin, { name: 'class 4b', nodeName: 'teacher' });
//   mesh.on('event', (item) => console.log(item.name, item.payload));
//   await mesh.publish('go', 'now');
//
// Transports: 'ws' (WebSocket, both ways), 'sse' (Server-Sent Events read with fetch, writes over
// HTTP), 'poll' (long-poll, writes over HTTP) or 'auto', which tries them in that order and keeps
// the first that works for the rest of the browser session.

/**
 * @typedef {'event'|'data'|'join'|'leave'|'dissolve'} ItemKind
 */

/**
 * One entry of a group's stream, as the server sends it.
 * @typedef {Object} Item
 * @property {number} cursor server-wide, strictly increasing position of the item
 * @property {ItemKind} kind
 * @property {string} node id of the node the item is about (its author, or who joined/left)
 * @property {string} [name] event name (event) or node name (join)
 * @property {string} [payload] event payload (event)
 * @property {Object<string, string>} [data] changed keys, "" means deleted (data)
 * @property {string} [reason] left|expired|removed (leave), host|expired|admin (dissolve)
 * @property {string} at server time, ISO 8601 with milliseconds
 */

/**
 * A member of the group as seen by this client: the snapshot's fields, kept current by the stream.
 * @typedef {Object} NodeView
 * @property {string} id
 * @property {string} name
 * @property {Object<string, string>} data
 * @property {boolean} [host] true for the group's host node, when the server says so
 */

/**
 * @typedef {'auto'|'ws'|'sse'|'poll'} TransportName
 */

/**
 * The state of the connection, passed to 'status' listeners.
 * @typedef {Object} Status
 * @property {'connecting'|'connected'|'reconnecting'|'closed'} state
 * @property {'ws'|'sse'|'poll'|null} transport the transport in use (or last tried)
 * @property {number} [delayMs] how long until the next attempt (reconnecting)
 * @property {number} [attempt] how many attempts failed in a row (reconnecting)
 * @property {string} [reason] why the client closed: left, dissolved, removed, expired, closed, error
 * @property {MeshError} [error] the error that closed the client or caused the reconnect
 */

/**
 * This client's own measure of its link, passed to 'link' listeners and kept as mesh.link.
 * @typedef {Object} Link
 * @property {'ws'|'sse'|'poll'|null} transport the transport in use, null while disconnected
 * @property {number|null} rttMs median of the last few round trips (null until the first one)
 * @property {number|null} worstMs the worst of them
 * @property {'ack'|'echo'|'heartbeat'|null} measuredBy what was timed: a WebSocket heartbeat
 *   message until its ack, an SSE ping event's echo request until its answer, an HTTP
 *   heartbeat (long-poll) until its answer
 * @property {'good'|'slow'|'poor'|null} quality from rttMs, as the dashboard judges it
 * @property {number} samples how many round trips the window holds
 */

/**
 * Options for create and join.
 * @typedef {Object} ClientOptions
 * @property {string} [name] create: the group's name; join: this node's name
 * @property {string} [nodeName] create: the host node's name (defaults to the server's choice)
 * @property {string} [domain] create: the domain to create the group in
 * @property {number} [maxConnectionTimeSeconds] create: requested group lifetime
 * @property {TransportName} [transport] default 'auto'
 * @property {number} [connectTimeoutMs] how long a transport may take to open, default 4000
 * @property {number} [maxQueue] outgoing operations kept while disconnected, default 1000
 * @property {number} [maxQueueAgeMs] how long an operation may wait while disconnected, default 60000
 * @property {number} [minBackoffMs] first reconnect delay cap, default 1000
 * @property {number} [maxBackoffMs] largest reconnect delay cap, default 30000
 * @property {number} [pollWaitSeconds] long-poll wait, default 25
 * @property {number} [heartbeatSeconds] overrides the interval the server asks for
 * @property {boolean} [leaveOnUnload] leave the group when the page is closed, default false
 */

const API = '/api/v1';
const ORDER = /** @type {const} */ (['ws', 'sse', 'poll']);
const MAX_EVENTS_PER_PUBLISH = 1000;
const REQUEST_TIMEOUT_MS = 15000;
const SSE_IDLE_TIMEOUT_MS = 75000;
const DEFAULT_HEARTBEAT_SECONDS = 20;
/** How many round trips the link window keeps: the last few say how the link is now. */
const LINK_WINDOW = 5;
/** What each transport's round trip times (see Link). */
const MEASURED_BY = /** @type {const} */ ({ ws: 'ack', sse: 'echo', poll: 'heartbeat' });

/**
 * The link quality of a median round trip, with the dashboard's thresholds.
 * @param {number} ms
 * @returns {'good'|'slow'|'poor'}
 */
function linkQuality(ms) {
  if (ms < 100) return 'good';
  if (ms < 300) return 'slow';
  return 'poor';
}

/** An error from the server (its code, message and HTTP status) or from the network (status 0). */
export class MeshError extends Error {
  /**
   * @param {string} code machine-readable code, e.g. group_not_found, network, queue_full
   * @param {string} message
   * @param {number} [status] HTTP status; 0 for network failures and local errors
   * @param {number} [retryAfterMs] from a 429's Retry-After header
   */
  constructor(code, message, status = 0, retryAfterMs = 0) {
    super(message || code);
    this.name = 'MeshError';
    /** @type {string} */
    this.code = code;
    /** @type {number} */
    this.status = status;
    /** @type {number} */
    this.retryAfterMs = retryAfterMs;
  }

  /** True when the request may not have reached the server: worth retrying once reconnected. */
  get network() {
    return this.code === 'network' || this.code === 'timeout';
  }

  /**
   * True when the server did not answer or cannot serve now (no answer, a timeout, 502, 503,
   * 504): with several base URLs, the client moves on to the next.
   */
  get unreachable() {
    return this.network || this.status === 502 || this.status === 503 || this.status === 504;
  }

  /** True when the node or its group is gone or the token is refused: retrying cannot help. */
  get fatal() {
    return this.status === 401 || this.status === 403 || this.status === 404 || this.status === 410;
  }

  /**
   * The message-catalog key of this error's text for people (the pages' catalogs under
   * /assets/i18n/ translate it); `message` stays the technical detail, in English.
   */
  get messageKey() {
    return MESSAGE_KEYS[this.code] || (this.status >= 500 ? 'error.unavailable' : 'client.error');
  }
}

/**
 * Catalog keys of the user-facing text for each error code: the server's codes and this
 * client's own (network, timeout, queue_full, queue_expired, closed, bad_option, bad_event).
 */
export const MESSAGE_KEYS = Object.freeze(/** @type {Record<string, string>} */ ({
  network: 'client.network',
  timeout: 'client.timeout',
  queue_full: 'client.queue_full',
  queue_expired: 'client.queue_expired',
  closed: 'client.closed',
  bad_option: 'client.bad_option',
  bad_event: 'client.bad_event',
  error: 'client.error',
  bad_request: 'error.bad_request',
  invalid: 'error.invalid',
  bad_message: 'error.bad_request',
  bad_cursor: 'error.bad_cursor',
  unauthorized: 'error.unauthorized',
  forbidden: 'error.forbidden',
  group_not_found: 'error.group_not_found',
  node_not_found: 'error.node_not_found',
  conflict: 'error.conflict',
  group_full: 'error.group_full',
  domain_full: 'error.domain_full',
  group_ended: 'error.group_ended',
  too_large: 'error.too_large',
  rate_limited: 'error.rate_limited',
  too_many_connections: 'error.rate_limited',
  client_share_exceeded: 'error.client_share_exceeded',
  internal: 'error.internal',
  unavailable: 'error.unavailable',
}));

/** @param {string} base @param {string} path @param {Object<string, any>} [query] */
function buildURL(base, path, query) {
  const root = base || (typeof location !== 'undefined' ? location.origin : '');
  const u = new URL(root.replace(/\/+$/, '') + path, typeof location !== 'undefined' ? location.href : undefined);
  if (query) {
    for (const [k, v] of Object.entries(query)) {
      if (v !== undefined && v !== null && v !== '') u.searchParams.set(k, String(v));
    }
  }
  return u;
}

/** @param {Response} res */
async function errorFrom(res) {
  let code = 'http_' + res.status;
  let message = res.statusText || code;
  try {
    const body = await res.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    // Not JSON (a proxy's error page, for instance): keep the status.
  }
  const ra = Number(res.headers.get('Retry-After'));
  return new MeshError(code, message, res.status, Number.isFinite(ra) && ra > 0 ? ra * 1000 : 0);
}

/**
 * One JSON request with a timeout. Network failures become MeshError('network'), HTTP errors a
 * MeshError carrying the server's code.
 * @param {string} base
 * @param {string} method
 * @param {string} path
 * @param {{token?: string, body?: any, query?: Object<string, any>, signal?: AbortSignal, timeoutMs?: number, keepalive?: boolean}} [opts]
 * @returns {Promise<any>}
 */
async function request(base, method, path, opts = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: 'application/json' };
  if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
  if (opts.token) headers.Authorization = 'Bearer ' + opts.token;
  const ctrl = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    ctrl.abort();
  }, opts.timeoutMs || REQUEST_TIMEOUT_MS);
  const onAbort = () => ctrl.abort();
  if (opts.signal) {
    if (opts.signal.aborted) ctrl.abort();
    else opts.signal.addEventListener('abort', onAbort, { once: true });
  }
  try {
    let res;
    try {
      res = await fetch(buildURL(base, path, opts.query), {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: ctrl.signal,
        cache: 'no-store',
        keepalive: !!opts.keepalive,
      });
    } catch (e) {
      throw new MeshError(timedOut ? 'timeout' : 'network', `${method} ${path}: ${errText(e)}`);
    }
    if (!res.ok) throw await errorFrom(res);
    if (res.status === 204) return null;
    try {
      const text = await res.text();
      return text ? JSON.parse(text) : null;
    } catch (e) {
      throw new MeshError(timedOut ? 'timeout' : 'network', `${method} ${path}: reading the answer: ${errText(e)}`);
    }
  } finally {
    clearTimeout(timer);
    if (opts.signal) opts.signal.removeEventListener('abort', onAbort);
  }
}

/**
 * The base URLs a client may use: one URL, a list, or one string of URLs separated by commas
 * (several meshbox instances sharing groups, for when no load balancer is in front of them).
 * @param {string|string[]} baseURL
 * @returns {string[]}
 */
function basesOf(baseURL) {
  const list = Array.isArray(baseURL) ? baseURL : String(baseURL || '').split(',');
  // An empty entry (a trailing comma) is not "this page's origin": only no URL at all is.
  const bases = list.map((b) => String(b || '').trim()).filter((b) => b !== '');
  return bases.length ? bases : [''];
}

/**
 * request against the first of bases that answers: one that does not answer, or cannot serve
 * now (see MeshError.unreachable), is passed over for the next — except that a write which may
 * have reached its instance (a timeout, a 504) is not sent to another, where it would be stored
 * a second time. Resolves with the answer and the index of the base that gave it.
 * @param {string[]} bases
 * @param {string} method
 * @param {string} path
 * @param {Parameters<typeof request>[3]} [opts]
 * @returns {Promise<{res: any, index: number}>}
 */
async function requestAny(bases, method, path, opts) {
  let last;
  for (let i = 0; i < bases.length; i++) {
    try {
      return { res: await request(bases[i], method, path, opts), index: i };
    } catch (e) {
      last = toMeshError(e);
      const mayHaveArrived = method !== 'GET' && (last.code === 'timeout' || last.status === 504);
      if (!last.unreachable || mayHaveArrived || i === bases.length - 1) throw last;
    }
  }
  throw last;
}

/** @param {number} ms @param {AbortSignal} [signal] */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      if (signal) signal.removeEventListener('abort', done);
      resolve(undefined);
    }
    if (signal) signal.addEventListener('abort', done, { once: true });
  });
}

/** Reports a listener's exception without breaking the delivery loop. @param {unknown} e */
function report(e) {
  setTimeout(() => {
    throw e;
  });
}

/** @param {any} n @returns {NodeView} */
function nodeView(n) {
  const data = {};
  if (n && n.data && typeof n.data === 'object') Object.assign(data, n.data);
  return { ...n, id: String(n.id), name: n.name ?? '', data };
}

/** @param {string} base */
function storageKey(base) {
  try {
    return 'meshbox.transport:' + buildURL(base, '/').origin;
  } catch {
    return 'meshbox.transport';
  }
}

/**
 * A node's live membership in one group.
 *
 * Listen with on(type, fn): 'event', 'data', 'join', 'leave', 'dissolve' get the Item; 'item' gets
 * every item; 'reset' gets {cursor} after the client re-read the group because items it had not
 * seen were purged; 'status' gets a Status; 'link' gets a Link when the transport or the link's
 * quality changes.
 */
export class MeshClient {
  /**
   * Creates a group with this client as its host node.
   * @param {string|string[]} baseURL the meshbox server, e.g. 'http://10.0.0.2:8080' ('' = this
   *   page's origin); or several instances sharing groups (a list, or URLs separated by commas):
   *   the client uses the first that answers and moves to the next when it stops answering
   * @param {ClientOptions} [opts]
   * @returns {Promise<MeshClient>}
   */
  static async create(baseURL, opts = {}) {
    const body = /** @type {Record<string, any>} */ ({ name: opts.name || 'group' });
    if (opts.domain) body.domain = opts.domain;
    if (opts.nodeName) body.nodeName = opts.nodeName;
    if (opts.maxConnectionTimeSeconds) body.maxConnectionTimeSeconds = opts.maxConnectionTimeSeconds;
    const bases = basesOf(baseURL);
    const { res, index } = await requestAny(bases, 'POST', `${API}/groups`, { body });
    const mesh = new MeshClient(bases, res, opts, index);
    await mesh._start();
    return mesh;
  }

  /**
   * Joins an existing group as a new node.
   * @param {string|string[]} baseURL one server or several (see create)
   * @param {string} groupId
   * @param {ClientOptions} [opts]
   * @returns {Promise<MeshClient>}
   */
  static async join(baseURL, groupId, opts = {}) {
    const body = opts.name ? { name: opts.name } : {};
    const bases = basesOf(baseURL);
    const { res, index } = await requestAny(bases, 'POST', `${API}/groups/${encodeURIComponent(groupId)}/nodes`, { body });
    const mesh = new MeshClient(bases, res, opts, index);
    await mesh._start();
    return mesh;
  }

  /**
   * Lists the live groups of a domain (the server's choice for this caller when omitted).
   * @param {string|string[]} baseURL one server or several (see create)
   * @param {string} [domain]
   * @returns {Promise<any[]>}
   */
  static async groups(baseURL, domain) {
    const { res } = await requestAny(basesOf(baseURL), 'GET', `${API}/groups`, { query: { domain } });
    if (Array.isArray(res)) return res;
    return (res && res.groups) || [];
  }

  /**
   * The domain the server assigns this caller.
   * @param {string|string[]} baseURL one server or several (see create)
   * @returns {Promise<string>}
   */
  static async domain(baseURL) {
    const { res } = await requestAny(basesOf(baseURL), 'GET', `${API}/domain`);
    return typeof res === 'string' ? res : (res && res.domain) || '';
  }

  /**
   * Use create or join instead.
   * @param {string|string[]} baseURL
   * @param {{group: any, node: any, token: string, cursor: number, heartbeatIntervalSeconds?: number}} joined the create/join answer
   * @param {ClientOptions} opts
   * @param {number} [index] which of the base URLs answered
   */
  constructor(baseURL, joined, opts, index = 0) {
    /** The servers this client may talk to (several instances sharing groups). @type {string[]} */
    this.baseURLs = basesOf(baseURL);
    this._baseIndex = Math.min(Math.max(index, 0), this.baseURLs.length - 1);
    /** The server this client talks to now. @type {string} */
    this.baseURL = this.baseURLs[this._baseIndex];
    /** The group as the server last described it. @type {any} */
    this.group = joined.group;
    /** This client's node as the server last described it. @type {any} */
    this.node = joined.node;
    /** Cursor of the last item delivered; the stream resumes after it. @type {number} */
    this.cursor = Number(joined.cursor) || 0;
    /** Members of the group and their data, kept current by the stream. @type {Map<string, NodeView>} */
    this.nodes = new Map();
    /** The transport in use, or null while disconnected. @type {'ws'|'sse'|'poll'|null} */
    this.transport = null;
    /** @type {Status['state']} */
    this.status = 'connecting';
    /** This client's measure of its own link. @type {Link} */
    this.link = { transport: null, rttMs: null, worstMs: null, measuredBy: null, quality: null, samples: 0 };
    /** @type {number[]} the link window's round trips, oldest first */
    this._rtts = [];

    this._token = joined.token;
    this._opts = {
      transport: opts.transport || 'auto',
      connectTimeoutMs: opts.connectTimeoutMs ?? 4000,
      maxQueue: opts.maxQueue ?? 1000,
      maxQueueAgeMs: opts.maxQueueAgeMs ?? 60000,
      minBackoffMs: opts.minBackoffMs ?? 1000,
      maxBackoffMs: opts.maxBackoffMs ?? 30000,
      pollWaitSeconds: opts.pollWaitSeconds ?? 25,
      heartbeatSeconds: opts.heartbeatSeconds ?? 0,
      leaveOnUnload: !!opts.leaveOnUnload,
    };
    if (!['auto', ...ORDER].includes(this._opts.transport)) {
      throw new MeshError('bad_option', `unknown transport ${this._opts.transport}`);
    }
    this._heartbeatSeconds = this._opts.heartbeatSeconds || pickHeartbeat(joined) || DEFAULT_HEARTBEAT_SECONDS;
    /** Items at or below this cursor are already part of the nodes view. */
    this._viewCursor = this.cursor;
    /** @type {Map<string, Set<Function>>} */
    this._listeners = new Map();
    /** @type {{type: 'publish'|'data', events?: any[], data?: any, at: number, inFlight: boolean, resolve: Function, reject: Function}[]} */
    this._queue = [];
    this._sending = false;
    this._closed = false;
    /** @type {Promise<void>|null} the client's end for a fatal answer, once one came (_fatal) */
    this._ending = null;
    this._epoch = 0;
    /** @type {Function[]} */
    this._onlineWaiters = [];
    /** @type {WebSocket|null} */
    this._ws = null;
    this._wsSeq = 0;
    /** @type {Map<number, {resolve: Function, reject: Function, timer: any}>} */
    this._wsPending = new Map();
    /** @type {(() => void)|null} */
    this._stopCurrent = null;
    this._stopCtrl = new AbortController();
    this._heartbeatTimer = /** @type {any} */ (null);
    this._unload = () => this._leaveBeacon();
  }

  /** The id of the group. */
  get groupId() {
    return String(this.group && this.group.id);
  }

  /** This client's node id. */
  get nodeId() {
    return String(this.node && this.node.id);
  }

  /** True when this node hosts the group. */
  get isHost() {
    const g = this.group || {};
    const host = g.hostNodeId ?? g.hostNode ?? g.host;
    return host !== undefined ? String(host) === this.nodeId : !!(this.node && this.node.host);
  }

  /**
   * Adds a listener; returns a function that removes it.
   * @param {'event'|'data'|'join'|'leave'|'dissolve'|'item'|'reset'|'status'|'link'} type
   * @param {(arg: any) => void} fn
   * @returns {() => void}
   */
  on(type, fn) {
    let set = this._listeners.get(type);
    if (!set) this._listeners.set(type, (set = new Set()));
    set.add(fn);
    return () => this.off(type, fn);
  }

  /**
   * Removes a listener added with on.
   * @param {string} type
   * @param {(arg: any) => void} fn
   */
  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  /**
   * Publishes one event. Resolves with the item's cursor once the server committed it. While
   * disconnected the event waits in the outgoing queue and is sent, in order, on reconnect.
   * @param {string} name
   * @param {string|any} [payload] strings are sent as-is, anything else as JSON
   * @returns {Promise<number>}
   */
  async publish(name, payload) {
    const [cursor] = await this.publishMany([{ name, payload }]);
    return cursor;
  }

  /**
   * Publishes several events in one request, in order. Resolves with their cursors.
   * @param {{name: string, payload?: any}[]} events
   * @returns {Promise<number[]>}
   */
  publishMany(events) {
    if (!Array.isArray(events) || events.some((e) => !e || typeof e.name !== 'string' || e.name === '')) {
      return Promise.reject(new MeshError('bad_event', 'every event needs a name'));
    }
    const list = events.map((e) => {
      /** @type {{name: string, payload?: string}} */
      const out = { name: e.name };
      if (e.payload !== undefined && e.payload !== null) {
        out.payload = typeof e.payload === 'string' ? e.payload : JSON.stringify(e.payload);
      }
      return out;
    });
    return this._enqueue({ type: 'publish', events: list });
  }

  /**
   * Sets this node's data keys (an empty string deletes a key). Resolves with the item's cursor.
   * @param {Object<string, any>} data values are converted to strings
   * @returns {Promise<number>}
   */
  async setData(data) {
    /** @type {Record<string, string>} */
    const out = {};
    for (const [k, v] of Object.entries(data || {})) out[k] = v === null || v === undefined ? '' : String(v);
    const [cursor] = await this._enqueue({ type: 'data', data: out });
    return cursor;
  }

  /**
   * Resolves once every queued operation was sent (or failed), or after timeoutMs.
   * @param {number} [timeoutMs]
   */
  async flush(timeoutMs = 10000) {
    const until = Date.now() + timeoutMs;
    while (this._queue.length && !this._closed && Date.now() < until) await sleep(20);
  }

  /** Leaves the group: sends what is queued, removes this node on the server, and stops. */
  async leave() {
    if (this._closed) return;
    await this.flush(5000);
    try {
      await request(this.baseURL, 'DELETE', `${API}/groups/${enc(this.groupId)}/nodes/${enc(this.nodeId)}`, {
        token: this._token,
      });
    } finally {
      this._finish('left');
    }
  }

  /** Dissolves the group (host only) and stops. */
  async dissolve() {
    if (this._closed) return;
    await this.flush(5000);
    try {
      await request(this.baseURL, 'DELETE', `${API}/groups/${enc(this.groupId)}`, { token: this._token });
    } finally {
      this._finish('dissolved');
    }
  }

  /** Stops this client without leaving; the server expires the node when its heartbeat lapses. */
  close() {
    this._finish('closed');
  }

  // ---- lifecycle ----

  async _start() {
    await this._snapshot();
    if (this._opts.leaveOnUnload && typeof addEventListener === 'function') addEventListener('pagehide', this._unload);
    this._scheduleHeartbeat();
    this._connectLoop().catch((e) => this._finish('error', toMeshError(e)));
  }

  /** Reads the group, its nodes and the current cursor, and makes them the nodes view. */
  async _snapshot() {
    const snap = await request(this.baseURL, 'GET', `${API}/groups/${enc(this.groupId)}`, { token: this._token });
    if (snap.group) this.group = snap.group;
    const list = Array.isArray(snap.nodes) ? snap.nodes : (snap.group && snap.group.nodes) || [];
    this.nodes.clear();
    for (const n of list) this.nodes.set(String(n.id), nodeView(n));
    const c = Number(snap.cursor);
    if (Number.isFinite(c)) this._viewCursor = Math.max(this._viewCursor, c);
    return this._viewCursor;
  }

  /**
   * @param {string} reason
   * @param {MeshError} [error]
   */
  _finish(reason, error) {
    if (this._closed) return;
    this._closed = true;
    this._stopCtrl.abort();
    if (this._stopCurrent) this._stopCurrent();
    clearTimeout(this._heartbeatTimer);
    if (typeof removeEventListener === 'function') removeEventListener('pagehide', this._unload);
    const err = error || new MeshError(reason, `meshbox client ${reason}`);
    for (const op of this._queue.splice(0)) op.reject(err);
    for (const w of this._onlineWaiters.splice(0)) w();
    this.transport = null;
    this._linkTransport(null);
    this._setStatus({ state: 'closed', transport: null, reason, error });
  }

  /**
   * Ends the client for an answer that leaves nothing to retry. When the group has ended, the
   * items this client has not been handed yet (the dissolve among them) are read first, page by
   * page, so its listeners get them: an answer to a request (a heartbeat's, a publish's) can
   * come before the stream delivered the items committed ahead of it. Every caller (a send loop,
   * a heartbeat, a reconnect) shares the one ending.
   * @param {MeshError} err
   * @returns {Promise<void>}
   */
  _fatal(err) {
    if (this._closed) return Promise.resolve();
    if (this._ending) return this._ending;
    this._ending = (async () => {
      const reason = reasonFor(err);
      if (err.status === 410 && reason === 'dissolved') {
        try {
          for (;;) {
            const res = await request(this.baseURL, 'GET', `${API}/groups/${enc(this.groupId)}/events`, {
              token: this._token,
              query: { since: this.cursor },
              timeoutMs: 5000,
            });
            const items = (res && res.items) || [];
            if (this._closed || !res || res.truncated || !items.length) break;
            if (this._deliver(items, res.next)) break;
          }
        } catch {
          // The end is known either way; only its items are not.
        }
      }
      this._finish(reason, err);
    })();
    return this._ending;
  }

  _leaveBeacon() {
    if (this._closed) return;
    request(this.baseURL, 'DELETE', `${API}/groups/${enc(this.groupId)}/nodes/${enc(this.nodeId)}`, {
      token: this._token,
      keepalive: true,
    }).catch(() => {});
    this._finish('left');
  }

  /**
   * @param {string} type
   * @param {any} arg
   */
  _emit(type, arg) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        report(e);
      }
    }
  }

  /** @param {Status} s */
  _setStatus(s) {
    this.status = s.state;
    this._emit('status', s);
  }

  // ---- link quality ----

  /**
   * Starts a fresh link window for transport t (null: disconnected): another transport is
   * another link. Emits 'link' when the transport changed.
   * @param {'ws'|'sse'|'poll'|null} t
   */
  _linkTransport(t) {
    if (this.link.transport === t) return;
    this._rtts = [];
    this.link = { transport: t, rttMs: null, worstMs: null, measuredBy: t ? MEASURED_BY[t] : null, quality: null, samples: 0 };
    this._emit('link', this.link);
  }

  /**
   * Records one round trip measured on the connection of epoch (a sample from an older
   * connection is dropped). Emits 'link' when the quality changed.
   * @param {number} epoch
   * @param {number} ms
   */
  _observeRTT(epoch, ms) {
    if (epoch !== this._epoch || !this.transport || !(ms >= 0)) return;
    this._rtts.push(ms);
    if (this._rtts.length > LINK_WINDOW) this._rtts.shift();
    const sorted = [...this._rtts].sort((a, b) => a - b);
    const rttMs = Math.round(sorted[(sorted.length - 1) >> 1]);
    const quality = linkQuality(rttMs);
    const changed = quality !== this.link.quality;
    this.link = {
      transport: this.transport,
      rttMs,
      worstMs: Math.round(sorted[sorted.length - 1]),
      measuredBy: MEASURED_BY[this.transport],
      quality,
      samples: sorted.length,
    };
    if (changed) this._emit('link', this.link);
  }

  /**
   * Times fn, one round trip of the current connection, into the link window.
   * @template T
   * @param {() => Promise<T>} fn
   * @returns {Promise<T>}
   */
  async _timed(fn) {
    const epoch = this._epoch;
    const start = performance.now();
    const res = await fn();
    this._observeRTT(epoch, performance.now() - start);
    return res;
  }

  /**
   * Answers an SSE ping event by echoing its time (POST …/heartbeat?echo=T), which gives the
   * server this stream's round trip, and times the echo for this client's own link. It does
   * not hold up the stream.
   * @param {string} data the event's data, {"t":"…"}
   */
  _echo(data) {
    let t;
    try {
      t = JSON.parse(data).t;
    } catch {
      return;
    }
    if (typeof t !== 'string' || !/^[0-9]+$/.test(t)) return;
    this._timed(() =>
      request(this.baseURL, 'POST', `${API}/groups/${enc(this.groupId)}/heartbeat`, { token: this._token, query: { echo: t } }),
    ).then(
      (res) => {
        if (res && res.group) this.group = res.group;
        if (res && res.node) this.node = res.node;
      },
      (e) => {
        const err = toMeshError(e);
        if (err.fatal) this._fatal(err);
      },
    );
  }

  // ---- reading ----

  /**
   * Delivers items in cursor order, each once, and applies them to the nodes view.
   * @param {Item[]} items
   * @param {number} [next] the server's cursor to continue from
   * @returns {'stopped'|undefined} 'stopped' when an item ended this client
   */
  _deliver(items, next) {
    for (const it of items || []) {
      if (this._closed) return 'stopped';
      if (!it || typeof it.cursor !== 'number' || it.cursor <= this.cursor) continue;
      this.cursor = it.cursor;
      if (it.cursor > this._viewCursor) {
        this._apply(it);
        this._viewCursor = it.cursor;
      }
      this._emit(it.kind, it);
      this._emit('item', it);
      if (it.kind === 'dissolve') {
        this._finish('dissolved');
        return 'stopped';
      }
      if (it.kind === 'leave' && String(it.node) === this.nodeId) {
        this._finish(it.reason === 'left' ? 'left' : it.reason || 'removed');
        return 'stopped';
      }
    }
    if (typeof next === 'number' && next > this.cursor) this.cursor = next;
    return undefined;
  }

  /** @param {Item} it */
  _apply(it) {
    const id = String(it.node);
    switch (it.kind) {
      case 'join':
        if (!this.nodes.has(id)) this.nodes.set(id, { id, name: it.name ?? '', data: {} });
        break;
      case 'leave':
        this.nodes.delete(id);
        break;
      case 'data': {
        let n = this.nodes.get(id);
        if (!n) this.nodes.set(id, (n = { id, name: '', data: {} }));
        for (const [k, v] of Object.entries(it.data || {})) {
          if (v === '') delete n.data[k];
          else n.data[k] = v;
        }
        break;
      }
    }
  }

  /** The transport the next attempt uses. @returns {'ws'|'sse'|'poll'} */
  _pick() {
    const forced = this._opts.transport;
    if (forced !== 'auto') return forced;
    if (!this._auto) {
      let saved = null;
      try {
        saved = sessionStorage.getItem(storageKey(this.baseURL));
      } catch {
        // Storage can be disabled; then each client starts from WebSocket.
      }
      this._auto = /** @type {'ws'|'sse'|'poll'} */ (ORDER.includes(/** @type {any} */ (saved)) ? saved : 'ws');
    }
    return this._auto;
  }

  /** Moves auto to the next transport; false when there is none left. @param {'ws'|'sse'|'poll'} t */
  _fallback(t) {
    const i = ORDER.indexOf(t);
    if (this._opts.transport !== 'auto' || i < 0 || i === ORDER.length - 1) return false;
    this._auto = ORDER[i + 1];
    return true;
  }

  /** @param {'ws'|'sse'|'poll'} t */
  _remember(t) {
    if (this._opts.transport !== 'auto') return;
    this._auto = t;
    try {
      sessionStorage.setItem(storageKey(this.baseURL), t);
    } catch {
      // Not remembered across clients then; this client still keeps it.
    }
  }

  /** Connects, reads until the connection ends, and reconnects with backoff, until closed. */
  async _connectLoop() {
    let failures = 0;
    let moved = 0; // instances moved on to since the last connection
    while (!this._closed) {
      const t = this._pick();
      let opened = false;
      /** @type {MeshError|undefined} */
      let err;
      /** @type {string|undefined} */
      let outcome;
      try {
        outcome = await this._run(t, () => {
          opened = true;
          failures = 0;
          moved = 0;
          this._remember(t);
          this.transport = t;
          this._epoch++;
          this._linkTransport(t);
          // A heartbeat at once gives the new link its first round trip (SSE gets it from
          // the stream's first ping event).
          if (t !== 'sse') this._scheduleHeartbeat(0);
          this._setStatus({ state: 'connected', transport: t });
          for (const w of this._onlineWaiters.splice(0)) w();
          this._kick();
        });
      } catch (e) {
        err = toMeshError(e);
      }
      this.transport = null;
      this._stopCurrent = null;
      if (this._closed) return;
      this._linkTransport(null);
      if (outcome === 'reset') {
        await this._reset();
        continue;
      }
      // The connection failed or dropped. A heartbeat over plain HTTP tells a gone node or group
      // (stop), an unreachable server (back off) and a blocked transport (fall back) apart.
      let reachable = false;
      try {
        await this._heartbeatHTTP();
        reachable = true;
      } catch (e) {
        const perr = toMeshError(e);
        if (this._closed) return;
        if (perr.fatal) return this._fatal(perr);
        // Another instance shares the group: go on there at once, by cursor, unless every one
        // was tried since the last connection (then back off as with one server).
        if (perr.unreachable && this.baseURLs.length > 1 && moved < this.baseURLs.length - 1) {
          moved++;
          this._moveOn(perr);
          continue;
        }
      }
      // Busy (429) or failing (5xx) is not a blocked transport: retry the same one later.
      const busy = !!err && (err.status === 429 || err.status >= 500);
      if (!opened && reachable && !busy && this._fallback(t)) {
        this._setStatus({ state: 'connecting', transport: this._auto || null, error: err });
        continue;
      }
      await this._backoff(failures++, err);
      // After a pause every instance is worth trying again: the one that failed first may be
      // back while the one in use is still down.
      moved = 0;
    }
  }

  /**
   * Makes the next base URL the one in use (its instance shares the group: same token, same
   * cursors), after the current one stopped answering.
   * @param {MeshError} error
   */
  _moveOn(error) {
    this._baseIndex = (this._baseIndex + 1) % this.baseURLs.length;
    this.baseURL = this.baseURLs[this._baseIndex];
    this._setStatus({ state: 'connecting', transport: null, error });
  }

  /**
   * Waits a random time between 0 and min(max, min·2^attempt) (full jitter), so that a classroom of
   * clients does not reconnect in lockstep after a server restart.
   * @param {number} attempt
   * @param {MeshError} [error]
   */
  async _backoff(attempt, error) {
    const cap = Math.min(this._opts.maxBackoffMs, this._opts.minBackoffMs * 2 ** Math.min(attempt, 20));
    const delayMs = Math.max(Math.round(Math.random() * cap), error ? error.retryAfterMs : 0);
    this._setStatus({ state: 'reconnecting', transport: null, delayMs, attempt, error });
    await sleep(delayMs, this._stopCtrl.signal);
  }

  /** Takes a fresh snapshot after a truncation; false when it could not (the loop retries). */
  async _reset() {
    for (let attempt = 0; !this._closed; attempt++) {
      try {
        const c = await this._snapshot();
        this.cursor = Math.max(this.cursor, c);
        this._emit('reset', { cursor: this.cursor });
        return true;
      } catch (e) {
        const err = toMeshError(e);
        if (err.fatal) {
          this._fatal(err);
          return false;
        }
        await this._backoff(attempt, err);
      }
    }
    return false;
  }

  /**
   * Runs one connection of transport t until it ends. Resolves with 'reset' when the server says
   * items were purged, 'stopped' when this client stopped; rejects when the connection failed.
   * @param {'ws'|'sse'|'poll'} t
   * @param {() => void} onOpen
   * @returns {Promise<string>}
   */
  _run(t, onOpen) {
    if (t === 'ws') return this._runWS(onOpen);
    if (t === 'sse') return this._runSSE(onOpen);
    return this._runPoll(onOpen);
  }

  /** @param {() => void} onOpen @returns {Promise<string>} */
  _runWS(onOpen) {
    return new Promise((resolve, reject) => {
      const u = buildURL(this.baseURL, `${API}/groups/${enc(this.groupId)}/ws`, { since: this.cursor, token: this._token });
      u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
      let ws;
      try {
        ws = new WebSocket(u.href);
      } catch (e) {
        reject(new MeshError('network', `websocket: ${e}`));
        return;
      }
      let done = false;
      /** @param {MeshError|null} err @param {string} [outcome] */
      const finish = (err, outcome) => {
        if (done) return;
        done = true;
        clearTimeout(openTimer);
        if (this._ws === ws) this._ws = null;
        const lost = new MeshError('network', 'websocket closed before the server answered');
        for (const [, p] of this._wsPending) {
          clearTimeout(p.timer);
          p.reject(lost);
        }
        this._wsPending.clear();
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) {
          try {
            ws.close(1000);
          } catch {
            // Already closing.
          }
        }
        if (err) reject(err);
        else resolve(outcome || 'stopped');
      };
      const openTimer = setTimeout(() => finish(new MeshError('timeout', 'websocket did not open in time')), this._opts.connectTimeoutMs);
      this._stopCurrent = () => finish(null, 'stopped');
      ws.onopen = () => {
        clearTimeout(openTimer);
        this._ws = ws;
        onOpen();
      };
      ws.onmessage = (ev) => {
        let m;
        try {
          m = JSON.parse(typeof ev.data === 'string' ? ev.data : '');
        } catch {
          return;
        }
        switch (m && m.type) {
          case 'items':
            if (this._deliver(m.items, m.next)) finish(null, 'stopped');
            break;
          case 'reset':
            finish(null, 'reset');
            break;
          case 'ack': {
            const p = this._wsPending.get(m.id);
            if (p) {
              this._wsPending.delete(m.id);
              clearTimeout(p.timer);
              p.resolve(m);
            }
            break;
          }
          case 'error': {
            const e = m.error || {};
            // retryAfter (seconds) comes with a refusal for a spent budget, as Retry-After does over HTTP.
            const err = new MeshError(e.code || 'error', e.message || 'error', statusForCode(e.code), (Number(e.retryAfter) || 0) * 1000);
            const p = this._wsPending.get(m.id);
            if (p) {
              this._wsPending.delete(m.id);
              clearTimeout(p.timer);
              p.reject(err);
            } else if (m.id === undefined || m.id === null) {
              finish(err);
            }
            break;
          }
        }
      };
      ws.onclose = (ev) => {
        if (ev.code === GONE_CLOSE_CODE) {
          // This node left its group (removed, expired, left from another tab): its token
          // opens nothing any more, so reconnecting would only be refused.
          this._finish(goneReason(ev.reason));
          finish(null, 'stopped');
          return;
        }
        // 1012 (service restart) and every other close: reconnect from the cursor.
        finish(new MeshError('network', `websocket closed (${ev.code}${ev.reason ? ' ' + ev.reason : ''})`));
      };
    });
  }

  /**
   * Sends one request over the open WebSocket and waits for its ack.
   * @param {Record<string, any>} msg
   * @returns {Promise<any>}
   */
  _wsCall(msg) {
    const ws = this._ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return Promise.reject(new MeshError('network', 'websocket not open'));
    const id = ++this._wsSeq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._wsPending.delete(id);
        reject(new MeshError('timeout', 'no answer over websocket'));
        // A peer that does not answer is as good as gone: reconnect.
        try {
          ws.close(4000, 'ack timeout');
        } catch {
          // Already closing.
        }
      }, REQUEST_TIMEOUT_MS);
      this._wsPending.set(id, { resolve, reject, timer });
      try {
        ws.send(JSON.stringify({ ...msg, id }));
      } catch (e) {
        clearTimeout(timer);
        this._wsPending.delete(id);
        reject(new MeshError('network', `websocket send: ${e}`));
      }
    });
  }

  /** @param {() => void} onOpen @returns {Promise<string>} */
  async _runSSE(onOpen) {
    const ctrl = new AbortController();
    let stopped = false;
    let timedOut = false;
    this._stopCurrent = () => {
      stopped = true;
      ctrl.abort();
    };
    // The server flushes a comment at once, so silence means a buffering proxy or a dead server.
    let watchdog = setTimeout(() => {
      timedOut = true;
      ctrl.abort();
    }, this._opts.connectTimeoutMs);
    const rearm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        timedOut = true;
        ctrl.abort();
      }, SSE_IDLE_TIMEOUT_MS);
    };
    try {
      let res;
      try {
        const u = buildURL(this.baseURL, `${API}/groups/${enc(this.groupId)}/stream`, { since: this.cursor });
        res = await fetch(u, {
          headers: { Accept: 'text/event-stream', Authorization: 'Bearer ' + this._token },
          signal: ctrl.signal,
          cache: 'no-store',
        });
      } catch (e) {
        if (stopped) return 'stopped';
        throw new MeshError(timedOut ? 'timeout' : 'network', `event stream: ${e}`);
      }
      if (!res.ok) throw await errorFrom(res);
      if (!(res.headers.get('Content-Type') || '').includes('text/event-stream') || !res.body) {
        throw new MeshError('network', 'event stream: not text/event-stream');
      }
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let event = '';
      let data = '';
      let opened = false;
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (stopped) return 'stopped';
          throw new MeshError(timedOut ? 'timeout' : 'network', `event stream: ${e}`);
        }
        if (chunk.done) {
          if (stopped) return 'stopped';
          throw new MeshError('network', 'event stream ended');
        }
        rearm();
        if (!opened) {
          opened = true;
          onOpen();
        }
        buf += decoder.decode(chunk.value, { stream: true });
        /** @type {Item[]} */
        const batch = [];
        let start = 0;
        for (;;) {
          const nl = buf.indexOf('\n', start);
          if (nl < 0) break;
          let line = buf.slice(start, nl);
          start = nl + 1;
          if (line.endsWith('\r')) line = line.slice(0, -1);
          if (line === '') {
            if (event === 'ping') {
              this._echo(data);
              event = '';
              data = '';
              continue;
            }
            if (event === 'reset') {
              if (this._deliver(batch)) return 'stopped';
              return 'reset';
            }
            if (event === 'gone') {
              // This node left its group: the stream ends here, and so does this client.
              if (this._deliver(batch)) return 'stopped';
              let reason = '';
              try {
                reason = JSON.parse(data).reason;
              } catch {
                // The reason is only for the page; the end is known either way.
              }
              this._finish(goneReason(reason));
              return 'stopped';
            }
            if (data) {
              try {
                batch.push(JSON.parse(data));
              } catch {
                // A malformed event is skipped; the cursor check keeps order intact.
              }
            }
            event = '';
            data = '';
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') event = value;
          else if (field === 'data') data = data ? data + '\n' + value : value;
        }
        buf = buf.slice(start);
        if (batch.length && this._deliver(batch)) return 'stopped';
      }
    } finally {
      clearTimeout(watchdog);
      ctrl.abort();
    }
  }

  /** @param {() => void} onOpen @returns {Promise<string>} */
  async _runPoll(onOpen) {
    const ctrl = new AbortController();
    let stopped = false;
    this._stopCurrent = () => {
      stopped = true;
      ctrl.abort();
    };
    let opened = false;
    try {
      for (;;) {
        // The first poll does not wait, so the client knows at once that the server answers.
        const wait = opened ? this._opts.pollWaitSeconds : 0;
        let res;
        try {
          res = await request(this.baseURL, 'GET', `${API}/groups/${enc(this.groupId)}/events`, {
            token: this._token,
            query: { since: this.cursor, wait },
            signal: ctrl.signal,
            timeoutMs: (wait + 15) * 1000,
          });
        } catch (e) {
          if (stopped) return 'stopped';
          throw e;
        }
        if (!opened) {
          opened = true;
          onOpen();
        }
        if (res && res.truncated) return 'reset';
        if (this._deliver((res && res.items) || [], res && res.next)) return 'stopped';
        if (res && res.gone) {
          // The page ended with this node's leave: its next poll would be refused.
          this._finish(goneReason(res.gone));
          return 'stopped';
        }
      }
    } finally {
      ctrl.abort();
    }
  }

  // ---- writing ----

  /**
   * @param {{type: 'publish'|'data', events?: any[], data?: any}} op
   * @returns {Promise<number[]>}
   */
  _enqueue(op) {
    if (this._closed) return Promise.reject(new MeshError('closed', 'meshbox client is closed'));
    this._expire();
    if (this._queue.length >= this._opts.maxQueue) {
      return Promise.reject(new MeshError('queue_full', `outgoing queue is full (${this._opts.maxQueue})`));
    }
    return new Promise((resolve, reject) => {
      this._queue.push({ ...op, at: Date.now(), inFlight: false, resolve, reject });
      this._kick();
    });
  }

  /** Rejects queued operations that waited longer than maxQueueAgeMs. */
  _expire() {
    const limit = Date.now() - this._opts.maxQueueAgeMs;
    for (let i = 0; i < this._queue.length; ) {
      const op = this._queue[i];
      if (!op.inFlight && op.at < limit) {
        this._queue.splice(i, 1);
        op.reject(new MeshError('queue_expired', 'not sent: disconnected for too long'));
      } else i++;
    }
  }

  _kick() {
    if (this._sending || this._closed) return;
    this._sending = true;
    this._sendLoop()
      .catch(report)
      .finally(() => {
        this._sending = false;
        if (this._queue.length && !this._closed && !this._ending && this.transport) this._kick();
      });
  }

  /**
   * Waits until a connection newer than epoch is up, or timeoutMs passed.
   * @param {number} epoch
   * @param {number} timeoutMs
   */
  _waitOnline(epoch, timeoutMs) {
    if (this._closed || (this.transport && this._epoch > epoch)) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(done, timeoutMs);
      const self = this;
      function done() {
        clearTimeout(t);
        const i = self._onlineWaiters.indexOf(done);
        if (i >= 0) self._onlineWaiters.splice(i, 1);
        resolve(undefined);
      }
      this._onlineWaiters.push(done);
    });
  }

  /** Sends queued operations one batch at a time, in order; keeps them queued while offline. */
  async _sendLoop() {
    let solo = 0; // after a 4xx on a merged batch, send the next ops one by one to find the bad one
    let failures = 0;
    while (this._queue.length && !this._closed) {
      this._expire();
      if (!this._queue.length) break;
      if (!this.transport) {
        await this._waitOnline(this._epoch - 1, 1000);
        continue;
      }
      const epoch = this._epoch;
      const batch = this._takeBatch(solo > 0);
      for (const op of batch) op.inFlight = true;
      try {
        const cursors = await this._send(batch);
        this._queue.splice(0, batch.length);
        let i = 0;
        for (const op of batch) {
          const n = op.type === 'publish' ? /** @type {any[]} */ (op.events).length : 1;
          op.resolve(cursors.slice(i, i + n));
          i += n;
        }
        if (solo > 0) solo--;
        failures = 0;
      } catch (e) {
        for (const op of batch) op.inFlight = false;
        const err = toMeshError(e);
        if (this._closed) return;
        if (err.network) {
          // Unsent or unanswered: keep it at the head and retry on the next connection.
          await this._waitOnline(epoch, Math.min(this._opts.maxBackoffMs, this._opts.minBackoffMs * 2 ** failures++));
        } else if (err.status === 429 || err.status >= 500) {
          await sleep(err.retryAfterMs || Math.random() * Math.min(this._opts.maxBackoffMs, this._opts.minBackoffMs * 2 ** failures++), this._stopCtrl.signal);
        } else if (err.fatal) {
          this._fatal(err);
          return;
        } else if (batch.length > 1) {
          solo = batch.length;
        } else {
          this._queue.splice(0, 1);
          batch[0].reject(err);
        }
      }
    }
  }

  /** The head of the queue, merging consecutive publishes up to the server's per-request limit. */
  _takeBatch(single = false) {
    const head = this._queue[0];
    if (head.type !== 'publish' || single) return [head];
    const batch = [head];
    let n = /** @type {any[]} */ (head.events).length;
    for (let i = 1; i < this._queue.length; i++) {
      const op = this._queue[i];
      if (op.type !== 'publish' || n + /** @type {any[]} */ (op.events).length > MAX_EVENTS_PER_PUBLISH) break;
      batch.push(op);
      n += /** @type {any[]} */ (op.events).length;
    }
    return batch;
  }

  /**
   * Sends one batch over the WebSocket when it is open, otherwise over HTTP.
   * @param {{type: 'publish'|'data', events?: any[], data?: any}[]} batch
   * @returns {Promise<number[]>}
   */
  async _send(batch) {
    const gid = enc(this.groupId);
    if (batch[0].type === 'data') {
      const data = batch[0].data;
      if (this._ws) {
        const ack = await this._wsCall({ type: 'data', data });
        return [ackCursor(ack)];
      }
      const res = await request(this.baseURL, 'PUT', `${API}/groups/${gid}/data`, { token: this._token, body: { data } });
      return [ackCursor(res)];
    }
    const events = batch.flatMap((op) => /** @type {any[]} */ (op.events));
    if (this._ws) {
      const ack = await this._wsCall({ type: 'publish', events });
      return ack.cursors || [];
    }
    const res = await request(this.baseURL, 'POST', `${API}/groups/${gid}/events`, { token: this._token, body: { events } });
    return (res && res.cursors) || [];
  }

  // ---- heartbeats ----

  /** @param {number} [delayMs] when the next heartbeat goes out; the interval by default */
  _scheduleHeartbeat(delayMs = this._heartbeatSeconds * 1000) {
    clearTimeout(this._heartbeatTimer);
    if (this._closed) return;
    this._heartbeatTimer = setTimeout(async () => {
      if (this._closed) return;
      // Only while connected: when offline the reconnect loop sends a heartbeat before each retry.
      if (this.transport) {
        try {
          // Each heartbeat is a round trip of the link, except on SSE, whose echoes time the
          // stream itself.
          if (this._ws) await this._timed(() => this._wsCall({ type: 'heartbeat' }));
          else if (this.transport === 'poll') await this._timed(() => this._heartbeatHTTP());
          else await this._heartbeatHTTP();
        } catch (e) {
          const err = toMeshError(e);
          if (err.fatal) this._fatal(err);
        }
      }
      this._scheduleHeartbeat();
    }, delayMs);
  }

  async _heartbeatHTTP() {
    const res = await request(this.baseURL, 'POST', `${API}/groups/${enc(this.groupId)}/heartbeat`, { token: this._token });
    if (res && res.group) this.group = res.group;
    if (res && res.node) this.node = res.node;
    return res;
  }
}

/** @param {unknown} e */
function errText(e) {
  return e instanceof Error ? e.message : String(e);
}

/** @param {string} s */
function enc(s) {
  return encodeURIComponent(s);
}

/** @param {unknown} e @returns {MeshError} */
function toMeshError(e) {
  if (e instanceof MeshError) return e;
  return new MeshError('error', e instanceof Error ? e.message : String(e));
}

/**
 * The close code of a WebSocket whose node left its group (the server's live.GoneCode); its
 * close text is the leave's reason.
 */
const GONE_CLOSE_CODE = 4003;

/**
 * Why the client closed, from the reason of its node's leave: 'removed' (by the host or the
 * teacher), 'expired', or 'left'.
 * @param {string} [reason]
 */
function goneReason(reason) {
  return reason === 'left' || reason === 'expired' ? reason : 'removed';
}

/** Why the client closed, from the error that closed it. @param {MeshError} err */
function reasonFor(err) {
  if (err.status === 404 || err.status === 410) return err.code.startsWith('node') ? 'removed' : 'dissolved';
  // The token matches no node any more: it was removed or expired while this client was away.
  if (err.status === 401) return 'removed';
  return 'error';
}

/** The HTTP status the server answers each error code with, for errors sent over the WebSocket. */
const CODE_STATUS = /** @type {Record<string, number>} */ ({
  invalid: 400,
  bad_message: 400,
  bad_cursor: 400,
  unauthorized: 401,
  forbidden: 403,
  group_not_found: 404,
  node_not_found: 404,
  conflict: 409,
  group_full: 409,
  domain_full: 409,
  group_ended: 410,
  too_large: 413,
  rate_limited: 429,
  too_many_connections: 429,
  client_share_exceeded: 429,
  internal: 500,
  unavailable: 503,
  timeout: 503,
});

/** @param {string} [code] */
function statusForCode(code) {
  return (code && CODE_STATUS[code]) || 400;
}

/** @param {any} ack */
function ackCursor(ack) {
  if (ack && typeof ack.cursor === 'number') return ack.cursor;
  if (ack && Array.isArray(ack.cursors) && ack.cursors.length) return ack.cursors[0];
  return 0;
}

/** The heartbeat interval the server asks for, in seconds, or 0. @param {any} joined */
function pickHeartbeat(joined) {
  const cands = [
    joined.heartbeatIntervalSeconds,
    joined.heartbeatSeconds,
    joined.group && joined.group.heartbeatIntervalSeconds,
    joined.node && joined.node.heartbeatIntervalSeconds,
  ];
  for (const c of cands) if (typeof c === 'number' && c > 0) return c;
  return 0;
}

export default MeshClient;
