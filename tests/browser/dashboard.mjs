// Drives the operator dashboard in a real headless Chromium (Debian's, via playwright-core;
// no browser download). One JSON object on stdin describes the checks; one JSON object on
// stdout reports what was seen. Exit 0 when every check passed, 1 otherwise.
//
// stdin: {url, token, chromium, userDataDir, screenshotDir, vehicles: [ids], offline: id,
//         alertVehicle: id|null, timeoutMs}
// MapLibre needs WebGL: headless Chromium gets it from SwiftShader (software, through ANGLE).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const spec = JSON.parse(readFileSync(0, "utf8"));
const require = createRequire(join(spec.nodeModules, "x.js"));
const { chromium } = require("playwright-core");

const report = { checks: {}, console: [], screenshots: [] };
const deadline = (ms) => Date.now() + ms;

async function poll(what, fn, timeoutMs) {
  const until = deadline(timeoutMs);
  let last;
  for (let i = 0; i < 10000 && Date.now() < until; i += 1) {
    last = await fn();
    if (last.ok) { report.checks[what] = { ok: true, ...last }; return true; }
    await new Promise((r) => setTimeout(r, 500));
  }
  report.checks[what] = { ok: false, ...last };
  return false;
}

// The map: tiles of every layer load, cells, events and streets are drawn, both legends
// have entries; then the hour step narrows the tiles' period to one hour
// and another measure recolours the cells.
async function checkMap(page, spec) {
  const drawn = () => page.$eval("#map", (m) => ({ cells: Number(m.dataset.renderedCells ?? 0),
    events: Number(m.dataset.renderedEvents ?? 0), roads: Number(m.dataset.renderedRoads ?? 0),
    since: m.dataset.since, until: m.dataset.until }));
  let ok = await poll("map draws cells, events and streets from tiles", async () => {
    const d = await drawn();
    return { ok: d.cells > 0 && d.events > 0 && d.roads > 0, ...d };
  }, spec.mapTimeoutMs ?? spec.timeoutMs);
  const layers = new Set(report.tiles.filter((t) => t.status === 200).map((t) => t.layer));
  report.checks["tiles load (200) for every layer"] = {
    ok: ["road_conditions", "events", "roads"].every((l) => layers.has(l))
      && report.tiles.every((t) => t.status === 200 || t.status === 304),
    layers: [...layers], failed: report.tiles.filter((t) => t.status >= 400).slice(0, 5) };
  const legend = await page.evaluate(() => ({
    ramp: !!document.querySelector("#cell-legend .ramp"),
    cellEntries: [...document.querySelectorAll("#cell-legend .legend-entry")].map((e) => e.textContent),
    unit: document.querySelector("#cell-legend .legend-unit")?.textContent ?? "",
    eventTypes: [...document.querySelectorAll("#event-legend .legend-row")].map((r) => r.dataset.type),
    title: document.querySelector("#event-legend .legend-title")?.textContent ?? "",
  }));
  report.checks["legends have entries"] = {
    ok: legend.ramp && legend.cellEntries.length >= 3 && legend.unit.length > 0
      && legend.eventTypes.length > 0 && legend.title === "events in view", ...legend };
  ok &&= report.checks["tiles load (200) for every layer"].ok && report.checks["legends have entries"].ok;

  await page.selectOption("#map-step", "hour");
  ok = (await poll("the hour step sets a one-hour since/until on the tiles", async () => {
    const d = await drawn();
    const hour = d.since && Date.parse(d.until) - Date.parse(d.since) === 3600 * 1000;
    const fetched = report.tiles.filter((t) => t.since === d.since && t.until === d.until);
    return { ok: !!hour && fetched.length > 0 && d.events > 0, ...d, fetched: fetched.length };
  }, spec.timeoutMs)) && ok;
  const measures = await page.$$eval("#map-measure option", (os) => os.map((o) => o.value));
  await page.selectOption("#map-measure", measures[1] ?? measures[0]);
  ok = (await poll("another measure recolours the cells", async () => {
    const shown = await page.$eval("#cell-legend", (b) => b.dataset.measure);
    return { ok: measures.length > 1 && shown === measures[1], measures, shown };
  }, spec.timeoutMs)) && ok;
  await page.selectOption("#map-measure", measures[0]);
  await page.selectOption("#map-step", "day");

  // A type picked in the events' legend: its tiles only, that type alone in the legend.
  const type = await page.$eval("#event-legend .legend-row[data-type]", (r) => r.dataset.type);
  await page.click(`#event-legend .legend-row[data-type="${type}"]`);
  ok = (await poll("a legend click shows one event type", async () => {
    const d = await drawn();
    const rows = await page.$$eval("#event-legend .legend-row", (rs) => rs.map((r) => r.dataset.type));
    const fetched = report.tiles.filter((t) => t.layer === "events" && t.type === type && t.status === 200);
    return { ok: d.events > 0 && fetched.length > 0 && rows.length === 1 && rows[0] === type, type, rows, ...d };
  }, spec.timeoutMs)) && ok;
  await page.click(`#event-legend .legend-row[data-type="${type}"]`);
  ok = (await poll("a second click shows every type again", async () => {
    const t = await page.$eval("#map", (m) => m.dataset.type);
    const title = await page.textContent("#event-legend .legend-title");
    return { ok: t === "" && title === "events in view", type: t, title };
  }, spec.timeoutMs)) && ok;
  return ok;
}

