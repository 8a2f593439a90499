// ml-dash serve: the page. Plain JS, no build step, no library: charts are
// drawn on canvas from the server's downsampled series (/api/series), and
// live points come from /api/events (server-sent events).
"use strict";

const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2"];
const FINAL = ["COMPLETED", "FAILED", "CANCELLED"];

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) if (kid !== null && kid !== undefined) el.append(kid);
  return el;
}
const enc = encodeURIComponent;
async function api(path) {
  const r = await fetch(path, { credentials: "same-origin" });
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}
function fmt(v) {
  if (typeof v !== "number") return v === null || v === undefined ? "" : String(v);
  if (Number.isInteger(v) && Math.abs(v) < 1e15) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e6) ? v.toExponential(3) : v.toPrecision(4).replace(/\.?0+$/, "");
}
function fmtDur(s) {
  if (s === null || s === undefined) return "";
  if (s < 60) return s.toFixed(1) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + Math.round(s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.round((s % 3600) / 60) + " min";
}
function badge(r) {
  const crashed = r.status === "RUNNING" && (r.liveness === "dead" || r.liveness === "stale");
  const text = crashed ? `${r.status} (${r.liveness})` : r.status || "unknown";
  const cls = crashed ? r.liveness : r.status || "unknown";
  return h("span", { class: "status s-" + cls, "data-status": r.status || "", "data-liveness": r.liveness, text });
}
function params() { return new URLSearchParams(location.search); }
function setParams(p) { history.replaceState(null, "", location.pathname + (p.toString() ? "?" + p : "")); }

// ---- charts -------------------------------------------------------------

class Chart {
  constructor(title, opts) {
    this.opts = opts; // {metric, load(range) -> Promise<[{label,x,y}]>}
    this.series = [];
    this.view = null; // zoomed x range
    this.logy = false;
    this.canvas = h("canvas", { width: 560, height: 300 });
    this.tip = h("div", { class: "tip" });
    this.legend = h("div", { class: "legend" });
    this.el = h("div", { class: "chart", "data-metric": opts.metric, "data-ready": "0" },
      h("h3", { text: title }), this.canvas, this.legend, this.tip);
    this.pad = { l: 58, r: 10, t: 8, b: 24 };
    this.width = this.canvas.width - this.pad.l - this.pad.r;
    let drag = null;
    this.canvas.addEventListener("mousedown", e => { drag = { x: e.offsetX, now: e.offsetX }; });
    this.canvas.addEventListener("mousemove", e => {
      if (drag) { drag.now = e.offsetX; this.draw(drag); } else this.hover(e.offsetX, e.offsetY);
    });
    this.canvas.addEventListener("mouseleave", () => { this.tip.style.display = "none"; });
    this.canvas.addEventListener("mouseup", e => {
      const d = drag; drag = null;
      if (!d || Math.abs(e.offsetX - d.x) < 4) { this.draw(); return; }
      const a = this.xOfPx(Math.min(d.x, e.offsetX)), b = this.xOfPx(Math.max(d.x, e.offsetX));
      this.view = [a, b];
      this.reload();
    });
    this.canvas.addEventListener("dblclick", () => { this.view = null; this.reload(); });
  }
  async reload() {
    try {
      this.series = await this.opts.load(this.view, this.width);
      this.err = null;
    } catch (e) { this.err = e.message; }
    this.draw();
    this.el.dataset.ready = "1";
  }
  // New raw points (live): [{label, x, y}]; a point at or before a series'
  // last x is one the last fetch already had.
  append(label, x, y) {
    const s = this.series.find(s => s.label === label);
    if (!s || (s.x.length && x <= s.x[s.x.length - 1])) return;
    if (this.view && x > this.view[1]) return;
    s.x.push(x); s.y.push(y);
  }
  ranges() {
    let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
    for (const s of this.series) for (let i = 0; i < s.x.length; i++) {
      const y = this.ty(s.y[i]);
      if (!isFinite(y) || !isFinite(s.x[i])) continue;
      x0 = Math.min(x0, s.x[i]); x1 = Math.max(x1, s.x[i]); y0 = Math.min(y0, y); y1 = Math.max(y1, y);
    }
    if (this.view) [x0, x1] = this.view;
    if (!isFinite(x0)) return null;
    if (x0 === x1) { x0 -= 0.5; x1 += 0.5; }
    if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
    const m = (y1 - y0) * 0.04;
    return { x0, x1, y0: y0 - m, y1: y1 + m };
  }
  ty(y) { return this.logy ? (y > 0 ? Math.log10(y) : NaN) : y; }
  xOfPx(px) { const r = this.r; return r.x0 + (px - this.pad.l) / this.width * (r.x1 - r.x0); }
  draw(drag) {
    const c = this.canvas, g = c.getContext("2d"), p = this.pad;
    const W = c.width, H = c.height, ph = H - p.t - p.b;
    g.clearRect(0, 0, W, H);
    g.font = "11px sans-serif";
    this.el.dataset.series = this.series.map(s => s.label).join(",");
    this.el.dataset.points = this.series.map(s => s.x.length).join(",");
    this.el.dataset.last = this.series.map(s => s.x.length ? s.x[s.x.length - 1] : "").join(",");
    this.el.dataset.view = this.view ? this.view.map(fmt).join(",") : "";
    const r = this.r = this.ranges();
    if (this.err || !r) {
      g.fillStyle = "#888"; g.fillText(this.err || "no points", p.l + 10, p.t + 20);
      return;
    }
    const sx = x => p.l + (x - r.x0) / (r.x1 - r.x0) * this.width;
    const sy = y => p.t + ph - (y - r.y0) / (r.y1 - r.y0) * ph;
    g.strokeStyle = "#ccc"; g.fillStyle = "#555"; g.lineWidth = 1;
    for (const t of ticks(r.y0, r.y1, 5)) {
      const y = Math.round(sy(t)) + 0.5;
      g.beginPath(); g.moveTo(p.l, y); g.lineTo(W - p.r, y); g.stroke();
      g.textAlign = "right"; g.fillText(fmt(this.logy ? 10 ** t : t), p.l - 4, y + 4);
    }
    for (const t of ticks(r.x0, r.x1, 6)) {
      const x = Math.round(sx(t)) + 0.5;
      g.beginPath(); g.moveTo(x, p.t); g.lineTo(x, p.t + ph); g.stroke();
      g.textAlign = "center"; g.fillText(fmt(t), x, H - 8);
    }
    g.save(); g.beginPath(); g.rect(p.l, p.t, this.width, ph); g.clip();
    this.series.forEach((s, k) => {
      g.strokeStyle = PALETTE[k % PALETTE.length]; g.lineWidth = 1.5; g.beginPath();
      let pen = false;
      for (let i = 0; i < s.x.length; i++) {
        const y = this.ty(s.y[i]);
        if (!isFinite(y)) { pen = false; continue; }
        const X = sx(s.x[i]), Y = sy(y);
        if (pen) g.lineTo(X, Y); else { g.moveTo(X, Y); pen = true; }
      }
      if (s.x.length === 1) g.arc(sx(s.x[0]), sy(this.ty(s.y[0])), 2, 0, 7);
      g.stroke();
    });
    g.restore();
    if (drag) { g.fillStyle = "rgba(33,150,243,.15)"; g.fillRect(Math.min(drag.x, drag.now), p.t, Math.abs(drag.now - drag.x), ph); }
    this.legend.replaceChildren(...this.series.map((s, k) =>
      h("span", { style: "color:" + PALETTE[k % PALETTE.length], text: "— " + s.label })));
  }
  hover(px, py) {
    if (!this.r || px < this.pad.l) { this.tip.style.display = "none"; return; }
    const x = this.xOfPx(px);
    const lines = [];
    for (const s of this.series) {
      const i = nearest(s.x, x);
      if (i >= 0) lines.push(`${s.label}: ${fmt(s.y[i])}  (x ${fmt(s.x[i])})`);
    }
    this.tip.textContent = lines.join("\n");
    this.tip.style.display = lines.length ? "block" : "none";
    this.tip.style.left = (px + 14) + "px"; this.tip.style.top = (py + 10) + "px";
  }
}
function nearest(xs, x) {
  if (!xs.length) return -1;
  let lo = 0, hi = xs.length - 1;
  while (hi - lo > 1) { const m = (lo + hi) >> 1; if (xs[m] < x) lo = m; else hi = m; }
  return Math.abs(xs[lo] - x) <= Math.abs(xs[hi] - x) ? lo : hi;
}
function ticks(a, b, n) {
  const step0 = (b - a) / n, mag = 10 ** Math.floor(Math.log10(step0)), f = step0 / mag;
  const step = (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag, out = [];
  for (let t = Math.ceil(a / step) * step; t <= b + step * 1e-9; t += step) out.push(Math.abs(t) < step * 1e-9 ? 0 : t);
  return out;
}

// ---- pages ----------------------------------------------------------------

const main = document.getElementById("main");

async function runsPage() {
  document.getElementById("crumb").textContent = "runs";
  const q = params();
  const filter = h("input", { type: "search", placeholder: "filter (prefix, status)", value: q.get("q") || "", id: "filter" });
  const body = h("tbody");
  const metricSel = h("select", { id: "cmp-metric" });
  const compare = h("button", { text: "overlay selected", onclick: () => {
    const sel = [...body.querySelectorAll("input:checked")].map(c => c.value);
    if (!sel.length) return;
    location.href = "/runs/" + sel[0].split("/").map(enc).join("/") + "?metric=" + enc(metricSel.value) + "&runs=" + sel.map(enc).join(",");
  }});
  const table = h("table", { id: "runs" },
    h("thead", {}, h("tr", {}, ["", "prefix", "status", "start", "duration", "last values"].map(t => h("th", { text: t })))), body);
  main.replaceChildren(h("div", { class: "controls" }, filter, h("span", {}, "metric ", metricSel, " ", compare)), table);
  let runs = [];
  const render = () => {
    const f = filter.value.toLowerCase();
    const checked = new Set([...body.querySelectorAll("input:checked")].map(c => c.value));
    body.replaceChildren(...runs.filter(r => !f || (r.prefix + " " + r.status + " " + r.liveness).toLowerCase().includes(f)).map(r => {
      const last = Object.entries(r.last || {}).flatMap(([m, d]) => Object.entries(d)
        .filter(([k]) => k !== "_ts").map(([k, v]) => `${m}.${k}=${fmt(v)}`)).slice(0, 8).join("  ");
      return h("tr", { "data-prefix": r.prefix, "data-crashed": r.liveness === "dead" || r.liveness === "stale" ? "1" : null },
        h("td", {}, h("input", { type: "checkbox", value: r.prefix, checked: checked.has(r.prefix) })),
        h("td", {}, h("a", { href: "/runs/" + r.prefix.split("/").map(enc).join("/"), text: r.prefix })),
        h("td", {}, badge(r)), h("td", { text: (r.started_at || "").replace("T", " ").slice(0, 19) }),
        h("td", { class: "num", text: fmtDur(r.duration_s) }), h("td", { text: last }));
    }));
    const q = params(); if (f) q.set("q", filter.value); else q.delete("q"); setParams(q);
  };
  filter.addEventListener("input", render);
  const refresh = async () => {
    runs = await api("/api/runs");
    const names = [...new Set(runs.flatMap(r => Object.keys(r.last || {})))].sort();
    if (metricSel.options.length !== names.length) metricSel.replaceChildren(...names.map(n => h("option", { value: n, text: n })));
    render();
    main.dataset.ready = "1";
  };
  await refresh();
  setInterval(refresh, 3000);
}

async function runPage(prefix) {
  const q = params();
  const d = await api("/api/runs/" + prefix.split("/").map(enc).join("/"));
  document.getElementById("crumb").textContent = "/ " + prefix;
  document.title = prefix + " · ml-dash";
  const state = { x: q.get("x") || "step", logy: q.get("logy") === "1", smooth: +(q.get("smooth") || 1) };
  const save = () => {
    const p = params();
    p.set("x", state.x); state.logy ? p.set("logy", "1") : p.delete("logy");
    state.smooth > 1 ? p.set("smooth", state.smooth) : p.delete("smooth"); setParams(p);
  };
  const status = h("span", { id: "status" }, badge(d));
  const times = h("span", { id: "times", text: `started ${(d.started_at || "?").replace("T", " ").slice(0, 19)} · ${fmtDur(d.duration_s)}` });
  const xSel = h("select", { id: "x" }, ["step", "index", "time"].map(v => h("option", { value: v, text: "x: " + v, selected: v === state.x })));
  const logy = h("input", { type: "checkbox", id: "logy", checked: state.logy });
  const smooth = h("input", { type: "number", id: "smooth", min: 1, value: state.smooth, style: "width:5em" });
  const charts = [];
  const chartsEl = h("div", { class: "charts", id: "charts" });
  const seriesOf = (run, metric, fields) => async (view, width) => {
    let url = `/api/series?run=${enc(run)}&metric=${enc(metric)}&x=${state.x}&width=${width}&smooth=${state.smooth}`;
    if (fields) url += "&fields=" + fields.map(enc).join(",");
    if (view) url += `&x0=${view[0]}&x1=${view[1]}`;
    const s = await api(url);
    return s.series.map(f => ({ label: f.field, field: f.field, x: f.x, y: f.y, t0: s.t0 }));
  };
  for (const m of d.metrics) {
    const c = new Chart(m.name, { metric: m.name, load: seriesOf(prefix, m.name) });
    charts.push(c); chartsEl.append(c.el);
  }
  // The overlay: one metric field of several runs (?metric=M&runs=a,b).
  const overlayEl = h("div", { class: "charts", id: "overlay" });
  const om = h("input", { type: "text", id: "ov-metric", placeholder: "metric", value: q.get("metric") || "" });
  const of = h("input", { type: "text", id: "ov-field", placeholder: "field (default: first)", value: q.get("field") || "" });
  const or = h("input", { type: "text", id: "ov-runs", placeholder: "runs a,b", value: q.get("runs") || prefix, style: "min-width:30em" });
  let overlay = null;
  const showOverlay = async () => {
    overlayEl.replaceChildren(); overlay = null;
    const metric = om.value.trim(); if (!metric) return;
    const runs = or.value.split(",").map(s => s.trim()).filter(Boolean);
    const p = params(); p.set("metric", metric); p.set("runs", runs.join(",")); of.value ? p.set("field", of.value) : p.delete("field"); setParams(p);
    let field = of.value.trim();
    if (!field) { const m = d.metrics.find(m => m.name === metric); field = m ? m.fields.find(f => f !== "step" && f !== "_ts") : null; }
    if (!field) field = "value";
    overlay = new Chart(`${metric}.${field}: ${runs.length} runs`, { metric: metric, load: async (view, width) => {
      const all = await Promise.all(runs.map(r => seriesOf(r, metric, [field])(view, width).then(s => s.map(x => ({ ...x, label: r, run: r })), () => [])));
      return all.flat();
    }});
    overlay.el.id = "overlay-chart"; overlay.logy = state.logy; overlayEl.append(overlay.el); overlay.reload();
  };
  const all = () => overlay ? charts.concat([overlay]) : charts;
  xSel.addEventListener("change", () => { state.x = xSel.value; save(); all().forEach(c => { c.view = null; c.reload(); }); });
  logy.addEventListener("change", () => { state.logy = logy.checked; save(); all().forEach(c => { c.logy = state.logy; c.draw(); }); });
  smooth.addEventListener("change", () => { state.smooth = Math.max(1, +smooth.value | 0); save(); all().forEach(c => c.reload()); });
  // Params, filterable.
  const pf = h("input", { type: "search", placeholder: "filter params", id: "param-filter" });
  const pbody = h("tbody");
  const renderParams = () => pbody.replaceChildren(...Object.entries(d.params || {})
    .filter(([k, v]) => (k + " " + JSON.stringify(v)).toLowerCase().includes(pf.value.toLowerCase()))
    .map(([k, v]) => h("tr", {}, h("td", { text: k }), h("td", { text: typeof v === "string" ? v : JSON.stringify(v) }))));
  pf.addEventListener("input", renderParams); renderParams();
  // Logs: level filter, search, paged.
  const level = h("select", { id: "log-level" }, ["debug", "info", "warn", "error", "fatal"].map(l => h("option", { value: l, text: l + "+" })));
  const search = h("input", { type: "search", placeholder: "search logs", id: "log-search" });
  const logsEl = h("div", { class: "logs", id: "logs" });
  const more = h("button", { text: "more", style: "display:none" });
  let logNext = 0;
  const RANK = { debug: 0, info: 1, warn: 2, warning: 2, error: 3, fatal: 4 };
  const logRow = l => h("div", { class: "l-" + (l.level || "info").toLowerCase() },
    `${(l.timestamp || "").replace("T", " ").slice(0, 23)} ${(l.level || "").toUpperCase().padEnd(5)} ${typeof l.message === "string" ? l.message : JSON.stringify(l.message)}${l.metadata ? " " + JSON.stringify(l.metadata) : ""}`);
  const logMatch = l => (RANK[(l.level || "info").toLowerCase()] ?? 1) >= RANK[level.value] && (!search.value || JSON.stringify(l).toLowerCase().includes(search.value.toLowerCase()));
  const loadLogs = async reset => {
    if (reset) { logsEl.replaceChildren(); logNext = 0; }
    const r = await api(`/api/logs?run=${enc(prefix)}&offset=${logNext}&limit=500&level=${level.value}&q=${enc(search.value)}`);
    logsEl.append(...r.lines.map(l => logRow(l.line))); logNext = r.next; more.style.display = r.eof ? "none" : "";
  };
  level.addEventListener("change", () => loadLogs(true)); search.addEventListener("input", () => loadLogs(true));
  more.addEventListener("click", () => loadLogs(false));
  // Tracks.
  const tracksEl = h("div", { id: "tracks" });
  for (const t of d.tracks) {
    const r = await api(`/api/tracks?run=${enc(prefix)}&topic=${enc(t.topic)}&limit=200`);
    const rows = r.lines.map(l => l.line);
    const cols = [...new Set(rows.flatMap(x => Object.keys(x.data || x)))];
    tracksEl.append(h("h3", { text: t.topic }), h("table", { "data-topic": t.topic },
      h("thead", {}, h("tr", {}, cols.map(c => h("th", { text: c })))),
      h("tbody", {}, rows.map(x => h("tr", {}, cols.map(c => { const v = (x.data || x)[c]; return h("td", { text: typeof v === "object" ? JSON.stringify(v) : fmt(v) }); }))))));
  }
  // Files.
  const filesEl = h("div", { id: "files" });
  for (const f of d.files) {
    const src = `/api/files?run=${enc(prefix)}&id=${enc(f.id)}`;
    const row = h("div", { class: "file", "data-kind": f.kind },
      h("div", {}, h("b", { text: (f.path && f.path !== "/" ? f.path.replace(/\/?$/, "/") : "") + f.filename }), ` ${f.size} bytes `, h("a", { href: src + "&download=1", text: "download" })));
    if (f.kind === "image") row.append(h("img", { class: "preview", src, alt: f.filename }));
    else if (f.kind === "text") {
      const pre = h("pre", { class: "preview" }); row.append(pre);
      fetch(src + "&head=65536").then(r => r.text()).then(t => {
        try { if (/\.json$/i.test(f.filename)) t = JSON.stringify(JSON.parse(t), null, 2); } catch (e) { /* shown as it is */ }
        pre.textContent = t;
      });
    }
    filesEl.append(row);
  }
  const section = (title, ...kids) => h("section", {}, h("h2", { text: title }), ...kids);
  main.replaceChildren(...[
    h("div", { class: "controls" }, h("b", { text: prefix }), status, times),
    h("div", { class: "controls" }, xSel, h("label", {}, logy, " log y"), h("label", {}, "smoothing ", smooth), h("span", { text: "drag: zoom · double-click: reset" })),
    section("Metrics", chartsEl),
    section("Overlay", h("div", { class: "controls" }, om, of, or, h("button", { text: "overlay", id: "ov-go", onclick: showOverlay })), overlayEl),
    section("Parameters", pf, h("table", { id: "params" }, pbody)),
    section("Logs", h("div", { class: "controls" }, level, search), logsEl, more),
    d.tracks.length ? section("Tracks", tracksEl) : null,
    d.files.length ? section("Files", filesEl) : null].filter(Boolean));
  charts.forEach(c => { c.logy = state.logy; });
  await Promise.all(charts.map(c => c.reload()));
  if (om.value) await showOverlay();
  await loadLogs(true);
  // Live: new points, logs and the status, without reload.
  const es = new EventSource("/api/events?run=" + enc(prefix));
  const reloads = new Set();
  const soon = c => { if (!reloads.has(c)) { reloads.add(c); setTimeout(() => { reloads.delete(c); c.reload(); }, 250); } };
  es.addEventListener("point", e => {
    const v = JSON.parse(e.data), data = v.data || {};
    for (const c of all()) {
      if (c.opts.metric !== v.metric) continue;
      if (state.smooth > 1 || c === overlay) { soon(c); continue; }
      const t0 = c.series.length ? c.series[0].t0 || 0 : 0;
      const x = state.x === "index" ? v.index : state.x === "time" ? data._ts - t0 : (data.step ?? v.index);
      for (const s of c.series) if (typeof data[s.field] === "number") c.append(s.label, x, data[s.field]);
      c.draw();
    }
    if (!charts.some(c => c.opts.metric === v.metric)) {
      const c = new Chart(v.metric, { metric: v.metric, load: seriesOf(prefix, v.metric) });
      c.logy = state.logy; charts.push(c); chartsEl.append(c.el); c.reload();
    }
  });
  es.addEventListener("grew", e => { const m = JSON.parse(e.data).metric; all().filter(c => c.opts.metric === m).forEach(soon); });
  es.addEventListener("log", e => { const l = JSON.parse(e.data); if (logMatch(l)) logsEl.append(logRow(l)); });
  es.addEventListener("status", e => {
    const s = JSON.parse(e.data); if (!s) return;
    status.replaceChildren(badge(s));
    document.getElementById("live").textContent = FINAL.includes(s.status) ? "" : "● live";
  });
  main.dataset.ready = "1";
}

async function route() {
  const path = location.pathname;
  try {
    if (path.startsWith("/runs/") && path.length > 6) await runPage(decodeURIComponent(path.slice(6)));
    else await runsPage();
  } catch (e) {
    main.replaceChildren(h("p", { class: "err", id: "error", text: "Error: " + e.message }));
  }
}
route();
