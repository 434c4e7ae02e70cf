// TypeScript declarations for meshbox.js, the browser client of meshbox's native API (/api/v1).
// Served beside it as /meshbox.d.ts. Save both next to each other (or point a `paths` entry at
// this file) and `import { MeshClient } from './meshbox.js'` is typed; docs/api.md's "API"
// section describes every name below.

/** The kinds of stream item. */
export type ItemKind = 'event' | 'data' | 'join' | 'leave' | 'dissolve';

/** One entry of a group's stream, as the server sends it. */
export interface Item {
  /** Server-wide, strictly increasing position of the item. */
  cursor: number;
  kind: ItemKind;
  /** Id of the node the item is about: its author, or who joined or left. */
  node: string;
  /** `event`: the event's name; `join`: the node's name. */
  name?: string;
  /** `event`: the payload, when one was sent (non-string payloads arrive as their JSON). */
  payload?: string;
  /** `event` from Mesh v2: the client's order key. */
  orderKey?: string;
  /** `event` from Mesh v2: the client's own time, ISO 8601. */
  firedAt?: string;
  /** `data`: the changed keys; `''` means deleted. */
  data?: Record<string, string>;
  /** `leave`: left, expired or removed; `dissolve`: host, expired or admin. */
  reason?: 'left' | 'expired' | 'removed' | 'host' | 'admin';
  /** Server time, ISO 8601 with milliseconds. */
  at: string;
}

/** A group as the server describes it. */
export interface Group {
  id: string;
  domain: string;
  name: string;
  /** The host node's id. */
  host: string;
  createdAt: string;
  expiresAt: string;
  hostSeenAt: string;
  /** False when the server has WebSocket turned off. */
  useWebSocket: boolean;
  /** Smalruby Mesh v2 clients may join. */
  meshV2: boolean;
  /** How many members it has. */
  nodes: number;
}

/** A node (member) as the server describes it. */
export interface Node {
  id: string;
  group: string;
  name: string;
  joinedAt: string;
  lastSeen: string;
  expiresAt: string;
  data: Record<string, string>;
  dataAt?: string;
  host: boolean;
  meshV2?: boolean;
}

/** A member of the group as this client sees it: the snapshot's fields, kept current by the stream. */
export interface NodeView extends Partial<Omit<Node, 'id' | 'name' | 'data'>> {
  id: string;
  name: string;
  data: Record<string, string>;
}

/** The transports a client can use. */
export type Transport = 'ws' | 'sse' | 'poll';

/** A transport choice: one of them, or `'auto'` (WebSocket, then SSE, then long-poll). */
export type TransportName = 'auto' | Transport;

/** The state of the connection, passed to `'status'` listeners. */
export interface Status {
  state: 'connecting' | 'connected' | 'reconnecting' | 'closed';
  /** The transport in use (or last tried). */
  transport: Transport | null;
  /** How long until the next attempt (reconnecting). */
  delayMs?: number;
  /** How many attempts failed in a row (reconnecting). */
  attempt?: number;
  /** Why the client closed. */
  reason?: 'left' | 'dissolved' | 'removed' | 'expired' | 'closed' | 'error';
  /** The error that closed the client or caused the reconnect. */
  error?: MeshError;
}

/** This client's own measure of its link, passed to `'link'` listeners and kept as `mesh.link`. */
export interface Link {
  /** The transport in use, null while disconnected. */
  transport: Transport | null;
  /** Median of the last few round trips, in milliseconds (null until the first). */
  rttMs: number | null;
  /** The worst of them. */
  worstMs: number | null;
  /** What was timed: a WebSocket heartbeat until its ack, an SSE ping's echo, an HTTP heartbeat. */
  measuredBy: 'ack' | 'echo' | 'heartbeat' | null;
  /** From rttMs, as the dashboard judges it: under 100 ms good, under 300 ms slow, else poor. */
  quality: 'good' | 'slow' | 'poor' | null;
  /** How many round trips the window holds. */
  samples: number;
}

/** Options for `create` and `join` (all optional). */
export interface ClientOptions {
  /** create: the group's name; join: this node's name. */
  name?: string;
  /** create: the host node's name (the server picks one when omitted). */
  nodeName?: string;
  /** create: the domain to create the group in. */
  domain?: string;
  /** create: the group's requested lifetime. */
  maxConnectionTimeSeconds?: number;
  /** Default `'auto'`. */
  transport?: TransportName;
  /** How long a transport may take to open before `auto` tries the next; default 4000. */
  connectTimeoutMs?: number;
  /** Operations kept while disconnected; more are refused with `queue_full`. Default 1000. */
  maxQueue?: number;
  /** An operation waiting longer is refused with `queue_expired`. Default 60000. */
  maxQueueAgeMs?: number;
  /** First reconnect delay cap; default 1000. */
  minBackoffMs?: number;
  /** Largest reconnect delay cap; default 30000. */
  maxBackoffMs?: number;
  /** How long one long-poll waits; default 25. */
  pollWaitSeconds?: number;
  /** Overrides the heartbeat interval the server asks for. */
  heartbeatSeconds?: number;
  /** Leave the group when the page is closed; default false. */
  leaveOnUnload?: boolean;
}

