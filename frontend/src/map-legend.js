// What the map's colours mean: the road-condition measures (a colour ramp each, with a
// legend of ramp, labels and unit) and the event types (a colour each, with a legend).
// Pure functions over plain values, plus the two legends' DOM.
import { EVENT_TYPES } from "./contracts.generated.js";

// The measures of the collector's road_conditions tiles a cell can be coloured by, in the
// selector's order. A numeric field of the layer not listed here is offered under its own
// name. share: a fraction of passes, drawn 0-100 %; good: "high" when more is better
// (the ramp runs the other way, so red always means worse).
export const MEASURES = {
  rate: { label: "event rate", unit: "events per 100 passes" },
  passes: { label: "passes", unit: "passes" },
  wipers_share: { label: "wipers on", unit: "% of passes", share: true },
  lane_quality_share: { label: "good lane markings", unit: "% of passes", share: true, good: "high" },
  failsafe_share: { label: "camera blind (failsafe)", unit: "% of passes", share: true },
  mean_speed_kmh: { label: "mean speed", unit: "km/h", good: "high" },
  events: { label: "events", unit: "events" },
};
// Numeric fields that are no measure.
const NOT_MEASURES = new Set(["res", "time_ms"]);

// Light to dark, low to high ("worse" at the dark end).
const RAMP = ["#ffeda0", "#fec44f", "#fd8d3c", "#e31a1c", "#800026"];
export const NO_VALUE_COLOR = "#b0bec5";

// Event colours: a fixed one for the types an operator sees most, a palette by the
// contract's order for the others, so every type of contracts.generated.js has one.
const EVENT_COLORS = {
  fcw: "#c62828", pcw: "#ad1457", peds_in_dz: "#8e24aa", harsh_braking: "#e65100",
  headway_warning: "#f9a825", ldw_left: "#1565c0", ldw_right: "#0277bd", overspeed: "#6d4c41",
  tsr_sign: "#2e7d32", wipers_on: "#00838f", camera_failsafe: "#424242",
};
const PALETTE = ["#5e35b1", "#00695c", "#9e9d24", "#4e342e", "#37474f", "#d81b60", "#3949ab"];
const UNKNOWN_EVENT_COLOR = "#607d8b";

/** {type: colour} for every event type of the contracts. */
export function eventColors() {
  const out = {};
  let spare = 0;
  for (const type of Object.keys(EVENT_TYPES)) {
    out[type] = EVENT_COLORS[type] ?? PALETTE[spare++ % PALETTE.length];
  }
  return out;
}

/** The contract's label, and the wire name for a type this dashboard does not know yet. */
export function eventLabel(type) {
  const known = EVENT_TYPES[type];
  return known ? known.label : type;
}

/** A MapLibre expression colouring an event point by its `type`. */
export function eventColorExpression() {
  const pairs = Object.entries(eventColors()).flat();
  return ["match", ["get", "type"], ...pairs, UNKNOWN_EVENT_COLOR];
}

/** [{key, label, unit, ...}] of the layer's numeric fields (TileJSON vector_layers). */
export function measuresOf(fields) {
  const numeric = Object.entries(fields ?? {})
    .filter(([name, kind]) => String(kind).toLowerCase() === "number" && !NOT_MEASURES.has(name))
    .map(([name]) => name);
  const known = Object.keys(MEASURES).filter((k) => numeric.includes(k));
  const other = numeric.filter((k) => !MEASURES[k]).sort();
  return [
    ...known.map((key) => ({ key, ...MEASURES[key] })),
    ...other.map((key) => ({ key, label: key.replaceAll("_", " "), unit: "" })),
  ];
}