const context = await chromium.launchPersistentContext(spec.userDataDir, {
  executablePath: spec.chromium,
  headless: true,
  args: ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1400, height: 1000 },
});
let ok = true;
try {
  const page = context.pages()[0] ?? await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") report.console.push(m.text()); });
  page.on("pageerror", (e) => report.console.push(String(e)));
  // Nothing but the collector: any other request is a bundling mistake (a CDN, a tile server).
  const origin = new URL(spec.url).origin;
  report.foreign = [];
  await page.route("**/*", (route) => {
    const u = route.request().url();
    if (u.startsWith(origin) || u.startsWith("data:")) return route.continue();
    report.foreign.push(u);
    return route.abort();
  });
  // Every vector tile the map fetched: its layer, status and period.
  report.tiles = [];
  page.on("response", (r) => {
    const u = new URL(r.url());
    const m = u.pathname.match(/\/tiles\/(\w+)\/\d+\/\d+\/\d+\.mvt$/);
    if (m) report.tiles.push({ layer: m[1], status: r.status(), since: u.searchParams.get("since"),
      until: u.searchParams.get("until"), type: u.searchParams.get("type") });
  });
  // The first visit carries the token in the fragment, as the demo's link does; the page
  // keeps it for the session and takes it out of the address bar.
  await page.goto(`${spec.url}#token=${spec.token}`, { waitUntil: "load" });
  ok = (await poll("token taken out of the address bar", async () => {
    const url = page.url();
    return { ok: !url.includes("token="), url: url.replace(/token=.*/, "token=…") };
  }, spec.timeoutMs)) && ok;
  const rows = () => page.$$eval("#fleet tbody tr[data-vehicle]", (trs) =>
    trs.map((tr) => ({ id: tr.dataset.vehicle, status: tr.dataset.status,
      alerts: [...tr.querySelectorAll(".alert")].map((a) => a.textContent) })));

  ok = (await poll("table shows the fleet", async () => {
    const seen = (await rows()).map((r) => r.id);
    return { ok: spec.vehicles.every((v) => seen.includes(v)), seen };
  }, spec.timeoutMs)) && ok;

  // Sorting: the vehicle column, then reversed by a second click.
  await page.click('#fleet th[data-key="vehicle"]');
  const asc = (await rows()).map((r) => r.id);
  await page.click('#fleet th[data-key="vehicle"]');
  const desc = (await rows()).map((r) => r.id);
  const sorted = [...asc].sort((a, b) => a.localeCompare(b));
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  report.checks["sorts by header"] = {
    ok: asc.length > 1 && same(desc, asc.slice().reverse()) && (same(asc, sorted) || same(desc, sorted)),
    asc, desc };
  ok &&= report.checks["sorts by header"].ok;

  // Filtering by text.
  await page.fill("#filter", spec.vehicles[0]);
  const filtered = (await rows()).map((r) => r.id);
  report.checks["filters by text"] = { ok: filtered.length >= 1 && filtered.every((v) => v.includes(spec.vehicles[0])), filtered };
  ok &&= report.checks["filters by text"].ok;
  await page.fill("#filter", "");

  ok = (await poll("stopped vehicle turns offline", async () => {
    const r = (await rows()).find((x) => x.id === spec.offline);
    return { ok: r?.status === "offline", row: r };
  }, spec.timeoutMs)) && ok;

  await page.selectOption("#status-filter", "offline");
  const offline = await rows();
  report.checks["filters by status"] = { ok: offline.length >= 1 && offline.every((r) => r.status === "offline"), offline };
  ok &&= report.checks["filters by status"].ok;
  await page.selectOption("#status-filter", "");

  ok = (await checkMap(page, spec)) && ok;

  if (spec.alertVehicle) {
    ok = (await poll("alert appears", async () => {
      const r = (await rows()).find((x) => x.id === spec.alertVehicle);
      return { ok: (r?.alerts.length ?? 0) > 0, row: r };
    }, spec.alertTimeoutMs ?? spec.timeoutMs)) && ok;
  }
  // Every value sits under its header: each column aligned as its header, numbers right.
  const alignment = await page.$$eval("#fleet", ([table]) => {
    const heads = [...table.querySelectorAll("thead th")];
    return heads.map((th, i) => ({
      key: th.dataset.key,
      head: getComputedStyle(th).textAlign,
      cells: [...table.querySelectorAll(`tbody tr[data-vehicle] td:nth-child(${i + 1})`)]
        .map((td) => getComputedStyle(td).textAlign),
    }));
  });
  const numeric = ["backlog", "lag", "data"];
  report.checks["values aligned under their headers"] = {
    ok: alignment.every((c) => c.cells.length > 0 && c.cells.every((a) => a === c.head))
      && alignment.filter((c) => numeric.includes(c.key)).every((c) => c.head === "right"),
    alignment };
  ok &&= report.checks["values aligned under their headers"].ok;

  // The map once the drives have gone on a while (it refits to the fleet's streets).
  await page.mouse.move(0, 0); // no hover highlight or tooltip in the picture
  const mapShot = join(spec.screenshotDir, "dashboard-map.png");
  await page.locator(".map-wrap").screenshot({ path: mapShot });
  report.screenshots.push(mapShot);

  const fleetShot = join(spec.screenshotDir, "dashboard-fleet.png");
  await page.screenshot({ path: fleetShot, fullPage: true });
  report.screenshots.push(fleetShot);

  await page.goto(`${spec.url}#/vehicle/${encodeURIComponent(spec.vehicles[0])}`);
  ok = (await poll("vehicle page draws charts", async () => {
    const charts = await page.$$eval(".chart canvas", (c) => c.length);
    const status = await page.textContent('[data-testid="vehicle-status"]').catch(() => null);
    return { ok: charts > 0 && status != null, charts, status };
  }, spec.timeoutMs)) && ok;
  // One chart per measure, a unit on every axis, and x ranges around the data (within the
  // selected window, never years around a lone point).
  const charts = () => page.$$eval(".chart", (cards) => cards.map((c) => ({
    key: c.dataset.series, title: c.querySelector("h3")?.textContent,
    xMin: Number(c.dataset.xMin), xMax: Number(c.dataset.xMax),
    tMin: Number(c.dataset.tMin), tMax: Number(c.dataset.tMax),
    xLabel: c.dataset.xLabel, yLabel: c.dataset.yLabel })));
  const sameMeasure = [["outbox_pending_batches", "backlog_batches"],
    ["outbox_oldest_age_ms", "backlog_age_s"], ["bytes_sent_today", "data_today_bytes"]];
  const aroundData = (list, windowS) => list.every((c) => c.xMin <= c.tMin && c.xMax >= c.tMax
    && c.xMax - c.xMin <= windowS * 1.2 && c.xMax - c.xMin > 0);
  const drawn = await charts();
  const keys = drawn.map((c) => c.key);
  const titles = drawn.map((c) => c.title);
  report.checks["one series per measure"] = {
    ok: drawn.length > 0 && new Set(titles).size === titles.length
      && sameMeasure.every((pair) => !pair.every((k) => keys.includes(k))), keys, titles };
  report.checks["a unit on every axis"] = {
    ok: drawn.length > 0 && drawn.every((c) => c.xLabel && c.yLabel), drawn };
  report.checks["axis ranges around the data (6 h)"] = { ok: drawn.length > 0 && aroundData(drawn, 6 * 3600), drawn };
  ok &&= report.checks["one series per measure"].ok && report.checks["a unit on every axis"].ok
    && report.checks["axis ranges around the data (6 h)"].ok;
  await page.selectOption("#window", "3600");
  ok = (await poll("window selector narrows the charts to 1 h", async () => {
    const list = await charts();
    return { ok: list.length > 0 && aroundData(list, 3600), list };
  }, spec.timeoutMs)) && ok;

  const vehicleShot = join(spec.screenshotDir, "dashboard-vehicle.png");
  await page.screenshot({ path: vehicleShot, fullPage: true });
  report.screenshots.push(vehicleShot);

  report.checks["no foreign requests"] = { ok: report.foreign.length === 0 };
  report.checks["no page errors"] = { ok: report.console.length === 0 };
  ok &&= report.checks["no foreign requests"].ok && report.checks["no page errors"].ok;
} catch (e) {
  ok = false;
  report.error = String(e?.stack ?? e);
} finally {
  await context.close();
}
report.ok = ok;
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(ok ? 0 : 1);
