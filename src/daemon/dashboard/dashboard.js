"use strict";
// The sollol dashboard: polls /api/stats and /api/sollol/dashboard once a
// second and redraws. Names of nodes and models come from the network, so
// every text goes through textContent (never parsed as HTML); charts are drawn
// by hand on canvas. No libraries, nothing loaded from elsewhere.
(function () {
  var POLL_MS = 1000;
  var COLORS = { accent: "#58a6ff", purple: "#bc8cff", red: "#f85149", warn: "#d29922",
    teal: "#39c5bb", grid: "#2a333f", dim: "#8b98a7" };

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function clear(e) { while (e.firstChild) e.removeChild(e.firstChild); }
  function $(id) { return document.getElementById(id); }

  function fmtMs(v) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2013";
    if (v === 0) return "0";
    if (v < 1) return v.toFixed(2) + " ms";
    if (v < 1000) return Math.round(v) + " ms";
    return (v / 1000).toFixed(v < 10000 ? 2 : 1) + " s";
  }
  function fmtNum(v, digits) {
    if (v === null || v === undefined || !isFinite(v)) return "\u2013";
    if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
    if (v >= 1e4) return (v / 1e3).toFixed(1) + "k";
    return v.toFixed(digits === undefined ? 0 : digits);
  }
  function fmtAge(ms) {
    var s = ms / 1000;
    if (s < 1) return "now";
    if (s < 60) return Math.round(s) + "s ago";
    if (s < 3600) return Math.round(s / 60) + "m ago";
    return Math.round(s / 3600) + "h ago";
  }
  function fmtUptime(s) {
    s = Math.floor(s);
    var d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    return m + "m " + (s % 60) + "s";
  }

  // ---- charts -----------------------------------------------------------
  var CHARTS = [
    { id: "rate", title: "Requests / s", unit: "", lines: [
      { key: "requests", label: "requests", color: COLORS.accent, fill: true },
      { key: "errors", label: "errors", color: COLORS.red },
      { key: "retries", label: "retries", color: COLORS.warn }] },
    { id: "lat", title: "Latency", unit: "ms", lines: [
      { key: "p50_ms", label: "p50", color: COLORS.accent, fill: true },
      { key: "p95_ms", label: "p95", color: COLORS.purple }] },
    { id: "ttft", title: "Time to first token", unit: "ms", lines: [
      { key: "ttft_p50_ms", label: "p50", color: COLORS.teal, fill: true },
      { key: "ttft_p95_ms", label: "p95", color: COLORS.purple }] },
    { id: "queue", title: "Queue depth / in flight", unit: "", lines: [
      { key: "queue", label: "queued", color: COLORS.warn, fill: true },
      { key: "in_flight", label: "in flight", color: COLORS.accent }] },
    { id: "tokens", title: "Tokens generated / s", unit: "", lines: [
      { key: "tokens", label: "tokens/s", color: COLORS.teal, fill: true }] }
  ];

  function buildCharts() {
    var box = $("charts");
    CHARTS.forEach(function (c) {
      var card = el("div", "chart");
      card.id = "chart-" + c.id;
      var head = el("div", "head");
      head.appendChild(el("span", "title", c.title));
      c.nowEl = el("span", "now", "\u2013");
      head.appendChild(c.nowEl);
      card.appendChild(head);
      c.canvas = el("canvas");
      card.appendChild(c.canvas);
      var legend = el("div", "legend");
      c.lines.forEach(function (l) {
        var s = el("span");
        var sw = el("i");
        sw.style.background = l.color;
        s.appendChild(sw);
        s.appendChild(document.createTextNode(l.label));
        legend.appendChild(s);
      });
      c.spanEl = el("span", "span", "");
      legend.appendChild(c.spanEl);
      card.appendChild(legend);
      box.appendChild(card);
    });
  }

  function niceMax(v) {
    if (!(v > 0)) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }

  function drawChart(c, series) {
    var cv = c.canvas, dpr = window.devicePixelRatio || 1;
    var w = cv.clientWidth, h = cv.clientHeight;
    if (!w || !h) return;
    if (cv.width !== Math.round(w * dpr) || cv.height !== Math.round(h * dpr)) {
      cv.width = Math.round(w * dpr);
      cv.height = Math.round(h * dpr);
    }
    var g = cv.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    var max = 0, n = 0;
    c.lines.forEach(function (l) {
      var a = series[l.key] || [];
      n = Math.max(n, a.length);
      a.forEach(function (v) { if (v !== null && v > max) max = v; });
    });
    max = niceMax(max);
    var padL = 46, padB = 2, padT = 4, pw = w - padL - 2, ph = h - padT - padB;
    g.strokeStyle = COLORS.grid;
    g.lineWidth = 1;
    g.fillStyle = COLORS.dim;
    g.font = "10px system-ui, sans-serif";
    g.textAlign = "right";
    g.textBaseline = "middle";
    [0, 0.5, 1].forEach(function (f) {
      var y = padT + ph - f * ph;
      g.beginPath();
      g.moveTo(padL, Math.round(y) + 0.5);
      g.lineTo(w - 2, Math.round(y) + 0.5);
      g.stroke();
      var label = c.unit === "ms" ? fmtMs(max * f) : fmtNum(max * f, max < 10 ? 1 : 0);
      g.fillText(label, padL - 4, Math.min(Math.max(y, 6), h - 6));
    });
    if (n < 2) return;
    c.lines.forEach(function (l) {
      var a = series[l.key] || [];
      var x = function (i) { return padL + (i / (n - 1)) * pw; };
      var y = function (v) { return padT + ph - (v / max) * ph; };
      // Draw runs of non-null points; nulls are gaps (no sample that second).
      var runs = [], run = [];
      a.forEach(function (v, i) {
        if (v === null || v === undefined) { if (run.length) runs.push(run); run = []; }
        else run.push([x(i), y(v)]);
      });
      if (run.length) runs.push(run);
      runs.forEach(function (r) {
        if (l.fill && r.length > 1) {
          g.beginPath();
          g.moveTo(r[0][0], padT + ph);
          r.forEach(function (p) { g.lineTo(p[0], p[1]); });
          g.lineTo(r[r.length - 1][0], padT + ph);
          g.closePath();
          g.globalAlpha = 0.18;
          g.fillStyle = l.color;
          g.fill();
          g.globalAlpha = 1;
        }
        g.beginPath();
        g.strokeStyle = l.color;
        g.lineWidth = 1.5;
        r.forEach(function (p, i) { if (i) g.lineTo(p[0], p[1]); else g.moveTo(p[0], p[1]); });
        if (r.length === 1) { g.arc(r[0][0], r[0][1], 1.5, 0, 2 * Math.PI); }
        g.stroke();
      });
    });
  }

  function lastValue(a) {
    for (var i = a.length - 2; i >= 0 && i >= a.length - 6; i--) if (a[i] !== null) return a[i];
    return null;
  }

  // ---- panels -----------------------------------------------------------
  function kpi(box, label, value, unit, cls) {
    var k = el("div", "kpi" + (cls ? " " + cls : ""));
    k.appendChild(el("div", "label", label));
    var v = el("div", "value", value);
    if (unit) v.appendChild(el("small", null, unit));
    k.appendChild(v);
    box.appendChild(k);
  }

  function nodeStatus(n) {
    if (n.state === "down") return ["down", "down"];
    if (n.state === "misconfigured") return ["misconfigured", "misconfigured"];
    var b = n.breaker && n.breaker.state;
    if (b === "open") return ["breaker", "breaker open"];
    if (b === "half-open") return ["breaker", "half-open"];
    return ["up", "up"];
  }

  // Requests per second per node, from the change of its counter between polls.
  var prevTotals = {}, nodeRates = {};
  function updateNodeRates(stats) {
    var now = Date.now();
    (stats.nodes || []).forEach(function (n) {
      var p = prevTotals[n.name];
      if (p && now > p.t) nodeRates[n.name] = Math.max(0, (n.requests_total - p.v) * 1000 / (now - p.t));
      prevTotals[n.name] = { v: n.requests_total, t: now };
    });
  }

  function renderNodes(stats) {
    var box = $("nodes");
    clear(box);
    var nodes = stats.nodes || [];
    var up = nodes.filter(function (n) { return n.state === "up"; }).length;
    $("nodes-hint").textContent = up + " of " + nodes.length + " up";
    if (!nodes.length) { box.appendChild(el("div", "empty", "no nodes configured")); return; }
    nodes.forEach(function (n) {
      var st = nodeStatus(n);
      var card = el("div", "node " + st[0]);
      card.setAttribute("data-node", n.name);
      card.setAttribute("data-state", n.state);
      var r1 = el("div", "row1");
      r1.appendChild(el("span", "name", n.name));
      r1.appendChild(el("span", "badge " + st[0], st[1]));
      if (n.url) { // absent for a key restricted to some models
        var url = el("span", "url", n.url);
        url.title = n.url;
        r1.appendChild(url);
      }
      card.appendChild(r1);

      var s = el("div", "stats");
      function stat(label, value) {
        var sp = el("span", null, label + " ");
        sp.appendChild(el("b", null, value));
        s.appendChild(sp);
      }
      stat("probe", n.state === "up" && n.rtt_ms > 0 ? fmtMs(n.rtt_ms) : "\u2013");
      stat("slots", n.in_flight + "/" + n.max_concurrent);
      stat("req/s", n.name in nodeRates ? fmtNum(nodeRates[n.name], 1) : "\u2013");
      stat("requests", fmtNum(n.requests_total));
      stat("failures", fmtNum(n.failures_total));
      if (n.ollama_version && n.state === "up") stat("ollama", n.ollama_version);
      card.appendChild(s);

      var max = Math.max(n.max_concurrent || 1, 1);
      if (max <= 32) {
        var slots = el("div", "slots");
        var shown = Math.max(max, Math.min(n.in_flight, 48));
        for (var i = 0; i < shown; i++)
          slots.appendChild(el("span", "slot" + (i < n.in_flight ? (i >= max ? " over" : " busy") : "")));
        slots.title = n.in_flight + " of " + max + " slots busy";
        card.appendChild(slots);
      } else {
        var bar = el("div", "slotbar");
        var fill = el("div");
        fill.style.width = Math.min(100, (100 * n.in_flight) / max) + "%";
        bar.appendChild(fill);
        card.appendChild(bar);
      }

      var models = el("div", "models");
      var list = (n.models || []).filter(function (m) { return m.installed || m.loaded; });
      list.sort(function (a, b) { return (b.loaded - a.loaded) || (a.name < b.name ? -1 : 1); });
      list.forEach(function (m) {
        var chip = el("span", "model" + (m.loaded ? " loaded" : "") + (m.gone ? " gone" : ""), m.name);
        chip.title = (m.loaded ? "loaded" : "installed") + (m.in_flight ? ", " + m.in_flight + " running" : "");
        if (m.samples > 0 && m.gen_tps > 0) chip.appendChild(el("span", "tps", fmtNum(m.gen_tps, 1) + " tok/s"));
        models.appendChild(chip);
      });
      if (!list.length) models.appendChild(el("span", "empty", n.state === "up" ? "no models" : "models unknown"));
      card.appendChild(models);
      if (n.state !== "up" && n.last_error) card.appendChild(el("div", "err", n.last_error));
      box.appendChild(card);
    });
  }

  function renderDecisions(dash) {
    var body = $("decisions");
    clear(body);
    var list = dash.decisions || [];
    $("dec-hint").textContent = fmtNum(dash.decisions_total || 0) + " so far";
    if (!list.length) {
      var tr = el("tr"), td = el("td", "empty", "no requests routed yet");
      td.colSpan = 5;
      tr.appendChild(td);
      body.appendChild(tr);
      return;
    }
    list.slice(0, 12).forEach(function (d) {
      var tr = el("tr");
      tr.appendChild(el("td", "age", fmtAge(d.age_ms)));
      tr.appendChild(el("td", null, d.model || "\u2013"));
      // how "continue": the answer's node failed mid-stream, this node goes on with it
      tr.appendChild(el("td", d.node ? (d.attempt > 1 ? "dnode retry" : "dnode") : "dnode none",
        d.node ? (d.how === "continue" ? "\u21aa " + d.node + " (continued)" : d.node) : "none"));
      tr.appendChild(el("td", "why", d.reason));
      tr.appendChild(el("td", "id", d.id));
      body.appendChild(tr);
    });
  }

  function fmtBytes(v) {
    if (!(v > 0)) return "0";
    var u = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return v.toFixed(v < 10 && i ? 1 : 0) + " " + u[i];
  }

  // /api/stats "rpc": the RPC backends (llama.cpp rpc-server) and the
  // coordinator of a sharded model, when the daemon has them.
  function renderRpc(stats) {
    var box = $("rpc");
    clear(box);
    var rpc = stats.rpc;
    if (!rpc || typeof rpc !== "object" || rpc.enabled === false) {
      box.appendChild(el("div", "empty", "no sharded models configured"));
      return;
    }
    var co = rpc.coordinator;
    if (co && typeof co === "object") {
      var head = el("div", "rpc-backend");
      head.appendChild(el("b", null, "coordinator"));
      var st = String(co.state || "unknown");
      var cls = st === "ready" ? "" : st === "failed" ? "down" : st === "stopped" ? "misconfigured" : "breaker";
      head.appendChild(el("span", "badge " + cls, st));
      if (co.model) head.appendChild(el("span", null, co.model));
      box.appendChild(head);
      var kv = el("div", "kv");
      function row(k, v) {
        if (v === undefined || v === null || v === "") return;
        kv.appendChild(el("span", "k", k));
        kv.appendChild(el("span", null, v));
      }
      row("restarts", co.restarts);
      if (co.uptime_s !== undefined && co.uptime_s !== null && st === "ready") row("uptime", fmtUptime(co.uptime_s));
      if (co.next_backoff_ms) row("next start in", fmtMs(co.next_backoff_ms));
      row("reason", co.reason);
      row("last exit", co.last_exit);
      if (co.pid) row("pid / port", co.pid + " / " + co.port);
      box.appendChild(kv);
    }
    var backends = Array.isArray(rpc.backends) ? rpc.backends : [];
    var title = el("div", "rpc-title", "RPC backends" + (rpc.reference_version ? " \u00b7 rpc " + rpc.reference_version : ""));
    box.appendChild(title);
    if (!backends.length) box.appendChild(el("div", "empty", "no RPC backends"));
    backends.forEach(function (b) {
      var r = el("div", "rpc-backend");
      r.appendChild(el("b", null, b.address || b.name || "backend"));
      // The row's state as the coordinator judges it (up, in_use, down,
      // excluded, unknown); older daemons only had reachable/excluded.
      var state = b.state || (b.reachable === true ? "up" : b.reachable === false ? "down" : "unknown");
      if (!b.state && b.excluded) state = "excluded";
      var label = state === "in_use" ? "in use" : state === "up" ? "up, idle" : state;
      r.appendChild(el("span", "badge " + (state === "up" || state === "in_use" ? "" : state === "down" ? "down" : "misconfigured"), label));
      if (!b.state && b.in_use) r.appendChild(el("span", "badge", "in use"));
      var info = [];
      if (b.version) info.push("v" + b.version);
      if (b.devices) info.push(b.devices + " device" + (b.devices > 1 ? "s" : ""));
      if (b.total_bytes) info.push(fmtBytes(b.free_bytes) + " free of " + fmtBytes(b.total_bytes));
      if (b.local) info.push("local");
      if (info.length) r.appendChild(el("span", "url", info.join(" \u00b7 ")));
      box.appendChild(r);
      if (b.excluded && b.excluded_why) box.appendChild(el("div", "err", b.excluded_why));
      if (state === "down") {
        var since = typeof b.down_for_s === "number" ? "down for " + Math.round(b.down_for_s) + " s" : "down";
        box.appendChild(el("div", "err", since + (b.last_error ? ": " + b.last_error : "")));
      }
    });
    var locals = Array.isArray(rpc.local_rpc_servers) ? rpc.local_rpc_servers : [];
    if (locals.length) {
      box.appendChild(el("div", "rpc-title", "local rpc-server children"));
      locals.forEach(function (l) {
        var r = el("div", "rpc-backend");
        r.appendChild(el("b", null, ":" + l.port));
        r.appendChild(el("span", "badge " + (l.pid ? "" : "down"), l.pid ? "running" : "stopped"));
        r.appendChild(el("span", "url", "restarts " + (l.restarts || 0) + (l.cache ? " \u00b7 cache" : "")));
        box.appendChild(r);
      });
    }
  }

  function renderTop(stats, dash) {
    var meta = $("meta");
    clear(meta);
    function part(label, value) {
      meta.appendChild(document.createTextNode(label + " "));
      meta.appendChild(el("b", null, value));
      meta.appendChild(document.createTextNode("   \u00b7   "));
    }
    part("version", stats.version);
    part("uptime", fmtUptime(stats.uptime_s || 0));
    part("routing", stats.routing);
    part("requests", fmtNum(stats.requests_total || 0));
    part("retries", fmtNum(stats.retries_total || 0));
    if (meta.lastChild) meta.removeChild(meta.lastChild);

    var box = $("kpis");
    clear(box);
    var nodes = stats.nodes || [];
    var up = nodes.filter(function (n) { return n.state === "up"; }).length;
    kpi(box, "Nodes up", up + "/" + nodes.length, "", up === nodes.length ? "good" : up ? "warn" : "bad");
    var lm = dash.last_minute || {};
    kpi(box, "Requests", fmtNum(lm.rate || 0, 1), "/s");
    var er = (lm.error_rate || 0) * 100;
    kpi(box, "Errors", er.toFixed(er && er < 10 ? 1 : 0), "%", er >= 5 ? "bad" : er > 0 ? "warn" : "good");
    kpi(box, "Latency p50", fmtMs(lm.p50_ms), "");
    kpi(box, "Latency p95", fmtMs(lm.p95_ms), "");
    kpi(box, "TTFT p50", fmtMs(lm.ttft_p50_ms), "");
    var q = stats.queue ? stats.queue.length : 0;
    kpi(box, "Queued", String(q), "", q > 0 ? "warn" : "");
    kpi(box, "In flight", String(stats.requests_live || 0), "");
    kpi(box, "Tokens", fmtNum(lm.tokens_per_s || 0, 1), "/s");
  }

  // Before the daemon has run for the whole window, the charts start at its
  // start (at least a minute), so early traffic is not squeezed to the edge.
  function trimSeries(series, uptime) {
    var keep = Math.max(60, Math.ceil(uptime || 0) + 1), out = {};
    Object.keys(series).forEach(function (k) {
      var a = series[k] || [];
      out[k] = a.length > keep ? a.slice(a.length - keep) : a;
    });
    return out;
  }

  function render(stats, dash) {
    renderTop(stats, dash);
    var s = trimSeries(dash.series || {}, stats.uptime_s);
    CHARTS.forEach(function (c) {
      drawChart(c, s);
      var len = (s[c.lines[0].key] || []).length;
      c.spanEl.textContent = "last " + (len < 120 ? len + " s" : Math.round(len / 60) + " min");
      var a = s[c.lines[0].key] || [];
      var v = lastValue(a);
      c.nowEl.textContent = c.unit === "ms" ? fmtMs(v) : fmtNum(v === null ? 0 : v, 0);
    });
    renderNodes(stats);
    renderDecisions(dash);
    renderRpc(stats);
  }

  function getJson(url) {
    var ctl = typeof AbortController === "function" ? new AbortController() : null;
    var timer = ctl ? setTimeout(function () { ctl.abort(); }, 3000) : null;
    return fetch(url, { cache: "no-store", signal: ctl ? ctl.signal : undefined })
      .then(function (r) {
        if (timer) clearTimeout(timer);
        if (!r.ok) throw new Error(url + ": HTTP " + r.status);
        return r.json();
      });
  }

  var last = { stats: null, dash: null };
  var busy = false;
  function setLive(ok, text) {
    var live = $("live");
    live.className = "live " + (ok ? "ok" : "bad");
    $("live-text").textContent = text;
  }

  function poll() {
    if (busy) return;
    busy = true;
    Promise.all([getJson("/api/stats"), getJson("/api/sollol/dashboard")])
      .then(function (res) {
        last.stats = res[0];
        last.dash = res[1];
        updateNodeRates(res[0]);
        render(res[0], res[1]);
        setLive(true, "live \u00b7 " + new Date().toLocaleTimeString());
      })
      .catch(function (e) {
        setLive(false, "daemon unreachable (" + (e && e.message ? e.message : "error") + ")");
      })
      .then(function () { busy = false; });
  }

  buildCharts();
  window.addEventListener("resize", function () {
    if (last.stats) render(last.stats, last.dash);
  });
  poll();
  setInterval(poll, POLL_MS);
})();
