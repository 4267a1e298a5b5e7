// RetailPulse dashboard: initial state from /api/*, then live updates from /events (SSE).
// The page never reloads itself; window.rpDashboard exposes counters for the browser test.
"use strict";

const DAY_MS = 86400000;
const LEVEL_NAMES = {
  total: "total", region: "region", store: "store", department: "department",
  category: "category", category_store: "category x store", sku: "SKU", sku_store: "SKU x store",
};
const MAX_RATE_SAMPLES = 120;  // ~2 minutes of 1 s health pushes per family
const MAX_POINTS = 400;  // the server keeps the same cap per series
const MAX_FEED = 30;

const hook = window.rpDashboard = {
  loads: Number(sessionStorage.getItem("rpLoads") || 0) + 1,
  events: {},          // SSE event name -> count
  forecastPoints: 0,   // actual points drawn on the forecast chart
  forecastTraces: 0,
  calendarMarks: 0,    // holidays and retail events marked on the forecast chart
  alertRows: 0,
  sseOpen: false,
};
sessionStorage.setItem("rpLoads", String(hook.loads));

const state = {
  series: "total:all",
  list: { levels: [], nodes: {} },
  forecast: null,       // newest forecast of the picked series
  points: [],           // closed days: actual + one-day-ahead forecast
  calendar: [],
  alerts: new Map(),    // alert_id -> folded row
  rates: {},            // family -> [{t, v}]
  source: null,
};

const $ = (id) => document.getElementById(id);
const day = (ms) => new Date(ms).toISOString().slice(0, 10);
const fmt = (v, digits = 2) => (v === null || v === undefined ? "-" :
  Number(v).toLocaleString(undefined, { maximumFractionDigits: digits }));

