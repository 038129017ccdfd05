// The map's pure parts under node's own test runner (`node --test`): the period windows,
// the tiles' query, the stored events' time extent, the measures and their colour ramps.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  domainOf, eventColorExpression, eventColors, measuresOf, rampExpression,
} from "../../frontend/src/map-legend.js";
import { EVENT_TYPES } from "../../frontend/src/contracts.generated.js";
import { HOUR_MS, eventExtent, timeWindows, withParams } from "../../frontend/src/map-time.js";

const T = Date.UTC(2026, 2, 2, 7, 30); // 07:30 UTC

test("hour windows cover the extent and end at the hour after its end", () => {
  const w = timeWindows("hour", T - 2 * HOUR_MS, T);
  assert.equal(w.length, 3);
  assert.deepEqual(w.at(-1), { since: Date.UTC(2026, 2, 2, 7), until: Date.UTC(2026, 2, 2, 8) });
  assert.equal(w[0].since, Date.UTC(2026, 2, 2, 5));
  w.slice(1).forEach((x, i) => assert.equal(x.since, w[i].until));
});

test("day windows are 24 h ending on that hour; all is one window; a lone instant gets one", () => {
  const d = timeWindows("day", T - 50 * HOUR_MS, T);
  assert.equal(d.length, 3);
  assert.ok(d.every((x) => x.until - x.since === 24 * HOUR_MS));
  assert.equal(d.at(-1).until, Date.UTC(2026, 2, 2, 8));
  assert.deepEqual(timeWindows("all", T - 50 * HOUR_MS, T),
    [{ since: Date.UTC(2026, 2, 2, 7) - 50 * HOUR_MS, until: Date.UTC(2026, 2, 2, 8) }]);
  assert.equal(timeWindows("hour", T, T).length, 1);
});

test("years of data keep the slider to its latest positions", () => {
  const w = timeWindows("hour", T - 3 * 365 * 24 * HOUR_MS, T);
  assert.equal(w.length, 24 * 92);
  assert.equal(w.at(-1).until, Date.UTC(2026, 2, 2, 8));
});

test("the period goes into the tiles' query; the template's braces stay", () => {
  const t = "http://h/tiles/events/{z}/{x}/{y}.mvt";
  assert.equal(withParams(t, { since: "a", until: "b" }), `${t}?since=a&until=b`);
  assert.equal(withParams(`${t}?type=fcw&since=x`, { since: "a" }), `${t}?type=fcw&since=a`);
  assert.equal(withParams(`${t}?since=x`, { since: null }), t);
});

// A getJSON over stored event times (oldest first, as /v1/events answers).
function eventsApi(times) {
  const calls = [];
  const getJSON = async (path) => {
    calls.push(path);
    const since = new URLSearchParams(path.split("?")[1]).get("since");
    const t = times.find((x) => since == null || x >= Date.parse(since));
    return { features: t == null ? [] : [{ properties: { time: new Date(t).toISOString() } }] };
  };
  return { getJSON, calls };
}

test("the extent of stored events: newest found by halving, one look-up while live", async () => {
  const old = [T - 40 * 24 * HOUR_MS, T - 30 * 24 * HOUR_MS, T - 3 * 24 * HOUR_MS - 1234];
  const api = eventsApi(old);
  const e = await eventExtent(api.getJSON, null, T);
  assert.equal(e.first, old[0]);
  assert.ok(e.last <= old[2] && e.last > old[2] - HOUR_MS, JSON.stringify(e));
  assert.ok(api.calls.length <= 14, api.calls.length);
  const live = eventsApi([T - 5 * HOUR_MS, T - 60_000]);
  assert.deepEqual(await eventExtent(live.getJSON, null, T), { first: T - 5 * HOUR_MS, last: T });
  assert.equal(live.calls.length, 2);
  assert.equal(await eventExtent(eventsApi([]).getJSON, null, T), null);
});

test("measures: the layer's numeric fields, known ones first and labelled", () => {
  const fields = { cell: "String", res: "Number", passes: "Number", rate: "Number",
    wipers_share: "Number", lane_quality_share: "Number", new_thing: "Number" };
  const m = measuresOf(fields);
  assert.deepEqual(m.map((x) => x.key), ["rate", "passes", "wipers_share", "lane_quality_share", "new_thing"]);
  assert.equal(m[0].unit, "events per 100 passes");
  assert.equal(m.at(-1).label, "new thing");
  assert.deepEqual(measuresOf(undefined), []);
});

test("ramp domains: shares 0-100 %, others 0 to a round 95th percentile", () => {
  const [rate, , wipers] = measuresOf({ rate: "Number", passes: "Number", wipers_share: "Number" });
  assert.deepEqual(domainOf(wipers, [0.2, 0.9]), [0, 1]);
  const values = Array.from({ length: 100 }, (_, i) => i + 1); // p95 = 96
  assert.deepEqual(domainOf(rate, values), [0, 100]);
  assert.deepEqual(domainOf(rate, []), [0, 1]);
  const expr = rampExpression(rate, [0, 100]);
  assert.equal(expr[0], "case");
  assert.deepEqual(expr[1], ["has", "rate"]);
  assert.equal(expr[2].length, 3 + 2 * 5);
});

test("every event type of the contracts has a colour of its own in the map's expression", () => {
  const colours = eventColors();
  assert.deepEqual(Object.keys(colours).sort(), Object.keys(EVENT_TYPES).sort());
  const expr = eventColorExpression();
  assert.equal(expr[0], "match");
  assert.equal(expr.length, 2 + 2 * Object.keys(EVENT_TYPES).length + 1);
});
