// Operator dashboard: fleet table, vehicle health page (#/vehicle/<id>) and the map of
// road conditions and events (map.js).
// Plain DOM code over the collector's JSON API; fields that a collector version does not
// provide yet (status, backlog, alerts, health history) are shown as "–", never an error.
import uPlot from "uplot";
import { authFetch } from "./auth.js";
import { HEALTH_KEYS } from "./contracts.generated.js";
import { startMap } from "./map.js";

const FLEET_POLL_MS = 3000;
const MAP_POLL_MS = 30000;
const VEHICLE_POLL_MS = 5000;
const HISTORY_POINTS = 600;

const $ = (sel) => document.querySelector(sel);
const state = {
  vehicles: [],
  alerts: new Map(), // vehicle -> [{kind, severity, message, since}] from /v1/alerts
  sort: { key: "vehicle", dir: 1 },
  history: new Map(), // vehicle -> [{t, backlog_batches, backlog_age_s, lag_s, data_today_bytes}]
  map: null, // {refresh, resize} of map.js
  route: null,
  timers: [],
  windowS: 6 * 3600, // the vehicle page's time window
};

// ---------------------------------------------------------------- formatting

function fmtBytes(n) {
  if (n == null || Number.isNaN(n)) return "–";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i += 1; }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function fmtSeconds(s) {
  if (s == null || Number.isNaN(s)) return "–";
  if (s < 1) return `${Math.round(s * 1000)} ms`;
  if (s < 120) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} d`;
}

function compact(n) {
  if (n == null) return "";
  const a = Math.abs(n);
  if (a >= 1e9) return `${+(n / 1e9).toFixed(1)}G`;
  if (a >= 1e6) return `${+(n / 1e6).toFixed(1)}M`;
  if (a >= 1e4) return `${+(n / 1e3).toFixed(1)}k`;
  return String(+n.toFixed(2));
}

function ago(iso) {
  if (!iso) return "never";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return `${fmtSeconds(Math.max(0, (Date.now() - t) / 1000))} ago`;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

// ---------------------------------------------------------------- data access

async function getJSON(path) {
  const r = await authFetch(path, { headers: { Accept: "application/json" } });
  if (!r.ok) {
    const err = new Error(`${path}: HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return r.json();
}