async function getJSON(url) {
  const r = await fetch(url, { cache: "no-store" });
  if (!r.ok) throw new Error(`${url}: ${r.status}`);
  return r.json();
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

// -- demand ---------------------------------------------------------------------------

function fillNodes() {
  const level = $("level").value;
  const filter = $("node-filter").value.trim().toLowerCase();
  const nodes = (state.list.nodes[level] || []).filter((n) => n.toLowerCase().includes(filter));
  const select = $("node");
  select.replaceChildren(...nodes.slice(0, 2000).map((n) => new Option(n, n)));
  const current = state.series.split(":").slice(1).join(":");
  if (state.series.startsWith(level + ":") && nodes.includes(current)) select.value = current;
}

async function loadSeriesList() {
  state.list = await getJSON("/api/series/list");
  const levels = state.list.levels.length ? state.list.levels : ["total"];
  $("level").replaceChildren(...levels.map((l) => new Option(LEVEL_NAMES[l] || l, l)));
  const wanted = decodeURIComponent((location.hash.match(/series=([^&]+)/) || [])[1] || "");
  const level = (wanted || state.series).split(":")[0];
  if (levels.includes(level)) { state.series = wanted || state.series; $("level").value = level; }
  else if (!levels.includes("total")) state.series = `${levels[0]}:${(state.list.nodes[levels[0]] || [""])[0]}`;
  fillNodes();
}

async function pickSeries(series) {
  state.series = series;
  history.replaceState(null, "", `#series=${encodeURIComponent(series)}`);
  const [level, ...rest] = series.split(":");
  const data = await getJSON(`/api/series?level=${encodeURIComponent(level)}&node=${encodeURIComponent(rest.join(":"))}`);
  state.forecast = data.forecast;
  state.points = data.points;
  state.calendar = data.calendar;
  drawForecast();
  connect();  // the SSE stream carries this series' forecast changes only
}

function mergePoints(points) {
  for (const p of points) {
    const last = state.points[state.points.length - 1];
    if (last && last.as_of === p.as_of) state.points[state.points.length - 1] = p;
    else if (!last || last.as_of < p.as_of) state.points.push(p);
  }
  if (state.points.length > MAX_POINTS) state.points.splice(0, state.points.length - MAX_POINTS);
}

// Days the page has no point for break the lines (plotly leaves a gap at a null), so two
// days far apart are never joined as if the days between were known.
function withGaps(points, key, shift) {
  const x = [], y = [];
  points.forEach((p, i) => {
    if (i > 0 && p.as_of - points[i - 1].as_of > 1.5 * DAY_MS) { x.push(null); y.push(null); }
    x.push(day(p.as_of + shift));
    y.push(p[key]);
  });
  return { x, y };
}

// The p10-p90 band of runs of consecutive days, one closed shape per run ("toself" closes
// each gap-separated segment); a day alone gets an error bar instead.
function band(points, shift) {
  const x = [], y = [], alone = [];
  let run = [];
  const flush = () => {
    if (run.length === 1) alone.push(run[0]);
    else if (run.length > 1) {
      const back = run.slice().reverse();
      x.push(...run.map((p) => day(p.as_of + shift)), ...back.map((p) => day(p.as_of + shift)), null);
      y.push(...run.map((p) => p.p90), ...back.map((p) => p.p10), null);
    }
    run = [];
  };
  points.forEach((p, i) => {
    if (i > 0 && p.as_of - points[i - 1].as_of > 1.5 * DAY_MS) flush();
    run.push(p);
  });
  flush();
  return { x, y, alone };
}

function drawForecast() {
  const pts = state.points;
  const fc = state.forecast;
  const ahead = pts.filter((p) => p.p10 !== null && p.p90 !== null);
  const b = band(ahead, DAY_MS);
  const traces = [
    { x: b.x, y: b.y, mode: "lines", line: { width: 0 }, fill: "toself", hoverinfo: "skip",
      fillcolor: "rgba(37,99,235,0.15)", name: "1-day-ahead p10-p90" },
    { x: b.alone.map((p) => day(p.as_of + DAY_MS)), y: b.alone.map((p) => p.p50), mode: "markers",
      marker: { size: 1, color: "rgba(37,99,235,0.5)" }, hoverinfo: "skip", showlegend: false,
      error_y: { type: "data", symmetric: false, array: b.alone.map((p) => p.p90 - p.p50),
        arrayminus: b.alone.map((p) => p.p50 - p.p10), color: "rgba(37,99,235,0.5)", width: 6 } },
    { ...withGaps(ahead, "mean", DAY_MS), mode: "lines+markers", name: "1-day-ahead forecast",
      line: { color: "#2563eb", dash: "dot", width: 1.5 }, marker: { size: 4 } },
    { ...withGaps(pts, "actual", 0), mode: "lines+markers",
      name: "actual", line: { color: "#111827", width: 1.5 }, marker: { size: 5 } },
  ];
  let top = Math.max(1, ...pts.map((p) => Math.max(p.actual, p.p90 || 0)));
  if (fc && fc.mean.length) {
    const xs = fc.mean.map((_, k) => day(fc.as_of + (k + 1) * DAY_MS));
    traces.push(
      { x: xs, y: fc.p10, mode: "lines", line: { width: 0 }, hoverinfo: "skip", showlegend: false },
      { x: xs, y: fc.p90, mode: "lines", line: { width: 0 }, fill: "tonexty",
        fillcolor: "rgba(234,88,12,0.18)", name: "forecast p10-p90" },
      { x: xs, y: fc.mean, mode: "lines", name: `forecast (${fc.mean.length} days)`,
        line: { color: "#ea580c", width: 2 } },
    );
    top = Math.max(top, ...fc.p90);
  }
  const marks = state.calendar;
  traces.push({
    x: marks.map((m) => m.date), y: marks.map(() => top * 1.05), text: marks.map((m) => m.name),
    mode: "markers", name: "holidays & retail events", hovertemplate: "%{x}: %{text}<extra></extra>",
    marker: { symbol: "triangle-down", size: 9, color: "#c026d3" },
  });
  const shapes = marks.map((m) => ({
    type: "line", x0: m.date, x1: m.date, yref: "paper", y0: 0, y1: 1,
    line: { color: "rgba(192,38,211,0.25)", width: 1 },
  }));
  Plotly.react("forecast-chart", traces, {
    margin: { t: 10, r: 10, b: 40, l: 50 }, shapes, hovermode: "x unified",
    yaxis: { title: "units / day", rangemode: "tozero" }, legend: { orientation: "h", y: -0.15 },
  }, { displaylogo: false, responsive: true });
  hook.forecastPoints = pts.length;
  hook.calendarMarks = marks.length;
  hook.forecastTraces = traces.filter((t) => t.x.length > 0).length;
  $("series-meta").textContent = fc
    ? `as of ${day(fc.as_of)}, model v${fc.model_version}, ${pts.length} closed days shown` +
      (fc.reorder_point !== undefined ? `, reorder point ${fmt(fc.reorder_point)}` : "")
    : "no forecast for this series yet";
}

// -- supply alerts ----------------------------------------------------------------------

function drawAlerts(freshId) {
  const rows = [...state.alerts.values()].sort((a, b) =>
    (a.state === b.state ? 0 : a.state === "open" ? -1 : 1) || b.updated_at - a.updated_at);
  const body = $("alert-table").tBodies[0];
  body.replaceChildren(...rows.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.alertId = r.alert_id;
    if (r.alert_id === freshId) tr.className = "fresh";
    cell(tr, r.state, `state ${r.state}`);
    cell(tr, r.supplier_id);
    cell(tr, r.severity, `sev-${r.severity}`);
    cell(tr, fmt(r.score), "num");
    const skus = r.affected_skus;
    cell(tr, skus.slice(0, 6).join(", ") + (skus.length > 6 ? ` +${skus.length - 6}` : ""))
      .title = `${skus.length} SKUs, ${r.affected_stores.length} stores, ` +
        `${r.impacted_pairs.length} SKU x store pairs short before the delayed order lands`;
    cell(tr, r.updated_at > 0 ? day(r.updated_at) : "-");
    return tr;
  }));
  const open = rows.filter((r) => r.state === "open").length;
  $("alert-counts").textContent = `${open} open, ${rows.length - open} closed`;
  $("alerts-empty").hidden = rows.length > 0;
  hook.alertRows = rows.length;
}

