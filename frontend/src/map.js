// The operator map: MapLibre GL over the collector's vector tiles (/tiles/<layer>.json,
// TileJSON 3.0.0): road-condition cells coloured by the chosen measure, events by type,
// a time slider over the data's extent, and under them either the configured basemap
// server ([dashboard] basemap_tiles, from /dashboard/config.json) or, by default, the
// streets the fleet itself drove (the roads layer), so the map needs no tile server.
import { Map as MapLibre, Popup, setWorkerUrl } from "maplibre-gl";
import { knownToken } from "./auth.js";
import {
  domainOf, eventColorExpression, eventLabel, formatMeasure, measuresOf, rampExpression,
  renderCellLegend, renderEventLegend,
} from "./map-legend.js";
import { HOUR_MS, eventExtent, localTime, timeWindows, windowText, withParams } from "./map-time.js";

const SEOUL = [126.978, 37.5665];
const WORLD_SPAN_DEG = 180; // TileJSON bounds this wide: no data yet
// Room for the legends in the map's top left corner.
const FIT = { padding: { top: 30, bottom: 30, left: 250, right: 30 }, maxZoom: 16, duration: 0 };

setWorkerUrl(new URL("static/maplibre-gl-worker.js", document.baseURI).href);

// Every request the map itself makes (tiles of every source) passes here: the one place
// for the collector's credentials (the session's bearer token). A basemap server
// elsewhere gets none of them.
export function transformRequest(url) {
  if (!url.startsWith(location.origin)) return { url };
  const token = knownToken();
  return { url, headers: token ? { Authorization: `Bearer ${token}` } : {} };
}

// ---------------------------------------------------------------- style