/** One row of the table, whatever the collector version calls its fields. */
function normalize(v) {
  const lagS = v.lag_s ?? (v.lag_ms != null ? v.lag_ms / 1000 : null);
  const alerts = [...(v.alerts ?? []), ...(state.alerts.get(v.vehicle) ?? [])];
  const seen = new Set();
  const unique = alerts.filter((a) => {
    const key = `${a.kind}|${a.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  return {
    raw: v,
    vehicle: v.vehicle,
    fleet: v.fleet ?? "",
    status: v.status ?? v.state ?? "unknown",
    last_seen: v.last_seen ?? null,
    backlog_batches: v.backlog_batches ?? null,
    backlog_age_s: v.backlog_age_s ?? null,
    lag_s: lagS,
    data_today_bytes: v.data_today_bytes ?? v.bytes_today ?? null,
    alerts: unique,
  };
}

function alertsFrom(body) {
  const list = Array.isArray(body) ? body : body.alerts ?? [];
  const byVehicle = new Map();
  for (const a of list) {
    const id = a.vehicle ?? a.vehicle_id;
    if (!id) continue;
    if (!byVehicle.has(id)) byVehicle.set(id, []);
    byVehicle.get(id).push(a);
  }
  return byVehicle;
}

function remember(row) {
  const list = state.history.get(row.vehicle) ?? [];
  list.push({
    t: Date.now() / 1000,
    backlog_batches: row.backlog_batches,
    backlog_age_s: row.backlog_batches === 0 ? 0 : row.backlog_age_s,
    lag_s: row.lag_s,
    data_today_bytes: row.data_today_bytes,
  });
  if (list.length > HISTORY_POINTS) list.splice(0, list.length - HISTORY_POINTS);
  state.history.set(row.vehicle, list);
}

async function refreshFleet() {
  try {
    const [body, alerts] = await Promise.all([
      getJSON("v1/vehicles"),
      getJSON("v1/alerts").catch(() => null), // older collectors have no /v1/alerts
    ]);
    if (alerts) state.alerts = alertsFrom(alerts);
    state.vehicles = (body.vehicles ?? []).map(normalize);
    state.vehicles.forEach(remember);
    $("#error").textContent = "";
    $("#updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    renderSummary();
    renderTable();
    if (state.route?.name === "vehicle") renderVehicleFacts(state.route.id);
  } catch (e) {
    $("#error").textContent = `cannot reach the collector: ${e.message}`;
  }
}

// ---------------------------------------------------------------- fleet table

const SORT_VALUE = {
  vehicle: (r) => r.vehicle,
  fleet: (r) => r.fleet,
  status: (r) => r.status,
  last_seen: (r) => (r.last_seen ? Date.parse(r.last_seen) : -Infinity),
  backlog: (r) => r.backlog_age_s ?? r.backlog_batches ?? -Infinity,
  lag: (r) => r.lag_s ?? -Infinity,
  data: (r) => r.data_today_bytes ?? -Infinity,
  alerts: (r) => r.alerts.length,
};

function visibleRows() {
  const text = $("#filter").value.trim().toLowerCase();
  const status = $("#status-filter").value;
  const { key, dir } = state.sort;
  const value = SORT_VALUE[key];
  return state.vehicles
    .filter((r) => !status || r.status === status)
    .filter((r) => {
      if (!text) return true;
      const hay = [r.vehicle, r.fleet, r.status, ...r.alerts.map((a) => `${a.kind} ${a.message}`)];
      return hay.join(" ").toLowerCase().includes(text);
    })
    .sort((a, b) => {
      const x = value(a);
      const y = value(b);
      const c = typeof x === "string" ? x.localeCompare(y) : x - y;
      return (c || a.vehicle.localeCompare(b.vehicle)) * dir;
    });
}

function backlogText(r) {
  if (r.backlog_batches == null && r.backlog_age_s == null) return "–";
  const n = r.backlog_batches ?? 0;
  if (n === 0) return "none";
  const age = r.backlog_age_s ? `, oldest ${fmtSeconds(r.backlog_age_s)}` : "";
  return `${n} batch${n === 1 ? "" : "es"}${age}`;
}

function alertChips(alerts) {
  const box = el("span");
  for (const a of alerts) {
    box.append(el("span", {
      class: `alert ${a.severity ?? ""}`,
      title: `${a.message ?? ""}${a.since ? ` (since ${a.since})` : ""}`,
      text: a.kind ?? "alert",
    }));
  }
  return box;
}

function renderTable() {
  const tbody = $("#fleet tbody");
  const rows = visibleRows();
  tbody.replaceChildren(...rows.map((r) => {
    const link = el("a", { href: `#/vehicle/${encodeURIComponent(r.vehicle)}`, text: r.vehicle });
    return el("tr", { "data-vehicle": r.vehicle, "data-status": r.status, class: r.status },
      el("td", { class: "vehicle" }, link),
      el("td", { text: r.fleet }),
      el("td", { class: "status" }, el("span", { class: `badge ${r.status}`, text: r.status })),
      el("td", { class: "last-seen", title: r.last_seen ?? "", text: ago(r.last_seen) }),
      el("td", { class: "backlog num", text: backlogText(r) }),
      el("td", { class: "lag num", text: fmtSeconds(r.lag_s) }),
      el("td", { class: "data num", text: fmtBytes(r.data_today_bytes) }),
      el("td", { class: "alerts" }, alertChips(r.alerts)));
  }));
  if (!rows.length) {
    tbody.append(el("tr", {}, el("td", { colspan: "8", class: "muted",
      text: state.vehicles.length ? "no vehicle matches the filter" : "no vehicle has reported yet" })));
  }
  for (const th of document.querySelectorAll("#fleet th")) {
    th.classList.toggle("sorted-asc", th.dataset.key === state.sort.key && state.sort.dir > 0);
    th.classList.toggle("sorted-desc", th.dataset.key === state.sort.key && state.sort.dir < 0);
  }
}

function renderSummary() {
  const n = state.vehicles.length;
  const online = state.vehicles.filter((r) => r.status === "online").length;
  const alerting = state.vehicles.filter((r) => r.alerts.length).length;
  $("#summary").textContent = `${n} vehicles · ${online} online · ${alerting} with alerts`;
}

// ---------------------------------------------------------------- map (map.js)