// -- churn ------------------------------------------------------------------------------

function drawChurn(top) {
  $("churn-table").tBodies[0].replaceChildren(...top.map((c) => {
    const tr = document.createElement("tr");
    cell(tr, c.customer_id);
    cell(tr, fmt(c.value_at_risk), "num");
    cell(tr, c.churn_risk === null ? "-" : `${(100 * c.churn_risk).toFixed(0)}%`, "num");
    cell(tr, fmt(c.clv_365d), "num");
    cell(tr, c.top_features.length
      ? c.top_features.map((f) => `${f[0]} ${f[1] > 0 ? "+" : ""}${fmt(f[1])}`).join(", ")
      : "(model warming up)", c.top_features.length ? "" : "muted");
    return tr;
  }));
}

function feed(id, text) {
  const li = document.createElement("li");
  li.textContent = text;
  $(id).prepend(li);
  while ($(id).children.length > MAX_FEED) $(id).lastChild.remove();
}

// -- health and scores ------------------------------------------------------------------

function drawHealth(h) {
  $("health-table").tBodies[0].replaceChildren(...h.families.map((f) => {
    const tr = document.createElement("tr");
    cell(tr, f.family);
    cell(tr, fmt(f.events, 0), "num");
    cell(tr, fmt(f.events_per_s, 1), "num");
    cell(tr, f.lag === null ? "-" : fmt(f.lag, 0), "num");
    const stages = Object.entries(f.dead_letters_by_stage).map(([s, n]) => `${s} ${n}`).join(", ");
    cell(tr, `${f.dead_letters}${stages ? ` (${stages})` : ""}`, "num");
    cell(tr, f.last_event_time >= 0 ? new Date(f.last_event_time).toISOString().slice(0, 16).replace("T", " ") : "-");
    const series = state.rates[f.family] = state.rates[f.family] || [];
    series.push({ t: new Date(h.time), v: f.events_per_s });
    if (series.length > MAX_RATE_SAMPLES) series.shift();
    return tr;
  }));
  const n = h.notifications || {};
  $("health-note").textContent = `Redis: ${h.redis}. Notifications since the dashboard started: ` +
    Object.entries(n).map(([k, v]) => `${k} ${v}`).join(", ") + `. ${h.clients} browser(s).` +
    (h.lag_note ? ` ${h.lag_note}.` : "");
  $("totals").textContent = `${fmt(h.events, 0)} events, ${fmt(h.events_per_s, 1)}/s, ` +
    `${h.dead_letters} dead letters, ${h.alerts_open} open alerts`;
  $("updated").textContent = `updated ${new Date(h.time).toLocaleTimeString()}`;
  Plotly.react("rate-chart", Object.entries(state.rates).map(([family, s]) => ({
    x: s.map((p) => p.t), y: s.map((p) => p.v), mode: "lines", name: family,
  })), { margin: { t: 10, r: 10, b: 30, l: 50 }, yaxis: { title: "events/s", rangemode: "tozero" },
    legend: { orientation: "h", y: -0.2 } }, { displaylogo: false, responsive: true });
}

