// The table-activity dashboard: `changes` and `stats` frames from /ws/dashboard/ into the page.
// Rendering is batched: at most once per animation frame, and only the parts that changed (new
// feed rows are added, old ones dropped: the feed keeps at most FEED_ROWS rows in the DOM);
// percentiles and rates are recomputed once a second, not per frame.
(function () {
  "use strict";

  var FEED_ROWS = 60, LATENCY_SAMPLES = 2000, SEEN_IDS = 50000, CHART_SECONDS = 60, RATE_WINDOW = 5;
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
    samples: {},            // channel -> [[ms, count], ...] from stats frames, for rates the page computes
    fresh: [],              // feed items not rendered yet
    dirty: false, countsDirty: false, statsDirty: false,
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);  // text, never HTML
    return node;
  }

  // Event ids are per database: an event is known by its database and id (docs/wire-format.md `database`,
  // left out for 'default').
  function eventKey(id, database) { return (database || "default") + ":" + id; }

  function remember(key) {
    if (state.seen.has(key)) return false;
    state.seen.add(key);
    state.seenOrder.push(key);
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
      if (typeof event.id === "number" && !remember(eventKey(event.id, event.database))) {
        state.duplicates += 1;
        continue;
      }
      state.events += 1;
      state.buckets[second] = (state.buckets[second] || 0) + 1;
      var byOp = state.counts[event.table] || (state.counts[event.table] = { INSERT: 0, UPDATE: 0, DELETE: 0 });
      byOp[event.op] = (byOp[event.op] || 0) + 1;
      var latency = now - window.pgnotify.parseTs(event.ts);
      if (isFinite(latency)) {
        state.latencies[state.latencyNext] = Math.max(0, latency);
        state.latencyNext = (state.latencyNext + 1) % LATENCY_SAMPLES;
      }
      var item = { event: event, latency: latency, received: now };
      state.feed.unshift(item);
      state.fresh.push(item);
    }
    if (state.feed.length > FEED_ROWS) state.feed.length = FEED_ROWS;
    if (state.fresh.length > FEED_ROWS) state.fresh.splice(0, state.fresh.length - FEED_ROWS);
    state.countsDirty = true;
    schedule();
  }

  function onStats(frame) {
    state.stats = frame;
    var now = Date.now();
    Object.keys(frame.channels || {}).forEach(function (name) {
      var samples = state.samples[name] || (state.samples[name] = []);
      samples.push([now, frame.channels[name].count]);
      while (samples.length > 2 && samples[1][0] < now - (RATE_WINDOW + 5) * 1000) samples.shift();
    });
    state.statsDirty = true;
    schedule();
  }

  function onFrame(frame) {
    if (frame.type === "changes" && Array.isArray(frame.events)) onChanges(frame.events);
    else if (frame.type === "stats") onStats(frame);
    else if (frame.type === "notice") {
      state.stats = Object.assign({}, state.stats || {}, { state: frame.state, reconnects: frame.reconnects });
      state.statsDirty = true;
      schedule();
    }
  }

  // At most one render per animation frame, and at most one per RENDER_INTERVAL ms: nobody reads
  // more, and each costs style, layout and paint. Hidden tabs get no animation frames: a timer.
  var RENDER_INTERVAL = 250, renderedAt = 0;
  function schedule() {
    if (state.dirty) return;
    state.dirty = true;
    var wait = Math.max(0, renderedAt + RENDER_INTERVAL - Date.now());
    if (document.hidden) setTimeout(render, Math.max(wait, 250));
    else if (wait) setTimeout(function () { window.requestAnimationFrame(render); }, wait);
    else window.requestAnimationFrame(render);
  }

  // -- rendering

  function render() {
    state.dirty = false;
    renderedAt = Date.now();
    if (state.countsDirty) { state.countsDirty = false; renderCounts(); renderTotals(); }
    if (state.fresh.length) renderFeed();
    if (state.statsDirty) { state.statsDirty = false; renderStats(); }
  }

  function fmt(n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"); }
  function ms(n) { return n === null || n === undefined ? "–" : (n < 10 ? n.toFixed(1) : Math.round(n).toLocaleString("en-US")); }
  // Rates: one format everywhere, one decimal ("0.0", "2.8", "1,250.0").
  function fmtRate(n) {
    return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
  }
  function plural(n, word) { return fmt(n) + " " + word + (n === 1 ? "" : "s"); }
  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

  function currentRate() {
    var second = Math.floor(Date.now() / 1000);
    return state.buckets[second - 1] || 0;
  }

  // Once a second (and on the first frame): the rate, the latency percentiles (a sort each).
  function renderKpis() {
    var rate = currentRate();
    state.peak = Math.max(state.peak, rate);
    setText($("kpi-rate"), fmt(rate));
    setText($("kpi-peak"), "peak " + fmt(state.peak));
    var p50 = percentile(state.latencies, 0.5), p99 = percentile(state.latencies, 0.99);
    setText($("kpi-p50"), ms(p50));
    setText($("kpi-p99"), ms(p99));
    setText($("kpi-samples"), plural(state.latencies.length, "sample"));
    window.pgnotifyDashboard.latencyP50 = p50;
    window.pgnotifyDashboard.latencyP99 = p99;
  }

  function renderTotals() {
    setText($("kpi-total"), fmt(state.events));
    setText($("kpi-dupes"), fmt(state.duplicates) + " duplicates dropped");
    setText($("frames"), plural(state.frames, "frame"));
  }

  var countRows = {};  // table -> its row's number cells, updated in place

  function renderCounts() {
    var body = $("counts-body"), tables = Object.keys(state.counts).sort();
    if (!tables.length) return;
    var added = false;
    tables.forEach(function (table) {
      if (countRows[table]) return;
      var row = el("tr"), cells = [];
      row.appendChild(el("td", "mono", table));
      for (var i = 0; i < OPS.length + 1; i++) cells.push(row.appendChild(el("td", i === OPS.length ? "num strong" : "num")));
      countRows[table] = { row: row, cells: cells };
      added = true;
    });
    if (added) body.replaceChildren.apply(body, tables.map(function (table) { return countRows[table].row; }));
    tables.forEach(function (table) {
      var byOp = state.counts[table], cells = countRows[table].cells, total = 0;
      OPS.forEach(function (op, i) { total += byOp[op] || 0; setText(cells[i], fmt(byOp[op] || 0)); });
      setText(cells[OPS.length], fmt(total));
    });
  }

  function feedRow(item) {
    var event = item.event, row = el("tr");
    row.dataset.eventId = event.id;
    row.appendChild(el("td", "mono dim", new Date(window.pgnotify.parseTs(event.ts) || item.received).toLocaleTimeString("en-GB", { hour12: false })));
    var op = el("td");
    op.appendChild(el("span", "op op-" + String(event.op).toLowerCase(), event.op));
    row.appendChild(op);
    row.appendChild(el("td", "mono", event.table));
    row.appendChild(el("td", "mono", window.pgnotify.keyText(event.pk)));
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
    row.appendChild(el("td", "num mono dim", (event.database ? event.database + " " : "") + "#" + event.id));
    row.appendChild(el("td", "num mono", isFinite(item.latency) ? ms(item.latency) + " ms" : "–"));
    return row;
  }

  // New rows go on top; the DOM keeps at most FEED_ROWS of them.
  function renderFeed() {
    var body = $("feed-body"), fresh = state.fresh;
    state.fresh = [];
    var empty = body.querySelector("tr.empty");
    if (empty) empty.remove();
    var fragment = document.createDocumentFragment();
    for (var i = fresh.length - 1; i >= 0; i--) fragment.appendChild(feedRow(fresh[i]));
    body.insertBefore(fragment, body.firstChild);
    while (body.rows.length > FEED_ROWS) body.deleteRow(-1);
  }

  // Each channel's rate over the last RATE_WINDOW seconds, from the counts of the stats frames:
  // it falls to 0 when traffic stops (frames stop too) and a single event is not a burst.
  function channelRate(name) {
    var samples = state.samples[name];
    if (!samples || !samples.length) return null;
    var now = Date.now(), since = now - RATE_WINDOW * 1000, base = samples[0];
    for (var i = 0; i < samples.length && samples[i][0] <= since; i++) base = samples[i];
    var seconds = (now - Math.min(base[0], since)) / 1000;
    if (base === samples[0] && base[0] > since) seconds = (now - base[0]) / 1000;
    if (seconds < 1) return null;
    return Math.max(0, samples[samples.length - 1][1] - base[1]) / Math.max(seconds, RATE_WINDOW);
  }

  var channelRows = {};

  function renderChannelRates() {
    Object.keys(channelRows).forEach(function (name) { setText(channelRows[name].rate, fmtRate(channelRate(name))); });
  }

  function renderStats() {
    var stats = state.stats;
    if (!stats) return;
    var pill = $("listener-state"), live = stats.state === "live";
    pill.dataset.state = live ? "ok" : (stats.state === "standby" || stats.state === "replaying" || stats.state === "connected") ? "warn" : "bad";
    setText(pill.querySelector(".text"), "listener " + (stats.name ? stats.name + ": " : "") + stats.state);
    if (stats.last_event_id !== undefined) setText($("kpi-last-id"), stats.last_event_id === null ? "–" : "#" + stats.last_event_id);
    setText($("kpi-reconnects"), plural(stats.reconnects || 0, "reconnect"));
    if (stats.wal) {
      // The WAL source: what its replication slot keeps on the server, and for how long.
      var mb = (stats.wal.retained_bytes || 0) / 1048576;
      setText($("kpi-queue-label"), "Slot retains");
      setText($("kpi-queue"), (mb < 10 ? mb.toFixed(1) : fmt(Math.round(mb))) + " MB");
      $("kpi-queue").title = "replication slot " + stats.wal.slot + ", position " + stats.wal.confirmed_lsn +
        ", held back " + (stats.wal.confirmed_age_s || 0) + " s";
      $("queue-bar").style.width = Math.min(100, Math.max(mb / 10.24, 0.5)) + "%";  // full at 1 GiB
    } else if (stats.queue_usage !== undefined) {
      var pct = stats.queue_usage * 100;
      setText($("kpi-queue"), (pct < 1 && pct > 0 ? pct.toFixed(2) : Math.round(pct)) + "%");
      $("queue-bar").style.width = Math.min(100, Math.max(pct, 0.5)) + "%";
    }
    if (stats.channels) {
      var body = $("channels-body"), names = Object.keys(stats.channels).sort(), added = false;
      names.forEach(function (name) {
        if (channelRows[name]) return;
        var row = el("tr");
        row.appendChild(el("td", "mono", name));
        channelRows[name] = { row: row, count: row.appendChild(el("td", "num")), rate: row.appendChild(el("td", "num")),
                              p50: row.appendChild(el("td", "num")), p99: row.appendChild(el("td", "num")) };
        added = true;
      });
      if (added) body.replaceChildren.apply(body, names.map(function (name) { return channelRows[name].row; }));
      names.forEach(function (name) {
        var c = stats.channels[name], cells = channelRows[name];
        setText(cells.count, fmt(c.count));
        setText(cells.p50, ms(c.latency_p50_ms));
        setText(cells.p99, ms(c.latency_p99_ms));
      });
      renderChannelRates();
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
    var ticks = niceTicks(Math.max.apply(null, values)), top = ticks[ticks.length - 1];
    var left = 44, bottom = 22, plotW = width - left - 8, plotH = height - bottom - 10;
    ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, monospace";
    ctx.fillStyle = "#7d8aa3"; ctx.strokeStyle = "rgba(125,138,163,0.15)"; ctx.lineWidth = 1;
    ticks.forEach(function (tick) {
      var y = 10 + plotH - (plotH * tick) / top;
      ctx.beginPath(); ctx.moveTo(left, y); ctx.lineTo(left + plotW, y); ctx.stroke();
      ctx.textAlign = "right"; ctx.fillText(fmt(tick), left - 8, y + 4);
    });
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
    renderChannelRates();
  }

  function roundedBar(ctx, x, y, w, h) {
    var r = Math.min(3, w / 2, h / 2);
    ctx.beginPath();
    ctx.moveTo(x, y + h); ctx.lineTo(x, y + r); ctx.quadraticCurveTo(x, y, x + r, y);
    ctx.lineTo(x + w - r, y); ctx.quadraticCurveTo(x + w, y, x + w, y + r); ctx.lineTo(x + w, y + h);
    ctx.closePath(); ctx.fill();
  }

  // Round ticks from 0 to the first round value at or above max, 1, 2 or 5 times a power of
  // ten apart, at most 5 steps: max 5 -> 0..5 by 1; 25 -> 0, 5, ..., 25; 37 -> 0, 10, ..., 40.
  function niceTicks(max) {
    max = Math.max(5, max);
    var raw = max / 5, magnitude = Math.pow(10, Math.floor(Math.log10(raw))), step = 10 * magnitude;
    [1, 2, 5, 10].some(function (m) { if (m * magnitude >= raw) { step = m * magnitude; return true; } return false; });
    var ticks = [];
    for (var tick = 0; tick < max + step; tick += step) { ticks.push(tick); if (tick >= max) break; }
    return ticks;
  }

  function onState(wsState, detail) {
    var pill = $("ws-status"), text = pill.querySelector(".text");
    pill.dataset.state = wsState === "open" ? "ok" : wsState === "forbidden" || wsState === "not found" ? "bad" : "warn";
    text.textContent = wsState === "open" ? "live" : wsState === "reconnecting" && detail
      ? "reconnecting in " + (detail.retryInMs / 1000).toFixed(1) + " s" : wsState;
  }

  window.pgnotifyDashboard = {
    state: state,
    seen: function (id, database) { return state.seen.has(eventKey(id, database)); },
    niceTicks: niceTicks, channelRate: channelRate,
    latencyP50: null, latencyP99: null,
  };
  new window.pgnotify.LiveSocket(document.querySelector("[data-ws-path]").dataset.wsPath, { onFrame: onFrame, onState: onState });
  drawChart();
  setInterval(drawChart, 1000);
  window.addEventListener("resize", drawChart);
})();
