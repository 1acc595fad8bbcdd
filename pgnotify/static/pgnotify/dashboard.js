// The table-activity dashboard: `changes` and `stats` frames from /ws/dashboard/ into the page.
// Rendering is batched per animation frame, so a burst of thousands of events stays smooth.
(function () {
  "use strict";

  var FEED_ROWS = 60, LATENCY_SAMPLES = 2000, SEEN_IDS = 50000, CHART_SECONDS = 60;
  var OPS = ["INSERT", "UPDATE", "DELETE"];

  var state = {
    frames: 0, events: 0, duplicates: 0,
    seen: new Set(), seenOrder: [],
    counts: {},             // table -> {INSERT: n, UPDATE: n, DELETE: n}
    feed: [],               // newest first: {event, latency}
    latencies: [],          // ring buffer of commit-to-browser ms
    latencyNext: 0,
    buckets: {},            // epoch second -> events received in it
    peak: 0,
    stats: null,
    dirty: false,
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);  // text, never HTML
    return node;
  }

  function remember(id) {
    if (state.seen.has(id)) return false;
    state.seen.add(id);
    state.seenOrder.push(id);
    if (state.seenOrder.length > SEEN_IDS) state.seen.delete(state.seenOrder.shift());
    return true;
  }

  function percentile(values, fraction) {
    if (!values.length) return null;
    var sorted = values.slice().sort(function (a, b) { return a - b; });
    return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))];
  }

  function onChanges(events) {
    var now = Date.now(), second = Math.floor(now / 1000);
    state.frames += 1;
    for (var i = 0; i < events.length; i++) {
      var event = events[i];
      if (typeof event.id === "number" && !remember(event.id)) { state.duplicates += 1; continue; }
      state.events += 1;
      state.buckets[second] = (state.buckets[second] || 0) + 1;
      var byOp = state.counts[event.table] || (state.counts[event.table] = { INSERT: 0, UPDATE: 0, DELETE: 0 });
      byOp[event.op] = (byOp[event.op] || 0) + 1;
      var latency = now - window.pgnotify.parseTs(event.ts);
      if (isFinite(latency)) {
        state.latencies[state.latencyNext] = Math.max(0, latency);
        state.latencyNext = (state.latencyNext + 1) % LATENCY_SAMPLES;
      }
      state.feed.unshift({ event: event, latency: latency, received: now });
    }
    if (state.feed.length > FEED_ROWS) state.feed.length = FEED_ROWS;
    schedule();
  }

  function onFrame(frame) {
    if (frame.type === "changes" && Array.isArray(frame.events)) onChanges(frame.events);
    else if (frame.type === "stats") { state.stats = frame; schedule(); }
    else if (frame.type === "notice") { state.stats = Object.assign({}, state.stats || {}, { state: frame.state, reconnects: frame.reconnects }); schedule(); }
  }

  function schedule() {
    if (state.dirty) return;
    state.dirty = true;
    // Hidden tabs get no animation frames; keep them current at a lower pace.
    if (document.hidden) setTimeout(render, 250); else window.requestAnimationFrame(render);
  }

  // -- rendering

  function render() {
    state.dirty = false;
    renderKpis();
    renderCounts();
    renderFeed();
    renderStats();
  }

  function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function ms(n) { return n === null || n === undefined ? "–" : (n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US")); }

  function currentRate() {
    var second = Math.floor(Date.now() / 1000);
    return state.buckets[second - 1] || 0;
  }

  function renderKpis() {
    var rate = currentRate();
    state.peak = Math.max(state.peak, rate);
    $("kpi-rate").textContent = fmt(rate);
    $("kpi-peak").textContent = "peak " + fmt(state.peak);
    $("kpi-total").textContent = fmt(state.events);
    $("kpi-dupes").textContent = fmt(state.duplicates) + " duplicates dropped";
    var p50 = percentile(state.latencies, 0.5), p99 = percentile(state.latencies, 0.99);
    $("kpi-p50").textContent = ms(p50);
    $("kpi-p99").textContent = ms(p99);
    $("kpi-samples").textContent = fmt(state.latencies.length) + " samples";
    $("frames").textContent = fmt(state.frames) + " frames";
    window.pgnotifyDashboard.latencyP50 = p50;
    window.pgnotifyDashboard.latencyP99 = p99;
  }

  function renderCounts() {
    var body = $("counts-body"), tables = Object.keys(state.counts).sort();
    if (!tables.length) return;
    body.replaceChildren();
    tables.forEach(function (table) {
      var byOp = state.counts[table], row = el("tr");
      row.appendChild(el("td", "mono", table));
      var total = 0;
      OPS.forEach(function (op) { total += byOp[op] || 0; row.appendChild(el("td", "num", fmt(byOp[op] || 0))); });
      row.appendChild(el("td", "num strong", fmt(total)));
      body.appendChild(row);
    });
  }

  function renderFeed() {
    var body = $("feed-body");
    if (!state.feed.length) return;
    body.replaceChildren();
    state.feed.forEach(function (item) {
      var event = item.event, row = el("tr");
      row.dataset.eventId = event.id;
      row.appendChild(el("td", "mono dim", new Date(window.pgnotify.parseTs(event.ts) || item.received).toLocaleTimeString("en-GB", { hour12: false })));
      var op = el("td");
      op.appendChild(el("span", "op op-" + String(event.op).toLowerCase(), event.op));
      row.appendChild(op);
      row.appendChild(el("td", "mono", event.table));
      row.appendChild(el("td", "mono", event.pk));
      var changed = el("td", "changed");
      if (Array.isArray(event.changed) && event.changed.length) {
        event.changed.forEach(function (column) {
          var value = event.row ? event.row[column] : undefined;
          var chip = el("span", "chip", column);
          if (value !== undefined && value !== null && String(value).length <= 24) chip.appendChild(el("b", null, " " + value));
          changed.appendChild(chip);
        });
      } else {
        changed.appendChild(el("span", "dim", event.op === "INSERT" ? "new row" : event.op === "DELETE" ? "row removed" : "–"));
      }
      row.appendChild(changed);
      row.appendChild(el("td", "num mono dim", "#" + event.id));
      row.appendChild(el("td", "num mono", isFinite(item.latency) ? ms(item.latency) + " ms" : "–"));
      body.appendChild(row);
    });
  }

  function renderStats() {
    var stats = state.stats;
    if (!stats) return;
    var pill = $("listener-state"), live = stats.state === "live";
    pill.dataset.state = live ? "ok" : (stats.state === "standby" || stats.state === "replaying" || stats.state === "connected") ? "warn" : "bad";
    pill.querySelector(".text").textContent = "listener " + (stats.name ? stats.name + ": " : "") + stats.state;
    if (stats.last_event_id !== undefined) $("kpi-last-id").textContent = stats.last_event_id === null ? "–" : "#" + stats.last_event_id;
    $("kpi-reconnects").textContent = fmt(stats.reconnects || 0) + " reconnects";
    if (stats.queue_usage !== undefined) {
      var pct = stats.queue_usage * 100;
      $("kpi-queue").textContent = (pct < 1 && pct > 0 ? pct.toFixed(2) : Math.round(pct)) + "%";
      $("queue-bar").style.width = Math.min(100, Math.max(pct, 0.5)) + "%";
    }
    if (stats.channels) {
      var body = $("channels-body"), names = Object.keys(stats.channels);
      if (names.length) body.replaceChildren();
      names.forEach(function (name) {
        var c = stats.channels[name], row = el("tr");
        row.appendChild(el("td", "mono", name));
        row.appendChild(el("td", "num", fmt(c.count)));
        row.appendChild(el("td", "num", fmt(c.rate)));
        row.appendChild(el("td", "num", ms(c.latency_p50_ms)));
        row.appendChild(el("td", "num", ms(c.latency_p99_ms)));
        body.appendChild(row);
      });
    }
  }

  // -- the chart: events per second, last 60 s, redrawn every second

  function drawChart() {
    var canvas = $("rate-chart"), ratio = window.devicePixelRatio || 1;
    var width = canvas.clientWidth, height = canvas.clientHeight;
    if (canvas.width !== width * ratio) { canvas.width = width * ratio; canvas.height = height * ratio; }
    var ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    var now = Math.floor(Date.now() / 1000), values = [];
    for (var s = now - CHART_SECONDS; s < now; s++) values.push(state.buckets[s] || 0);
    Object.keys(state.buckets).forEach(function (key) { if (key < now - CHART_SECONDS - 5) delete state.buckets[key]; });
    var max = Math.max(5, Math.max.apply(null, values)), top = niceCeil(max);
    var left = 44, bottom = 22, plotW = width - left - 8, plotH = height - bottom - 10;
    ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
    ctx.fillStyle = "#7d8aa3"; ctx.strokeStyle = "rgba(125,138,163,0.15)"; ctx.lineWidth = 1;
    for (var g = 0; g <= 4; g++) {
      var y = 10 + plotH - (plotH * g) / 4;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + plotW, y); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(String(Math.round((top * g) / 4)), left - 8, y + 4);
    }
    ctx.textAlign = "center";
    [60, 45, 30, 15, 0].forEach(function (ago) {
      ctx.fillText(ago ? "-" + ago + "s" : "now", left + plotW - (plotW * ago) / CHART_SECONDS, height - 6);
    });
    var step = plotW / CHART_SECONDS, barW = Math.max(2, step - 2);
    var gradient = ctx.createLinearGradient(0, 10, 0, 10 + plotH);
    gradient.addColorStop(0, "#4fd1c5"); gradient.addColorStop(1, "rgba(79,209,197,0.25)");
    ctx.fillStyle = gradient;
    values.forEach(function (v, i) {
      var h = (plotH * v) / top;
      if (v > 0) roundedBar(ctx, left + i * step + 1, 10 + plotH - h, barW, Math.max(h, 2));
    });
    renderKpis();
  }

  function roundedBar(ctx, x, y, w, h) {
    var r = Math.min(3, w / 2, h / 2);
    ctx.beginPath();
    ctx.moveTo(x, y + h); ctx.lineTo(x, y + r); ctx.quadraticCurveTo(x, y, x + r, y);
    ctx.lineTo(x + w - r, y); ctx.quadraticCurveTo(x + w, y, x + w, y + r); ctx.lineTo(x + w, y + h);
    ctx.closePath(); ctx.fill();
  }

  function niceCeil(v) {
    var magnitude = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * magnitude >= v) return steps[i] * magnitude;
    return 10 * magnitude;
  }

  function onState(wsState, detail) {
    var pill = $("ws-status"), text = pill.querySelector(".text");
    pill.dataset.state = wsState === "open" ? "ok" : wsState === "forbidden" || wsState === "not found" ? "bad" : "warn";
    text.textContent = wsState === "open" ? "live" : wsState === "reconnecting" && detail
      ? "reconnecting in " + (detail.retryInMs / 1000).toFixed(1) + " s" : wsState;
  }

  window.pgnotifyDashboard = {
    state: state,
    seen: function (id) { return state.seen.has(id); },
    latencyP50: null, latencyP99: null,
  };
  new window.pgnotify.LiveSocket(document.querySelector("[data-ws-path]").dataset.wsPath, { onFrame: onFrame, onState: onState });
  drawChart();
  setInterval(drawChart, 1000);
  window.addEventListener("resize", drawChart);
})();