function ensureMap() {
  state.map ??= startMap({
    map: $("#map"), measure: $("#map-measure"), step: $("#map-step"), slider: $("#map-time"),
    period: $("#map-period"), cellLegend: $("#cell-legend"), eventLegend: $("#event-legend"),
    status: $("#map-status"),
  }, getJSON);
}

// ---------------------------------------------------------------- vehicle page

// Charts shown first, when the data has them (health values of the agent, then what this
// page saw in the fleet table); other numeric health values follow, alphabetically.
const PREFERRED_SERIES = [
  "outbox_pending_batches", "outbox_oldest_age_ms", "backlog_batches", "backlog_age_s",
  "lag_s", "bytes_sent_today", "data_today_bytes", "clock_offset_ms", "uplink_connected",
  "outbox_pending_bytes", "uplink_published_bytes", "gnss_fixes",
];
// What the page itself remembers from the fleet table (the collector's figures).
const PAGE_SERIES = {
  backlog_batches: { label: "backlog", unit: "batches" },
  backlog_age_s: { label: "backlog age, oldest unacknowledged record", unit: "s" },
  lag_s: { label: "lag, record to arrival", unit: "s" },
  data_today_bytes: { label: "data received today", unit: "bytes" },
};
// A page series that measures what an agent health value already charts: one chart per
// measure, the agent's (it has the history; the page only saw since it opened).
const SAME_MEASURE = {
  backlog_batches: "outbox_pending_batches",
  backlog_age_s: "outbox_oldest_age_ms",
  data_today_bytes: "bytes_sent_today",
};
const MAX_CHARTS = 12;
// Health keys with a placeholder (bus_<name>_fps) as patterns, compiled once.
const HEALTH_PATTERNS = Object.entries(HEALTH_KEYS)
  .filter(([name]) => name.includes("<"))
  .map(([name, info]) => [new RegExp(`^${name.replace(/<[a-z]+>/, "(.+)")}$`), info]);

// Counts have no unit in the contracts: the axis names what is counted.
function countUnit(label, type) {
  if (type === "bool") return "0 = no, 1 = yes";
  const m = label.match(/\b(batches|records|frames|fixes|events|seq)\b/);
  return m ? m[1] : "count";
}

/** {label, unit} of a series: never an empty unit, so every y axis says what it counts. */
function seriesInfo(key) {
  if (PAGE_SERIES[key]) return PAGE_SERIES[key];
  let info = HEALTH_KEYS[key];
  let label = info?.label;
  if (!info) {
    const hit = HEALTH_PATTERNS.find(([re]) => re.test(key));
    if (!hit) return { label: key, unit: countUnit(key, null) };
    info = hit[1];
    label = info.label.replace(/<[a-z]+>/, key.match(hit[0])[1]);
  }
  return { label, unit: info.unit || countUnit(label, info.type) };
}