/** One event to publish. A non-string payload is sent as JSON. */
export interface EventIn {
  name: string;
  payload?: unknown;
}

/** The answer to create and join, as the constructor takes it. */
export interface Joined {
  group: Group;
  node: Node;
  token: string;
  cursor: number;
  heartbeatIntervalSeconds?: number;
}

/** What each listener kind receives. */
export interface ListenerArgs {
  event: Item;
  data: Item;
  join: Item;
  leave: Item;
  dissolve: Item;
  /** Every item, whatever its kind. */
  item: Item;
  /** Items were purged before this client read them; `mesh.nodes` is already fresh. */
  reset: { cursor: number };
  status: Status;
  link: Link;
}

/** The kinds `on` accepts. */
export type ListenerKind = keyof ListenerArgs;

/**
 * A base URL: the box's address (`'http://192.168.1.20:8080'`, or `''` for this page's origin);
 * or several boxes sharing groups, as a list or separated by commas.
 */
export type BaseURL = string | string[];

/** An error from the server (its code, message and HTTP status) or from the network (status 0). */
export declare class MeshError extends Error {
  /**
   * @param code machine-readable code, e.g. group_not_found, network, queue_full
   * @param status HTTP status; 0 for network failures and local errors
   * @param retryAfterMs from a 429's Retry-After header
   */
  constructor(code: string, message?: string, status?: number, retryAfterMs?: number);
  name: 'MeshError';
  /** The server's code (`group_not_found`, `too_large`, `rate_limited`, …) or a local one (`network`, `timeout`, `queue_full`, `queue_expired`, `closed`, `bad_option`, `bad_event`). */
  code: string;
  /** The HTTP status; 0 for network and local errors. */
  status: number;
  /** From a 429's or 503's Retry-After, in milliseconds; 0 when none. */
  retryAfterMs: number;
  /** True when the request may not have reached the server. */
  readonly network: boolean;
  /** True when the server did not answer or cannot serve now (no answer, a timeout, 502, 503, 504). */
  readonly unreachable: boolean;
  /** True when the node or its group is gone or the token is refused: retrying cannot help. */
  readonly fatal: boolean;
  /** The message-catalog key of this error's text for people (`message` stays technical English). */
  readonly messageKey: string;
}

/** Catalog keys of the user-facing text for each error code. */
export declare const MESSAGE_KEYS: Readonly<Record<string, string>>;

/** A node's live membership in one group. */
export declare class MeshClient {
  /** Creates a group with this client as its host node. `opts.name` is the group's name, `opts.nodeName` yours. */
  static create(baseURL: BaseURL, opts?: ClientOptions): Promise<MeshClient>;
  /** Joins a group as a new node; `opts.name` is your node's name. */
  static join(baseURL: BaseURL, groupId: string, opts?: ClientOptions): Promise<MeshClient>;
  /** The live groups of a domain (the server's choice for you when omitted). */
  static groups(baseURL: BaseURL, domain?: string): Promise<Group[]>;
  /** The domain the server assigns you. */
  static domain(baseURL: BaseURL): Promise<string>;

  /** Use `create` or `join` instead. */
  constructor(baseURL: BaseURL, joined: Joined, opts: ClientOptions, index?: number);

  /** The servers this client may talk to. */
  baseURLs: string[];
  /** The server this client talks to now. */
  baseURL: string;
  /** The group as the server last described it. */
  group: Group;
  /** This client's node as the server last described it. */
  node: Node;
  /** The cursor of the last item delivered to you. */
  cursor: number;
  /** Every member and its data, by node id, kept current. */
  nodes: Map<string, NodeView>;
  /** The transport in use, or null while disconnected. */
  transport: Transport | null;
  status: Status['state'];
  /** Your own link as this client measures it. */
  link: Link;
  readonly groupId: string;
  readonly nodeId: string;
  readonly isHost: boolean;

  /** Listen; returns a function that stops listening. */
  on<K extends ListenerKind>(kind: K, fn: (arg: ListenerArgs[K]) => void): () => void;
  /** Stop listening. */
  off<K extends ListenerKind>(kind: K, fn: (arg: ListenerArgs[K]) => void): void;
  /** Publishes one event; resolves with its cursor once the server has committed it. */
  publish(name: string, payload?: unknown): Promise<number>;
  /** Publishes several events in one request, in order; resolves with their cursors. */
  publishMany(events: EventIn[]): Promise<number[]>;
  /** Sets your node's data keys (values become strings; `''`, null or undefined deletes a key); resolves with the item's cursor. */
  setData(data: Record<string, string | number | boolean | null | undefined>): Promise<number>;
  /** Resolves once the outgoing queue is empty, or after the timeout (10 s by default). */
  flush(timeoutMs?: number): Promise<void>;
  /** Sends what is still queued, leaves the group, stops. */
  leave(): Promise<void>;
  /** Ends the group for everyone (host only), and stops. */
  dissolve(): Promise<void>;
  /** Stops without leaving (the server expires the node later). */
  close(): void;
}

export default MeshClient;