function roadLayers() {
  const width = (a, b, c) => ["interpolate", ["exponential", 1.6], ["zoom"], 10, a, 14, b, 18, c];
  return [
    { id: "roads-casing", type: "line", source: "roads", "source-layer": "roads",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#7d8896", "line-width": width(1.5, 6, 22) } },
    { id: "roads", type: "line", source: "roads", "source-layer": "roads",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#ffffff", "line-width": width(0.8, 4, 18) } },
  ];
}

function vectorSource(tj, period = {}) {
  return { type: "vector", tiles: tj.tiles.map((t) => withParams(t, period)),
    minzoom: tj.minzoom ?? 0, maxzoom: tj.maxzoom ?? 16 };
}

function buildStyle(tileJson, basemap, period) {
  const sources = {
    road_conditions: vectorSource(tileJson.road_conditions, period),
    events: vectorSource(tileJson.events, period),
  };
  const layers = [{ id: "background", type: "background", paint: { "background-color": "#e9ecef" } }];
  if (basemap) {
    sources.basemap = { type: "raster", tiles: basemap.tiles, tileSize: 256,
      maxzoom: basemap.maxzoom ?? 19, attribution: basemap.attribution || undefined };
    layers.push({ id: "basemap", type: "raster", source: "basemap" });
  } else if (tileJson.roads) {
    sources.roads = vectorSource(tileJson.roads);
    layers.push(...roadLayers());
  }
  layers.push(
    { id: "cells", type: "fill", source: "road_conditions", "source-layer": "road_conditions",
      paint: { "fill-color": "#b0bec5", "fill-opacity": 0.5 } },
    { id: "cells-outline", type: "line", source: "road_conditions", "source-layer": "road_conditions",
      paint: { "line-color": "#546e7a", "line-opacity": 0.35, "line-width": 0.6 } },
    { id: "events", type: "circle", source: "events", "source-layer": "events",
      paint: {
        "circle-color": eventColorExpression(),
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 8, 2.5, 13, 5, 17, 8],
        "circle-stroke-color": "#ffffff", "circle-stroke-width": 1.2,
      } },
  );
  return { version: 8, sources, layers };
}

// ---------------------------------------------------------------- the map

function worldLike(b) {
  return !Array.isArray(b) || b.length !== 4 || b[2] - b[0] >= WORLD_SPAN_DEG;
}

function countBy(features, key) {
  const out = {};
  for (const f of features) {
    const v = f.properties?.[key];
    if (v != null) out[v] = (out[v] ?? 0) + 1;
  }
  return out;
}

/** The map in `ui.map`, its controls in `ui` (measure, step, slider, period, legends,
 * status); `getJSON(path)` is the dashboard's one way to the collector's JSON. Returns
 * {refresh, resize}. */
export function startMap(ui, getJSON) {
  const m = { ui, getJSON, map: null, tileJson: null, measures: [], measure: null,
    domain: [0, 1], extent: null, windows: [], index: -1, moved: false, counts: {}, type: null };
  init(m).catch((e) => { ui.status.textContent = `map unavailable: ${e.message}`; });
  return {
    refresh: () => (m.map ? refresh(m).catch((e) => { ui.status.textContent = `map data unavailable: ${e.message}`; }) : null),
    resize: () => m.map?.resize(),
  };
}

async function loadTileJson(getJSON) {
  const names = ["road_conditions", "events", "roads"];
  const docs = await Promise.all(names.map((n) => getJSON(`tiles/${n}.json`).catch((e) => {
    if (n === "roads") return null; // the map works without the streets
    throw e;
  })));
  return Object.fromEntries(names.map((n, i) => [n, docs[i]]));
}

async function init(m) {
  const [tileJson, config] = await Promise.all([
    loadTileJson(m.getJSON),
    m.getJSON("dashboard/config.json").catch(() => ({ basemap: null })),
  ]);
  m.tileJson = tileJson;
  const fields = tileJson.road_conditions.vector_layers?.find((l) => l.id === "road_conditions")?.fields;
  m.measures = measuresOf(fields);
  m.measure = m.measures[0] ?? null;
  fillMeasureSelect(m);
  await loadExtent(m);
  const bounds = tileJson.road_conditions.bounds;
  m.map = new MapLibre({
    container: m.ui.map,
    style: buildStyle(tileJson, config.basemap, periodParams(m)),
    ...(worldLike(bounds) ? { center: SEOUL, zoom: 12 } : { bounds, fitBoundsOptions: FIT }),
    maxZoom: 19,
    dragRotate: false,
    attributionControl: { compact: true },
    transformRequest,
  });
  m.map.touchZoomRotate.disableRotation();
  for (const ev of ["dragstart", "wheel", "dblclick", "boxzoomstart"]) m.map.on(ev, () => { m.moved = true; });
  m.map.on("load", () => {
    m.map.resize(); // the container's final size, before fitting to it
    follow(m, bounds);
    applyMeasure(m);
  });
  showWindow(m);
  m.map.on("idle", () => afterIdle(m));
  m.map.on("error", (e) => { m.ui.status.textContent = `map: ${e.error?.message ?? e.error ?? "error"}`; });
  hover(m);
  bindControls(m);
}

function fillMeasureSelect(m) {
  const sel = m.ui.measure;
  sel.replaceChildren(...m.measures.map((x) => {
    const o = document.createElement("option");
    o.value = x.key;
    o.textContent = x.unit ? `${x.label} (${x.unit})` : x.label;
    return o;
  }));
  sel.disabled = !m.measures.length;
}

// The slider's windows over the events' time extent (the last 24 h when there are none
// yet); at the latest window it stays there as the extent grows.
async function loadExtent(m) {
  m.extent = await eventExtent(m.getJSON, m.extent).catch(() => m.extent);
  const now = Date.now();
  const latest = m.index < 0 || m.index >= m.windows.length - 1;
  const [start, end] = m.extent ? [m.extent.first, m.extent.last] : [now - 24 * HOUR_MS, now];
  m.windows = timeWindows(m.ui.step.value, start, end);
  const slider = m.ui.slider;
  slider.max = String(m.windows.length - 1);
  slider.disabled = m.windows.length < 2;
  if (latest) m.index = m.windows.length - 1;
  m.index = Math.min(m.index, m.windows.length - 1);
  slider.value = String(m.index);
}

function currentWindow(m) {
  return m.windows[m.index] ?? m.windows[m.windows.length - 1];
}

// The tiles' query parameters: the slider's window, and the one event type picked in the
// events' legend (events of that type only, and cells counting only them), if any.
function periodParams(m) {
  const w = currentWindow(m);
  return { since: new Date(w.since).toISOString(), until: new Date(w.until).toISOString(), type: m.type };
}

function showWindow(m) {
  const { since, until, type } = periodParams(m);
  m.ui.period.textContent = windowText(currentWindow(m));
  Object.assign(m.ui.map.dataset, { since, until, type: type ?? "" });
}

function applyWindow(m) {
  const params = periodParams(m);
  for (const name of ["road_conditions", "events"]) {
    m.map.getSource(name)?.setTiles(m.tileJson[name].tiles.map((t) => withParams(t, params)));
  }
  showWindow(m);
}

function applyMeasure(m) {
  if (!m.map?.getLayer("cells")) return;
  if (m.measure) m.map.setPaintProperty("cells", "fill-color", rampExpression(m.measure, m.domain));
  renderCellLegend(m.ui.cellLegend, m.measure, m.domain, m.type && eventLabel(m.type));
}

// After each render: what is drawn (counts on the map element, for the status line and
// the browser test), the events' legend, and the ramp rescaled to the cells in view.
function afterIdle(m) {
  const map = m.map;
  const cells = map.queryRenderedFeatures({ layers: ["cells"] });
  const events = map.queryRenderedFeatures({ layers: ["events"] });
  const roads = map.getLayer("roads") ? map.queryRenderedFeatures({ layers: ["roads"] }) : [];
  Object.assign(m.ui.map.dataset, {
    renderedCells: cells.length, renderedEvents: events.length, renderedRoads: roads.length,
    view: map.getBounds().toArray().flat().map((v) => v.toFixed(5)).join(","),
    zoom: map.getZoom().toFixed(2),
  });
  const counts = countBy(events, "type");
  if (JSON.stringify(counts) !== JSON.stringify(m.counts) || !m.ui.eventLegend.childElementCount) {
    m.counts = counts;
    renderEventLegend(m.ui.eventLegend, counts, m.type);
  }
  m.ui.status.textContent = `${events.length} events · ${cells.length} road-condition cells`
    + `${roads.length ? ` · ${roads.length} street segments` : ""} in view`;
  if (!m.measure) return;
  const domain = domainOf(m.measure, cells.map((f) => Number(f.properties[m.measure.key])));
  if (domain[0] !== m.domain[0] || domain[1] !== m.domain[1] || !m.ui.cellLegend.childElementCount) {
    m.domain = domain;
    applyMeasure(m);
  }
}

function hover(m) {
  const popup = new Popup({ closeButton: false, closeOnClick: false, maxWidth: "280px" });
  const show = (e, html) => {
    m.map.getCanvas().style.cursor = "pointer";
    popup.setLngLat(e.lngLat).setHTML(html).addTo(m.map);
  };
  const hide = () => { m.map.getCanvas().style.cursor = ""; popup.remove(); };
  m.map.on("mousemove", "events", (e) => {
    const p = e.features[0].properties;
    show(e, `<b>${escape(eventLabel(p.type))}</b><br>${localTime(Number(p.time_ms), true)}`);
  });
  m.map.on("mousemove", "cells", (e) => {
    if (m.map.queryRenderedFeatures(e.point, { layers: ["events"] }).length) return;
    const p = e.features[0].properties;
    const rows = m.measures.filter((x) => p[x.key] != null)
      .map((x) => `${escape(x.label)}: ${formatMeasure(x, p[x.key])}${x.share ? "" : ` ${escape(x.unit)}`}`);
    show(e, [`<b>cell ${escape(p.cell ?? "")}</b>`, ...rows].join("<br>"));
  });
  m.map.on("mouseleave", "events", hide);
  m.map.on("mouseleave", "cells", hide);
}

function escape(s) {
  return String(s).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

function bindControls(m) {
  m.ui.measure.addEventListener("change", () => {
    m.measure = m.measures.find((x) => x.key === m.ui.measure.value) ?? null;
    m.domain = [0, 1];
    applyMeasure(m);
  });
  const pick = (e) => {
    const row = e.target.closest(".legend-row[data-type]");
    if (!row || (e.type === "keydown" && e.key !== "Enter" && e.key !== " ")) return;
    m.type = m.type === row.dataset.type ? null : row.dataset.type;
    applyWindow(m);
    applyMeasure(m);
    renderEventLegend(m.ui.eventLegend, m.counts, m.type);
  };
  m.ui.eventLegend.addEventListener("click", pick);
  m.ui.eventLegend.addEventListener("keydown", pick);
  m.ui.step.addEventListener("change", async () => {
    m.index = -1; // a new step starts at the latest window
    await loadExtent(m);
    applyWindow(m);
  });
  m.ui.slider.addEventListener("input", () => {
    m.index = Number(m.ui.slider.value);
    m.ui.period.textContent = windowText(currentWindow(m));
  });
  m.ui.slider.addEventListener("change", () => {
    m.index = Number(m.ui.slider.value);
    applyWindow(m);
  });
}

// Periodically: the extent grows with time; the latest window's tiles are fetched again
// (the collector marks a recent period's tiles fresh for a minute); the view follows the
// fleet's bounds until the operator moves the map.
async function refresh(m) {
  const wasLatest = m.index === m.windows.length - 1;
  const before = currentWindow(m);
  await loadExtent(m);
  const now = currentWindow(m);
  if (wasLatest || now.since !== before.since) applyWindow(m);
  if (!m.moved) follow(m, (await m.getJSON("tiles/road_conditions.json")).bounds);
}

// The view on the fleet's streets (TileJSON bounds), until the operator moves the map.
function follow(m, bounds) {
  if (!m.moved && !worldLike(bounds)) m.map.fitBounds(bounds, FIT);
}
