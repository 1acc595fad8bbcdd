// pgnotify's live data client: one websocket per page to /ws/live/, any number of subscriptions
// on it, each with a keyed view of its rows kept current. A static ES module, no dependency:
//   import { connect } from "/static/pgnotify/live-client.js";
//   const live = connect();
//   const orders = live.subscribe("my-orders", { filter: { status: "paid" } }, { onChange, onSnapshot });
//   orders.rows  // Map: pk -> row
// The wire (docs/live.md): the client sends subscribe/unsubscribe; the server answers
// snapshot pages, then change frames, and resync or error frames. On a lost socket the client
// reconnects with capped exponential backoff and jitter, and resumes each subscription from its
// last position (`after`): the server sends what was missed, or resync and a fresh snapshot.
import { parseExact } from "./exact-json.js";

const REFUSED = { 4403: "forbidden", 4404: "not found" };  // close codes a retry cannot fix

export function connect(url, options = {}) {
  return new LiveConnection(url, options);
}

function defaultUrl() {
  const location = globalThis.location;
  if (!location) throw new Error("live-client: no page location: pass the websocket URL to connect()");
  return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/live/";
}

function absoluteUrl(url) {
  if (!url) return defaultUrl();
  if (/^wss?:\/\//.test(url)) return url;
  const base = defaultUrl();
  return base.slice(0, base.indexOf("/", base.indexOf("//") + 2)) + url;  // "/ws/live/" on this host
}

export class LiveConnection {
  constructor(url, options) {
    this.url = absoluteUrl(url);
    this.WebSocket = options.WebSocket || globalThis.WebSocket;
    if (!this.WebSocket) throw new Error("live-client: no WebSocket here: pass options.WebSocket");
    this.minDelayMs = options.minDelayMs ?? 250;
    this.maxDelayMs = options.maxDelayMs ?? 10000;
    this.random = options.random || Math.random;
    this.onStatus = options.onStatus || null;
    this.subscriptions = new Map();  // id -> LiveSubscription
    this.status = "connecting";
    this.attempt = 0;  // failed attempts since the last open socket
    this.lastId = 0;
    this.closed = false;
    this.socket = null;
    this.timer = null;
    this.open();
  }

  subscribe(stream, { filter, key } = {}, callbacks = {}) {
    if (this.closed) throw new Error("live-client: this connection is closed");
    const subscription = new LiveSubscription(this, "s" + ++this.lastId, stream, filter, key, callbacks);
    this.subscriptions.set(subscription.id, subscription);
    if (this.status === "open") this.sendSubscribe(subscription);
    return subscription;
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    for (const subscription of this.subscriptions.values()) subscription.setStatus("closed");
    this.subscriptions.clear();
    if (this.socket) this.socket.close(1000);
    this.setStatus("closed");
  }

  open() {
    const socket = new this.WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.setStatus("open");
      for (const subscription of this.subscriptions.values()) this.sendSubscribe(subscription);
    };
    socket.onmessage = (message) => this.receive(message.data);
    socket.onerror = () => {};  // a close event follows, which retries (ws throws an unheard error)
    socket.onclose = (event) => {
      if (this.socket !== socket || this.closed) return;
      this.socket = null;
      if (REFUSED[event.code]) return this.refused(REFUSED[event.code]);
      this.retryLater();
    };
  }

  // Delays double from minDelayMs up to maxDelayMs; each is drawn in [delay/2, delay] so that the
  // pages a server restart cut off do not all come back at the same instant.
  retryLater() {
    this.attempt += 1;
    const ceiling = Math.min(this.maxDelayMs, this.minDelayMs * 2 ** (this.attempt - 1));
    const delay = Math.round(ceiling * (0.5 + this.random() / 2));
    this.setStatus("reconnecting", { retryInMs: delay, attempt: this.attempt });
    this.timer = setTimeout(() => this.open(), delay);
  }

  refused(status) {
    this.closed = true;
    this.setStatus(status);
  }

  receive(text) {
    let frame;
    try {
      frame = parseExact(String(text));
    } catch {
      return;  // not JSON: nothing this client can act on
    }
    const subscription = this.subscriptions.get(frame.id);
    if (subscription) subscription.handle(frame);
  }

  sendSubscribe(subscription) {
    const message = { type: "subscribe", id: subscription.id, stream: subscription.stream };
    if (subscription.filter !== undefined) message.filter = subscription.filter;
    if (subscription.position != null) message.after = subscription.position;
    // Resuming sends no snapshot: only the changes missed, if any, so the view is live at once.
    subscription.setStatus(subscription.position != null ? "live" : "loading");
    subscription.snapshotStarted = false;  // a snapshot sent on this socket starts from a clean view
    this.send(message);
  }

  send(message) {
    if (this.socket && this.status === "open") this.socket.send(JSON.stringify(message));
  }

  forget(subscription) {
    this.subscriptions.delete(subscription.id);
  }

  setStatus(status, detail) {
    this.status = status;
    if (this.onStatus) this.onStatus(status, detail || {});
    if (status !== "open" && status !== "closed") {
      for (const subscription of this.subscriptions.values()) subscription.setStatus(status, detail);
    }
  }
}

