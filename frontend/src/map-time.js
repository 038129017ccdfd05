// The map's period: the slider's windows over the stored events' time extent, and the
// tiles' query parameters. Pure but for eventExtent, which asks the collector through
// the getJSON it is given.

export const HOUR_MS = 3600 * 1000;
const STEP_MS = { hour: HOUR_MS, day: 24 * HOUR_MS };
const MAX_STEPS = 24 * 92; // the slider's positions at most (the latest ones)

/** The slider's windows over [startMs, endMs]: whole hours (or 24 h ending on an hour),
 * the last ending at the hour after endMs; "all" is one window over the whole extent. */
export function timeWindows(step, startMs, endMs) {
  const end = Math.floor(endMs / HOUR_MS) * HOUR_MS + HOUR_MS;
  const first = Math.floor(startMs / HOUR_MS) * HOUR_MS;
  if (step === "all") return [{ since: first, until: end }];
  const size = STEP_MS[step];
  const n = Math.min(MAX_STEPS, Math.max(1, Math.ceil((end - first) / size)));
  return Array.from({ length: n }, (_, i) => ({ since: end - (n - i) * size, until: end - (n - 1 - i) * size }));
}

export function localTime(ms, withDate) {
  const d = new Date(ms);
  const two = (n) => String(n).padStart(2, "0");
  const hm = `${two(d.getHours())}:${two(d.getMinutes())}`;
  return withDate ? `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${hm}` : hm;
}

export function windowText(w) {
  const sameDay = new Date(w.since).toDateString() === new Date(w.until - 1).toDateString();
  return `${localTime(w.since, true)} – ${localTime(w.until, !sameDay)}`;
}

/** A TileJSON tile template with `params` set in its query (braces stay as they are). */
export function withParams(template, params) {
  const [path, query = ""] = template.split("?");
  const q = new URLSearchParams(query);
  for (const [k, v] of Object.entries(params)) {
    if (v == null) q.delete(k);
    else q.set(k, v);
  }
  const s = q.toString();
  const abs = path.startsWith("/") && globalThis.location ? `${location.origin}${path}` : path;
  return s ? `${abs}?${s}` : abs;
}

// The time of the first stored event at or after `sinceMs` (any, without it), or null.
async function firstEventAt(getJSON, sinceMs) {
  const since = sinceMs == null ? "" : `&since=${new Date(sinceMs).toISOString()}`;
  const body = await getJSON(`v1/events?limit=1${since}`);
  const t = Date.parse(body?.features?.[0]?.properties?.time ?? "");
  return Number.isNaN(t) ? null : t;
}

/** The stored events' time extent {first, last} (last: within an hour before the newest
 * event's hour ends, or now while the fleet is live), or null when there are none; from
 * `known`, the previous answer, the search starts where that left off. The events API is
 * oldest first, so the first is one request; the last is found by halving [known, now],
 * each step one indexed lookup ("an event since t?"), about log2(hours of data) of them,
 * one when the fleet is live. */
export async function eventExtent(getJSON, known = null, nowMs = Date.now()) {
  const first = known?.first ?? await firstEventAt(getJSON, null);
  if (first == null) return null;
  let lo = known?.last ?? first; // an event at or after lo exists
  let hi = Math.floor(nowMs / HOUR_MS) * HOUR_MS + HOUR_MS;
  if (lo >= hi) return { first, last: lo };
  if (await firstEventAt(getJSON, hi - HOUR_MS) != null) return { first, last: nowMs };
  for (let i = 0; i < 64 && hi - lo > HOUR_MS; i += 1) {
    const mid = Math.floor((lo + hi) / 2);
    const t = await firstEventAt(getJSON, mid);
    if (t != null && t < hi) lo = t;
    else hi = mid;
  }
  return { first, last: lo };
}