function drawScores(s) {
  const horizons = [...new Set(s.demand.map((r) => r.h))].sort((a, b) => a - b);
  const levels = [...new Set(s.demand.map((r) => r.level))];
  Plotly.react("mase-chart", horizons.map((h) => ({
    type: "bar", name: `h=${h} d`, x: levels,
    y: levels.map((lv) => (s.demand.find((r) => r.level === lv && r.h === h) || {}).mase ?? null),
  })), { margin: { t: 10, r: 10, b: 60, l: 50 }, barmode: "group",
    legend: { orientation: "h", y: 1.12 },
    yaxis: { title: "demand MASE (< 1 beats seasonal naive)" },
    shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, y0: 1, y1: 1, line: { dash: "dot" } }],
  }, { displaylogo: false, responsive: true });
  const c = s.churn, lead = s.supply.leadtime, det = s.supply.detection, st = s.demand_status;
  const cards = [
    ["days closed", fmt(st.days_closed, 0), `${fmt(st.series, 0)} demand series`],
    ["churn AUC", fmt(c.auc, 3), `${fmt(c.labels, 0)} matured labels`],
    ["churn ECE", fmt(c.ece, 3), `log loss ${fmt(c.log_loss, 3)}`],
    ["lead-time MAE", `${fmt(lead.mae_days)} d`, `moving average ${fmt(lead.mae_moving_average_days)} d`],
    ["lead-time band", fmt(lead.coverage, 3), `coverage (target ${fmt(lead.target_coverage)})`],
    ["supply alerts", fmt(det.alerts_open, 0), `opened; ${fmt(det.alerts_closed, 0)} closed`],
  ];
  $("score-cards").replaceChildren(...cards.map(([name, value, note]) => {
    const div = document.createElement("div");
    const b = document.createElement("b");
    b.textContent = value;
    const span = document.createElement("span");
    span.textContent = `${name}: ${note}`;
    div.append(b, span);
    return div;
  }));
}

// -- live -------------------------------------------------------------------------------

function on(source, name, fn) {
  source.addEventListener(name, (e) => {
    hook.events[name] = (hook.events[name] || 0) + 1;
    fn(JSON.parse(e.data));
  });
}

function connect() {
  if (state.source) state.source.close();
  const source = state.source = new EventSource(`/events?series=${encodeURIComponent(state.series)}`);
  source.onopen = () => { hook.sseOpen = true; $("conn").className = "badge live"; $("conn").textContent = "live"; };
  source.onerror = () => {  // EventSource reconnects by itself (retry: 2 s from the server)
    hook.sseOpen = false;
    $("conn").className = "badge connecting";
    $("conn").textContent = "reconnecting";
  };
  on(source, "hello", drawHealth);
  on(source, "health", drawHealth);
  on(source, "scores", drawScores);
  on(source, "churn_top", drawChurn);
  on(source, "forecast", (d) => {
    if (d.series !== state.series) return;
    state.forecast = d.forecast;
    mergePoints(d.points);
    drawForecast();
  });
  on(source, "alert", (row) => { state.alerts.set(row.alert_id, row); drawAlerts(row.alert_id); });
  on(source, "churn", (a) => feed("churn-feed",
    `${a.customer_id}: risk ${(100 * a.churn_risk).toFixed(0)}%, value at risk ${fmt(a.value_at_risk)}`));
  on(source, "reorder", () => {});
}

async function main() {
  $("level").addEventListener("change", () => { $("node-filter").value = ""; fillNodes(); pickSeries(`${$("level").value}:${$("node").value}`); });
  $("node").addEventListener("change", () => pickSeries(`${$("level").value}:${$("node").value}`));
  $("node-filter").addEventListener("input", fillNodes);
  try { await loadSeriesList(); } catch (e) { console.error(e); }
  const [alerts, churn, scores, health] = await Promise.all(
    ["/api/alerts", "/api/churn/top", "/api/scores", "/api/health"].map((u) => getJSON(u).catch(() => null)));
  if (alerts) { for (const r of alerts.alerts) state.alerts.set(r.alert_id, r); drawAlerts(); }
  if (churn) {
    drawChurn(churn.top);
    for (const a of churn.recent_alerts.slice().reverse()) feed("churn-feed",
      `${a.customer_id}: risk ${(100 * a.churn_risk).toFixed(0)}%, value at risk ${fmt(a.value_at_risk)}`);
  }
  if (scores) drawScores(scores);
  if (health) drawHealth(health);
  await pickSeries(state.series);
}

main();