export class LiveSubscription {
  constructor(connection, id, stream, filter, key, callbacks) {
    this.connection = connection;
    this.id = id;
    this.stream = stream;
    this.filter = filter;
    this.keyOf = typeof key === "function" ? key : (row) => row[key || "id"];
    this.callbacks = callbacks;
    this.rows = new Map();  // pk -> row: the rows in the view, as the server last sent them
    this.position = null;  // where the view stands; sent back as `after` to resume
    this.ready = false;  // the first snapshot is complete
    this.snapshotStarted = false;
    this.status = "loading";
  }

  unsubscribe() {
    if (this.status === "closed") return;
    this.connection.send({ type: "unsubscribe", id: this.id });
    this.connection.forget(this);
    this.setStatus("closed");
  }

  handle(frame) {
    if (frame.type === "snapshot") this.snapshotPage(frame);
    else if (frame.type === "change") this.change(frame);
    else if (frame.type === "resync") this.resync();
    else if (frame.type === "error") this.error(frame);
  }

  // Pages come in pk order; the first page of a snapshot replaces the view. The position is kept
  // only when the last page is in: resuming from a page's position would skip the pages after it.
  snapshotPage(frame) {
    if (!this.snapshotStarted) {
      this.rows.clear();
      this.snapshotStarted = true;
    }
    for (const row of frame.rows || []) this.rows.set(this.keyOf(row), row);
    if (!frame.done) return;
    this.snapshotStarted = false;
    this.position = frame.position;
    this.ready = true;
    this.setStatus("live");
    this.call("onSnapshot", this.rows, { position: frame.position });
  }

  change(frame) {
    const key = this.keyOf(frame.row);
    if (frame.op === "DELETE") this.rows.delete(key);
    else this.rows.set(key, frame.row);
    this.position = frame.position;
    if (this.status !== "live") this.setStatus("live");
    this.call("onChange", { op: frame.op, row: frame.row, key, position: frame.position }, this.rows);
  }

  // The position was too old to resume from: the view starts over from the fresh snapshot that follows.
  resync() {
    this.rows.clear();
    this.position = null;
    this.snapshotStarted = true;
    this.setStatus("resyncing");
  }

  // The server refused this subscription (unknown stream, a filter it does not allow, too many
  // subscriptions...): it sends nothing more for it, and it is not subscribed again on reconnect.
  error(frame) {
    this.connection.forget(this);
    this.setStatus("error", { message: frame.message });
    this.call("onError", frame.message, frame);
  }

  setStatus(status, detail) {
    if (this.status === "closed" || this.status === "error") return;
    this.status = status;
    this.call("onStatus", status, detail || {});
  }

  call(name, ...args) {
    const callback = this.callbacks[name];
    if (callback) callback.apply(this, args);
  }
}