// A round number at or above x (1, 2, 2.5, 5 times a power of ten).
function niceCeil(x) {
  if (!(x > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((v) => v >= x * 0.999);
}

/** [lo, hi] the ramp spans for `measure` over the values in view: 0 to 100 % for a share,
 * else 0 (or the lowest value, for speeds) to a round number at the 95th percentile. */
export function domainOf(measure, values) {
  if (measure.share) return [0, 1];
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b);
  if (!sorted.length) return [0, 1];
  const hi = niceCeil(sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.95))]);
  const lo = measure.good === "high" ? Math.floor(sorted[0]) : 0;
  return [Math.min(lo, hi - 1e-9), hi];
}

function rampColors(measure) {
  return measure.good === "high" ? [...RAMP].reverse() : RAMP;
}

/** A MapLibre fill-color expression: the ramp over `domain`, grey where the measure is missing. */
export function rampExpression(measure, [lo, hi]) {
  const colors = rampColors(measure);
  const stops = colors.flatMap((c, i) => [lo + ((hi - lo) * i) / (colors.length - 1), c]);
  return ["case", ["has", measure.key],
    ["interpolate", ["linear"], ["to-number", ["get", measure.key]], ...stops],
    NO_VALUE_COLOR];
}

/** A value of `measure` as the legend and the tooltips write it. */
export function formatMeasure(measure, value) {
  if (value == null || !Number.isFinite(Number(value))) return "–";
  const v = Number(value);
  if (measure.share) return `${+(v * 100).toFixed(v < 0.1 ? 1 : 0)} %`;
  if (Math.abs(v) >= 100) return String(Math.round(v));
  return String(+v.toFixed(Math.abs(v) >= 10 ? 1 : 2));
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

/** The cells' legend: title, colour ramp, three labels, the unit and the no-data swatch;
 * `only`: the label of the one event type the cells count, if one is picked. */
export function renderCellLegend(box, measure, domain, only = null) {
  if (!measure) {
    box.replaceChildren(el("div", { class: "legend-title", text: "road conditions: no measure" }));
    return;
  }
  const colors = rampColors(measure);
  const [lo, hi] = domain;
  const labels = [lo, (lo + hi) / 2, hi].map((v) => formatMeasure(measure, v));
  const top = measure.share ? "" : "+";
  box.replaceChildren(
    el("div", { class: "legend-title", text: `road conditions: ${measure.label}${only ? ` (${only} only)` : ""}` }),
    el("div", { class: "ramp", "data-testid": "legend-ramp",
      style: `background: linear-gradient(to right, ${colors.join(", ")})` }),
    el("div", { class: "ramp-labels" },
      ...labels.map((t, i) => el("span", { class: "legend-entry", text: i === 2 ? `${t}${top}` : t }))),
    el("div", { class: "legend-unit", text: measure.unit || "value" }),
    el("div", { class: "legend-row" },
      el("span", { class: "swatch", style: `background: ${NO_VALUE_COLOR}` }),
      el("span", { class: "legend-entry", text: "no passes" })),
  );
  box.dataset.measure = measure.key;
}

/** The events' legend: one row per type in view (colour, label, count); all the
 * contract's types when none is in view. A row is a button: `selected` is the one type
 * shown, if one is picked (a click on it again shows all). */
export function renderEventLegend(box, counts, selected = null) {
  const colors = eventColors();
  const present = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  let rows = present.length ? present : Object.keys(colors).map((t) => [t, null]);
  if (selected) rows = [[selected, counts[selected] ?? 0]];
  let title = present.length ? "events in view" : "events (none in view)";
  if (selected) title = "events of one type (click it for all)";
  box.replaceChildren(
    el("div", { class: "legend-title", text: title }),
    ...rows.map(([type, n]) => el("div", {
      class: `legend-row pick${type === selected ? " selected" : ""}`, "data-type": type,
      role: "button", tabindex: "0", title: type === selected ? "show every type" : "show only this type",
    },
      el("span", { class: "swatch dot", style: `background: ${colors[type] ?? UNKNOWN_EVENT_COLOR}` }),
      el("span", { class: "legend-entry", text: eventLabel(type) }),
      el("span", { class: "legend-count", text: n == null ? "" : String(n) }))),
  );
}