function renderVehicleFacts(id) {
  const row = state.vehicles.find((r) => r.vehicle === id);
  $("#vehicle-title").textContent = `Vehicle ${id}`;
  const facts = $("#vehicle-facts");
  if (!row) {
    facts.replaceChildren(el("dt", { text: "status" }), el("dd", { text: "not known to the collector" }));
    return;
  }
  const items = [
    ["status", row.status], ["fleet", row.fleet], ["last seen", ago(row.last_seen)],
    ["backlog", backlogText(row)], ["lag", fmtSeconds(row.lag_s)],
    ["data today", fmtBytes(row.data_today_bytes)],
    ["batches total", row.raw.batches_total ?? "–"], ["records total", row.raw.records_total ?? "–"],
  ];
  facts.replaceChildren(...items.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
  facts.querySelectorAll("dd")[0].setAttribute("data-testid", "vehicle-status");
  $("#vehicle-alerts").replaceChildren(alertChips(row.alerts));
}

// The agent's backlog age also counts staged records: its bucket maximum would bring back
// the age that backlogAged() hides while nothing is pending, so it gets no band.
const NO_BAND = new Set(["outbox_oldest_age_ms"]);

function seriesFrom(points) {
  // points: [{t (s), values: {...}, low?, high?}] -> {key: [[t...], [v...], [min...], [max...]]}
  // for numeric values; min and max of the collector's time bucket where it sent them.
  const out = new Map();
  for (const p of points) {
    for (const [k, v] of Object.entries(p.values)) {
      const num = typeof v === "boolean" ? Number(v) : v;
      if (typeof num !== "number" || !Number.isFinite(num)) continue;
      if (!out.has(k)) out.set(k, [[], [], [], []]);
      const s = out.get(k);
      const band = !NO_BAND.has(k) && typeof p.low?.[k] === "number" && typeof p.high?.[k] === "number";
      s[0].push(p.t);
      s[1].push(num);
      s[2].push(band ? Math.min(p.low[k], num) : num);
      s[3].push(band ? Math.max(p.high[k], num) : num);
    }
  }
  return out;
}

// Axis ranges around the data: a lone point (or a flat line) gets a small span around it
// instead of uPlot's default, which spreads one timestamp over years.
function around(lo, hi, minSpan) {
  const pad = Math.max((hi - lo) * 0.05, (minSpan - (hi - lo)) / 2, 0);
  return [lo - pad, hi + pad];
}

function yRange(_u, lo, hi) {
  if (lo == null || hi == null) return [0, 1];
  return around(lo, hi, Math.max(Math.abs(hi) * 0.2, 1));
}

// Tick labels short enough for the spacing below (no overlapping dates): the time of day,
// with the date only in the week window.
function timeTicks(windowS) {
  const two = (n) => String(n).padStart(2, "0");
  return (_u, splits) => splits.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return windowS > 86400 ? `${two(d.getMonth() + 1)}-${two(d.getDate())} ${hm}` : hm;
  });
}

// Backlog age is the age of the oldest unacknowledged record, 0 when no batch is pending:
// the agent's figure also counts records still being batched, which are no backlog.
function backlogAged(values) {
  if (values.outbox_pending_batches !== 0 || values.outbox_oldest_age_ms == null) return values;
  return { ...values, outbox_oldest_age_ms: 0 };
}

// The last history answer: asked again once a bucket's width has passed (6 s in the 1 h
// window, about 17 min in the week), not at every poll: a week's buckets cost the
// collector a pass over the week's snapshots.
const historyCache = { key: null, at: 0, result: null };

async function healthPoints(id, windowS) {
  const key = `${id}|${windowS}`;
  const fresh = Math.max(VEHICLE_POLL_MS, (windowS * 1000) / HISTORY_POINTS);
  if (historyCache.key === key && Date.now() - historyCache.at < fresh) return historyCache.result;
  const result = await fetchHealthPoints(id, windowS);
  if (result.points.length) Object.assign(historyCache, { key, at: Date.now(), result });
  return result;
}

async function fetchHealthPoints(id, windowS) {
  const since = new Date(Date.now() - windowS * 1000).toISOString();
  try {
    // The collector cuts the window into at most HISTORY_POINTS time buckets: per bucket
    // the last snapshot, how many it held, and each value's min and max (drawn as a band).
    const body = await getJSON(
      `v1/vehicles/${encodeURIComponent(id)}/health?since=${since}&points=${HISTORY_POINTS}`);
    const list = Array.isArray(body) ? body : body.health ?? body.items ?? [];
    const points = list.map((h) => ({
      t: Date.parse(h.time) / 1000, values: backlogAged(h.values ?? {}), low: h.min, high: h.max,
    }));
    const records = list.reduce((n, h) => n + (h.count ?? 1), 0);
    const per = records > points.length
      ? `, as ${points.length} point${points.length === 1 ? "" : "s"}: the last snapshot of each ${fmtSeconds(windowS / HISTORY_POINTS)}`
        + " bucket, its min-max range shaded"
      : "";
    return { points, note: `${records} health records from the vehicle${per}` };
  } catch (e) {
    const note = e.status === 404 || e.status === 405
      ? "this collector keeps no health history; charts show what this page saw since it opened"
      : `health history unavailable (${e.message})`;
    return { points: [], note };
  }
}

