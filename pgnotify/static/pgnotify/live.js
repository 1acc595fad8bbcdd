// A websocket that reconnects by itself, with capped exponential backoff and jitter.
// onState receives "connecting", "open" or "reconnecting"; window.websocketConnected mirrors "open".
// An ES module (for exact-json.js): the pages load it, and the scripts using window.pgnotify after
// it, with type="module", which runs them in document order.
import { parseExact } from "./exact-json.js";

(function () {
  "use strict";

  function LiveSocket(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.attempt = 0;
    this.connect();
  }

  LiveSocket.prototype.url = function () {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + window.location.host + this.path;
  };

  LiveSocket.prototype.setState = function (state, detail) {
    window.websocketConnected = state === "open";
    if (this.handlers.onState) this.handlers.onState(state, detail);
  };

  LiveSocket.prototype.connect = function () {
    var self = this;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    var socket = new WebSocket(this.url());
    this.socket = socket;
    socket.onopen = function () {
      self.attempt = 0;
      self.setState("open");
    };
    socket.onmessage = function (message) {
      var data;
      try { data = parseFrame(message.data); } catch (e) { return; }
      self.handlers.onFrame(data);
    };
    socket.onclose = function (event) {
      if (event.code === 4403 || event.code === 4404) {  // refused by the server: retrying will not help
        self.setState(event.code === 4403 ? "forbidden" : "not found");
        self.showRefusal(event.code);
        return;
      }
      self.attempt += 1;
      var delay = Math.min(10000, 250 * Math.pow(2, self.attempt - 1)) * (0.5 + Math.random() / 2);
      self.setState("reconnecting", { retryInMs: Math.round(delay) });
      setTimeout(function () { self.connect(); }, delay);
    };
  };

  // A refused socket stays closed; the page says why and, for 4403 (logged out, or the right was
  // lost), links to the log-in page, which brings the user back here.
  LiveSocket.prototype.showRefusal = function (code) {
    var banner = document.getElementById("live-refused") || document.createElement("div");
    banner.id = "live-refused";
    banner.setAttribute("role", "alert");
    banner.style.cssText = "position:fixed;left:50%;top:14px;transform:translateX(-50%);z-index:2000;" +
      "background:#2a1215;color:#ffd9d9;border:1px solid #fc6d6d;border-radius:10px;padding:10px 16px;" +
      "font:14px/1.4 system-ui,sans-serif;box-shadow:0 6px 18px rgba(0,0,0,0.3)";
    banner.replaceChildren();
    if (code === 4403) {
      var holder = document.querySelector("[data-login-url]");
      var login = document.createElement("a");
      login.id = "live-login";
      login.href = (holder ? holder.dataset.loginUrl : "/accounts/login/") +
        "?next=" + encodeURIComponent(window.location.pathname + window.location.search);
      login.textContent = "Log in again";
      login.style.color = "#4fd1c5";
      banner.appendChild(document.createTextNode("Live updates stopped: your session ended or you no longer have access. "));
      banner.appendChild(login);
    } else {
      banner.textContent = "Live updates stopped: this live view does not exist.";
    }
    if (!banner.parentNode) document.body.appendChild(banner);
  };

  // Frames carry numbers with all their digits (a numeric of 29 digits, an integer beyond 2^64):
  // exact-json.js keeps them (a string of the exact digits where a double would round).
  var parseFrame = parseExact;

  // "2026-11-27T10:00:00.123456+00:00" -> epoch ms (Date.parse wants at most 3 fraction digits).
  function parseTs(ts) {
    if (typeof ts !== "string") return NaN;
    return Date.parse(ts.replace(/(\.\d{3})\d+/, "$1"));
  }

  // A primary key as text: a composite key is an object of its columns ({"a": 1, "b": 2} -> "a=1, b=2").
  function keyText(pk) {
    if (pk === null || typeof pk !== "object") return pk;
    return Object.keys(pk).map(function (column) { return column + "=" + pk[column]; }).join(", ");
  }

  window.pgnotify = window.pgnotify || {};
  window.pgnotify.LiveSocket = LiveSocket;
  window.pgnotify.parseTs = parseTs;
  window.pgnotify.keyText = keyText;
  window.pgnotify.parseFrame = parseFrame;
})();
