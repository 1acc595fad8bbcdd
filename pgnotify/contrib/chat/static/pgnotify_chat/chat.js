// The chat page: renders the room's frames and sends {"message": text}.
// Every piece of text from the server goes in with textContent, never as HTML.
(function () {
  "use strict";

  var root = document.querySelector(".chat");
  var me = JSON.parse(document.getElementById("chat-username").textContent);
  var list = document.getElementById("chat-messages");
  var empty = document.getElementById("chat-empty");
  var form = document.getElementById("chat-form");
  var input = document.getElementById("chat-input");
  var count = document.getElementById("chat-count");
  var errorBox = document.getElementById("chat-error");
  var users = document.getElementById("chat-users");
  var userCount = document.getElementById("chat-user-count");
  var connection = document.getElementById("chat-connection");
  var latency = document.getElementById("chat-latency");
  var MAX = 2000;

  var seen = new Set();      // message ids already shown (history comes again after a reconnect)
  var sentAt = {};           // text -> time sent, for this page's own round trip
  var lastAuthor = null;     // consecutive messages of one author are grouped
  var errorTimer = null;

  // For browser tests: every message frame with the time it arrived here.
  window.chatReceived = [];
  window.chatSentAt = {};

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function hue(name) {
    var h = 0;
    for (var i = 0; i < name.length; i++) h = (h * 31 + name.charCodeAt(i)) % 360;
    return h;
  }

  function avatar(name) {
    var node = el("span", "chat-avatar", (name || "?").charAt(0).toUpperCase());
    node.style.background = "hsl(" + hue(name || "?") + ", 55%, 42%)";
    return node;
  }

  function timeOf(ts) {
    var ms = window.pgnotify.parseTs(ts);
    if (isNaN(ms)) return "";
    return new Date(ms).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }

  function nearBottom() {
    return list.scrollHeight - list.scrollTop - list.clientHeight < 80;
  }

  function append(node) {
    var stick = nearBottom();
    if (empty.parentNode) empty.remove();
    list.appendChild(node);
    if (stick) list.scrollTop = list.scrollHeight;
  }

  function showMessage(frame) {
    if (seen.has(frame.id)) return;
    seen.add(frame.id);
    var mine = frame.user === me;
    var item = el("li", "chat-message" + (mine ? " mine" : "") + (frame.history ? " history" : ""));
    item.dataset.id = frame.id;
    if (lastAuthor === frame.user) {
      item.classList.add("continued");
    } else {
      item.appendChild(avatar(frame.user));
    }
    var body = el("div", "chat-bubble");
    if (lastAuthor !== frame.user) {
      var meta = el("div", "chat-meta");
      meta.appendChild(el("span", "chat-author", frame.user));
      meta.appendChild(el("time", "chat-time", timeOf(frame.ts)));
      body.appendChild(meta);
    }
    body.appendChild(el("div", "chat-text", frame.message));
    item.appendChild(body);
    item.title = timeOf(frame.ts);
    lastAuthor = frame.user;
    append(item);
  }

  function showSystem(frame) {
    lastAuthor = null;
    var item = el("li", "chat-system");
    item.appendChild(el("span", null, frame.message));
    item.appendChild(el("time", "chat-time", timeOf(frame.ts)));
    append(item);
  }

  function showUsers(frame) {
    users.replaceChildren();
    frame.users.forEach(function (name) {
      var item = el("li", name === me ? "me" : null);
      item.appendChild(avatar(name));
      item.appendChild(el("span", "chat-user-name", name));
      if (name === me) item.appendChild(el("span", "chat-you", "you"));
      users.appendChild(item);
    });
    userCount.textContent = String(frame.users.length);
  }

  function showError(message) {
    errorBox.textContent = message;
    errorBox.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(function () { errorBox.hidden = true; }, 6000);
  }

  function onFrame(frame) {
    if (frame.type === "chat.message") {
      window.chatReceived.push({ id: frame.id, user: frame.user, message: frame.message,
                                 history: !!frame.history, at: Date.now() });
      if (frame.user === me && sentAt[frame.message] !== undefined) {
        latency.querySelector(".text").textContent = "round trip " + (Date.now() - sentAt[frame.message]) + " ms";
        latency.hidden = false;
        delete sentAt[frame.message];
      }
      showMessage(frame);
    } else if (frame.type === "chat.system") {
      showSystem(frame);
    } else if (frame.type === "chat.users") {
      showUsers(frame);
    } else if (frame.type === "error") {
      showError(frame.message);
    }
  }

  var labels = { connecting: "connecting", open: "connected", reconnecting: "reconnecting…", forbidden: "not allowed" };
  function onState(state, detail) {
    connection.dataset.state = state === "open" ? "ok" : (state === "forbidden" || state === "not found" ? "bad" : "warn");
    var label = labels[state] || state;
    if (state === "reconnecting" && detail && detail.retryInMs) label += " (" + Math.ceil(detail.retryInMs / 1000) + " s)";
    connection.querySelector(".text").textContent = label;
    form.classList.toggle("offline", state !== "open");
  }

  var socket = new window.pgnotify.LiveSocket(root.dataset.wsPath, { onFrame: onFrame, onState: onState });

  function updateCount() {
    count.textContent = input.value.length + " / " + MAX;
    count.classList.toggle("over", input.value.length > MAX);
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 160) + "px";
  }

  function send() {
    var text = input.value;
    if (!text.trim()) return;
    if (!socket.socket || socket.socket.readyState !== WebSocket.OPEN) {
      showError("Not connected: your message is kept here until the connection is back.");
      return;
    }
    var now = Date.now();
    sentAt[text] = now;
    window.chatSentAt[text] = now;
    socket.socket.send(JSON.stringify({ message: text }));
    input.value = "";
    updateCount();
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); send(); });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
  input.addEventListener("input", updateCount);

  document.getElementById("chat-room-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var name = document.getElementById("chat-room-input").value.trim();
    if (/^[A-Za-z0-9_-]{1,50}$/.test(name)) window.location.href = "/chat/" + name + "/";
  });

  input.focus();
})();
