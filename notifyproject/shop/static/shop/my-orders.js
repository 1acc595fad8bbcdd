// The "My orders" page: the user's orders from the `my-orders` stream, live, with filter buttons
// by status, and a bell that says when an order is shipped. Text goes in as text, never HTML.
// window.pgnotifyLive tells browser tests what the page shows, so they wait on it, not on time.
import { connect } from "../pgnotify/live-client.js";

const $ = (id) => document.getElementById(id);
const state = window.pgnotifyLive = {
  ready: false, status: "", filter: null, rows: 0, bellReady: false, notifications: [],
  seen: [],  // every change frame of both subscriptions: [op, number, status]
};
const live = connect();
let table = null;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function render(rows, changedKey) {
  const body = $("orders-body");
  const sorted = [...rows.values()].sort((a, b) => compareIds(b.id, a.id));  // newest first
  const lines = sorted.map((order) => {
    const tr = document.createElement("tr");
    tr.dataset.number = order.number;
    tr.dataset.status = order.status;
    if (order.id === changedKey) tr.className = "flash";
    tr.append(cell(order.number), cell(order.status, "status-" + order.status), cell(order.quantity, "num"),
      cell(money(order.total), "num"), cell(formatTime(order.created_at)));
    return tr;
  });
  if (!lines.length) {
    const tr = document.createElement("tr");
    tr.className = "empty";
    const td = cell(state.filter ? "No " + state.filter + " orders." : "No orders yet.");
    td.colSpan = 5;
    tr.append(td);
    lines.push(tr);
  }
  body.replaceChildren(...lines);
  state.rows = sorted.length;
}

// Ids may be numbers or, past 2^53, strings of digits: compare them as whole numbers.
function compareIds(a, b) {
  const x = String(a), y = String(b);
  return x.length - y.length || (x < y ? -1 : x > y ? 1 : 0);
}

// A total arrives as a number, or as a string of its digits past what a double holds.
function money(total) {
  return typeof total === "number" ? total.toFixed(2) : total;
}

function formatTime(text) {
  const date = new Date(typeof text === "string" ? text.replace(/(\.\d{3})\d+/, "$1") : NaN);
  return isNaN(date) ? text : date.toLocaleString("en-GB", { hour12: false });
}

function showTable(status) {
  if (table) table.unsubscribe();
  state.ready = false;
  state.filter = status || null;
  for (const button of $("filters").querySelectorAll("button")) {
    button.setAttribute("aria-pressed", String(button.dataset.status === status));
  }
  table = live.subscribe("my-orders", status ? { filter: { status } } : {}, {
    onSnapshot(rows) {
      render(rows);
      state.ready = true;
    },
    onChange(change, rows) {
      state.seen.push([change.op, change.row.number, change.row.status]);
      render(rows, change.key);
    },
    onError(message) { showStatus("error", message); },
  });
}

function showStatus(status, text) {
  const pill = $("live-status");
  pill.dataset.state = { open: "ok", connecting: "connecting", reconnecting: "warn" }[status] || "bad";
  pill.querySelector(".text").textContent = text || (status === "open" ? "live" : status);
  state.status = status;
}

// The bell: the orders in status "shipped" are a view of their own; an order entering it after
// its snapshot (an INSERT into that view) has just been shipped.
function notify(order) {
  const list = $("bell-list");
  list.querySelector(".empty")?.remove();
  const item = document.createElement("li");
  item.textContent = "Order " + order.number + " shipped";
  list.prepend(item);
  state.notifications.push(item.textContent);
  const count = $("bell-count");
  count.textContent = String(state.notifications.length);
  count.hidden = false;
}

live.subscribe("my-orders", { filter: { status: "shipped" } }, {
  onSnapshot() { state.bellReady = true; },
  onChange(change) {
    state.seen.push([change.op, change.row.number, change.row.status]);
    if (change.op === "INSERT") notify(change.row);
  },
});

$("bell-button").addEventListener("click", () => {
  const list = $("bell-list"), open = list.hidden;
  list.hidden = !open;
  $("bell-button").setAttribute("aria-expanded", String(open));
  if (open) $("bell-count").hidden = true;
});
$("filters").addEventListener("click", (event) => {
  const button = event.target.closest("button");
  if (button) showTable(button.dataset.status);
});

live.onStatus = (status, detail) => {
  showStatus(status, status === "reconnecting" ? "reconnecting in " + Math.round(detail.retryInMs / 100) / 10 + " s" : "");
};
showStatus(live.status);
showTable("");
