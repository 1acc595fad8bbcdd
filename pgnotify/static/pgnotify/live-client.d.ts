// Types of pgnotify's live data client (live-client.js). The wire: docs/live.md.

/** A row as the stream sends it: its declared fields. Numbers a double cannot hold arrive as strings of their digits. */
export type Row = Record<string, unknown>;
/** The key of a row in a view: its `id` field by default (a string when the number has more digits than a double holds). */
export type RowKey = unknown;

export type ConnectionStatus = "connecting" | "open" | "reconnecting" | "closed" | "forbidden" | "not found";
export type SubscriptionStatus = "loading" | "live" | "resyncing" | "reconnecting" | "closed" | "error" | "forbidden" | "not found";

export interface StatusDetail {
  /** With "reconnecting": the delay before the next attempt, and how many attempts failed in a row. */
  retryInMs?: number;
  attempt?: number;
  /** With "error": the server's message. */
  message?: string;
}

export interface ConnectOptions {
  /** The WebSocket constructor: the global one in browsers and Node 22+; pass `ws`'s on Node 20. */
  WebSocket?: new (url: string) => WebSocket;
  /** First reconnect delay (default 250 ms); it doubles on each failed attempt up to maxDelayMs (default 10,000 ms); each delay is drawn in [d/2, d]. */
  minDelayMs?: number;
  maxDelayMs?: number;
  /** Random numbers in [0, 1) for the jitter (default Math.random). */
  random?: () => number;
  onStatus?: (status: ConnectionStatus, detail: StatusDetail) => void;
}

/** A filter: field -> value (eq), field -> list (in), or Django lookups: {"total__gte": 10}, {"status__in": [...]}, __lt, __lte, __gt, __isnull. */
export type Filter = Record<string, unknown>;

export interface SubscribeOptions {
  filter?: Filter;
  /** The row's key in `rows`: a field name (default "id") or a function of the row. */
  key?: string | ((row: Row) => RowKey);
}

export interface Change {
  op: "INSERT" | "UPDATE" | "DELETE";
  row: Row;
  key: RowKey;
  position: string;
}

export interface SubscriptionCallbacks {
  /** The snapshot is complete (first load, or after a resync): `rows` is the whole view. */
  onSnapshot?(this: LiveSubscription, rows: Map<RowKey, Row>, info: { position: string }): void;
  /** A row entered (INSERT), changed in (UPDATE) or left (DELETE) the view; `rows` already holds the change. */
  onChange?(this: LiveSubscription, change: Change, rows: Map<RowKey, Row>): void;
  /** The server refused the subscription; nothing more comes for it. */
  onError?(this: LiveSubscription, message: string, frame: { type: "error"; id: string; message: string }): void;
  onStatus?(this: LiveSubscription, status: SubscriptionStatus, detail: StatusDetail): void;
}

export class LiveSubscription {
  readonly id: string;
  readonly stream: string;
  readonly filter: Filter | undefined;
  /** The view: pk -> row, kept current from snapshot pages and change frames. */
  readonly rows: Map<RowKey, Row>;
  /** Opaque: where the view stands; sent as `after` on reconnect. */
  readonly position: string | null;
  /** The first snapshot is complete. */
  readonly ready: boolean;
  readonly status: SubscriptionStatus;
  unsubscribe(): void;
}

export class LiveConnection {
  readonly url: string;
  readonly status: ConnectionStatus;
  readonly subscriptions: Map<string, LiveSubscription>;
  subscribe(stream: string, options?: SubscribeOptions, callbacks?: SubscriptionCallbacks): LiveSubscription;
  /** Closes the socket for good; every subscription ends. */
  close(): void;
}

/** One websocket to `url` (default: /ws/live/ on the page's host), reconnecting by itself. */
export function connect(url?: string, options?: ConnectOptions): LiveConnection;