function drawChart(box, key, [xs, ys, lows, highs], windowS) {
  const { label, unit } = seriesInfo(key);
  const title = `${label} (${unit})`;
  const card = el("div", { class: "chart", "data-series": key }, el("h3", { text: title }));
  box.append(card);
  const xLabel = "time (local)";
  // The bucket's min-max band, where it differs from the line somewhere.
  const banded = lows != null && ys.some((y, i) => lows[i] !== y || highs[i] !== y);
  const edge = (label) => ({ label, stroke: "rgba(21,101,192,.35)", width: 0.5, points: { show: false } });
  const [xMin, xMax] = around(Math.min(...xs), Math.max(...xs), Math.min(windowS / 10, 600));
  // What the chart actually drew, for the browser test and for anyone inspecting the page.
  const drew = (u) => Object.assign(card.dataset, {
    xMin: u.scales.x.min, xMax: u.scales.x.max, tMin: xs[0], tMax: xs[xs.length - 1],
    xLabel: u.axes[0].label, yLabel: u.axes[1].label,
  });
  new uPlot({
    width: Math.max(300, card.clientWidth - 12), height: 190,
    scales: { x: { time: true, range: () => [xMin, xMax] }, y: { range: yRange } },
    series: [{}, { label: title, stroke: "#1565c0", width: 1.5, fill: "rgba(21,101,192,.08)",
      points: { show: xs.length < 3, size: 6 } }, ...(banded ? [edge("min"), edge("max")] : [])],
    bands: banded ? [{ series: [3, 2], fill: "rgba(21,101,192,.18)" }] : [],
    legend: { show: false },
    axes: [
      { label: xLabel, labelSize: 18, space: windowS > 86400 ? 110 : 70, values: timeTicks(windowS) },
      { label: unit, labelSize: 18, size: 56, values: (_u, vals) => vals.map(compact) },
    ],
    hooks: { draw: [drew] },
  }, banded ? [xs, ys, lows, highs] : [xs, ys], card);
}

async function renderVehicleCharts(id) {
  const windowS = state.windowS;
  const { points, note } = await healthPoints(id, windowS);
  if (windowS !== state.windowS || state.route?.id !== id) return; // a newer render is due
  const from = Date.now() / 1000 - windowS;
  const seen = (state.history.get(id) ?? []).filter((h) => h.t >= from);
  const series = new Map(seriesFrom(points));
  const fromPage = seriesFrom(seen.map((h) => ({ t: h.t, values: { ...h, t: undefined } })));
  for (const [k, v] of fromPage) {
    if (!series.has(k) && !series.has(SAME_MEASURE[k])) series.set(k, v);
  }
  const keys = [
    ...PREFERRED_SERIES.filter((k) => series.has(k)),
    ...[...series.keys()].filter((k) => !PREFERRED_SERIES.includes(k)).sort(),
  ].slice(0, MAX_CHARTS);
  $("#health-note").textContent = note;
  const box = $("#charts");
  box.replaceChildren();
  for (const key of keys) drawChart(box, key, series.get(key), windowS);
  if (!keys.length) box.append(el("p", { class: "muted", text: "no numeric health data in this window" }));
}

// ---------------------------------------------------------------- routing

function parseRoute() {
  const m = location.hash.match(/^#\/vehicle\/(.+)$/);
  return m ? { name: "vehicle", id: decodeURIComponent(m[1]) } : { name: "fleet" };
}

function every(ms, fn) {
  fn();
  state.timers.push(setInterval(fn, ms));
}

function route() {
  state.timers.forEach(clearInterval);
  state.timers = [];
  state.route = parseRoute();
  const vehicle = state.route.name === "vehicle";
  $("#fleet-view").hidden = vehicle;
  $("#vehicle-view").hidden = !vehicle;
  every(FLEET_POLL_MS, refreshFleet);
  if (vehicle) {
    const { id } = state.route;
    renderVehicleFacts(id);
    every(VEHICLE_POLL_MS, () => renderVehicleCharts(id));
  } else {
    const fresh = !state.map;
    ensureMap();
    state.timers.push(setInterval(() => state.map.refresh(), MAP_POLL_MS));
    if (!fresh) setTimeout(() => { state.map.resize(); state.map.refresh(); }, 0);
  }
}

function init() {
  for (const th of document.querySelectorAll("#fleet th")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key;
      state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : 1 };
      renderTable();
    });
  }
  $("#filter").addEventListener("input", renderTable);
  $("#status-filter").addEventListener("change", renderTable);
  $("#window").addEventListener("change", (e) => {
    state.windowS = Number(e.target.value);
    if (state.route?.name === "vehicle") renderVehicleCharts(state.route.id);
  });
  window.addEventListener("hashchange", route);
  route();
}

init();
