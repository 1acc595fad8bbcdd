// A websocket that reconnects by itself, with capped exponential backoff and jitter.
// onState receives "connecting", "open" or "reconnecting"; window.websocketConnected mirrors "open".
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
      try { data = JSON.parse(message.data); } catch (e) { return; }
      self.handlers.onFrame(data);
    };
    socket.onclose = function (event) {
      if (event.code === 4403) {  // not allowed: retrying will not help
        self.setState("forbidden");
        return;
      }
      self.attempt += 1;
      var delay = Math.min(10000, 250 * Math.pow(2, self.attempt - 1)) * (0.5 + Math.random() / 2);
      self.setState("reconnecting", { retryInMs: Math.round(delay) });
      setTimeout(function () { self.connect(); }, delay);
    };
  };

  // "2026-11-27T10:00:00.123456+00:00" -> epoch ms (Date.parse wants at most 3 fraction digits).
  function parseTs(ts) {
    if (typeof ts !== "string") return NaN;
    return Date.parse(ts.replace(/(\.\d{3})\d+/, "$1"));
  }

  window.pgnotify = window.pgnotify || {};
  window.pgnotify.LiveSocket = LiveSocket;
  window.pgnotify.parseTs = parseTs;
})();
