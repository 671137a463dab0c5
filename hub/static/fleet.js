// fieldpact operator page: the fleet view — sites → devices, what changed recently, a device's
// recent values. app.js loads the board and calls loadFleet / renderFleet.
//
// Rules:
// - Sites that need a person come first: offline (no device heard), then degraded (a device
//   offline, in FAULT, alarmed or drifting), then the rest; by name within each.
// - Desired vs observed snapshot comes from GET /api/drift; a hub without it (404) shows the
//   observed contract only and says why, and is not asked again until the next sign-in.
// - The timeline merges the audit trail (pushes, operator actions, hub decisions), reconciliation
//   reports, alarms raised and cleared and, where the hub has them, snapshots: newest first.
// - Values from the API reach the DOM as text only (el() from app.js; chart.js for SVG).
"use strict";

const TIMELINE_ROWS = 25; // one screen of recent history; the audit table below has the rest
const OFFLINE_STATES = ["projected", "unknown"]; // no live contact: the hub estimates or waits
const SITE_ORDER = { offline: 0, degraded: 1, ok: 2 };
// Audit actions that are bookkeeping, not change: a signature always accompanies a push, and a
// transition is shown by its state badge and its reconciliation.
const QUIET_ACTIONS = ["sign", "submit", "transition"];

const optional = { drift: true, snapshots: true }; // routes this hub has (until a 404 says not)
let chartDevice = null; // the device whose values are charted (a click on a device sets it)

function resetFleet() {
  optional.drift = true;
  optional.snapshots = true;
  chartDevice = null;
  outageRead = { id: null, rec: null };
  seriesKept = null;
}

// An optional route: null (and never asked again) when the hub answers 404 or 405.
async function optionalApi(api, name, path) {
  if (!optional[name]) return null;
  try {
    return await api(path);
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      optional[name] = false;
      return null;
    }
    throw err;
  }
}

function rowsOf(body, key) {
  if (Array.isArray(body)) return body;
  return body && Array.isArray(body[key]) ? body[key] : [];
}

// The outage chart's reconciliation, read in full (with its trajectories) once: a report never
// changes, so it is kept by id across refreshes.
let outageRead = { id: null, rec: null };

async function outageOf(api, recs) {
  const rec = outageToShow(recs);
  if (!rec || !(rec.trajectory_points > 0)) return rec;
  if (outageRead.id !== rec.id) {
    outageRead = { id: rec.id, rec: await api(`/api/reconciliations/${encodeURIComponent(rec.id)}`) };
  }
  return outageRead.rec;
}

// The charted device's series: the whole window once, then on each refresh only what came after
// the last answer's `to_seq` (GET …/series?after_seq=), merged here: a repeat of a point's last
// value is no new sample, and what fell out of the window (before `from_ms`) goes, its last value
// held at the window's start. Every WHOLE_EVERY refreshes the whole window is read again: rows
// the hub stored late inside it (a resent range) are in that one.
const WHOLE_EVERY = 30; // a minute of 2 s refreshes
let seriesKept = null; // { device, body, polls }

async function seriesOf(api, device) {
  const path = `/api/devices/${encodeURIComponent(device)}/series`;
  const held = seriesKept && seriesKept.device === device && seriesKept.polls < WHOLE_EVERY
    && Number.isInteger(seriesKept.body.to_seq) ? seriesKept : null; // an older hub: whole
  const kept = held ? held.body : null;
  let body = kept === null ? await api(path) : await api(`${path}?after_seq=${kept.to_seq}`);
  if (kept !== null && body.after_seq + 1 >= body.from_seq) body = mergeSeries(kept, body);
  seriesKept = { device, body, polls: held ? held.polls + 1 : 0 };
  return body;
}

function mergeSeries(kept, more) {
  const points = new Map(kept.points.map((p) => [p.name, { ...p, samples: p.samples.slice() }]));
  for (const p of more.points) {
    const into = points.get(p.name) || { name: p.name, unit: p.unit, samples: [] };
    into.unit = p.unit;
    for (const s of p.samples) {
      const last = into.samples[into.samples.length - 1];
      if (!last || last[1] !== s[1]) into.samples.push(s);
    }
    points.set(p.name, into);
  }
  const from = more.from_ms;
  const trimmed = [...points.values()].map((p) => ({ ...p, samples: inWindow(p.samples, from) }))
    .filter((p) => p.samples.some((s) => s[1] !== null))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { ...more, points: trimmed };
}

function inWindow(samples, fromMs) {
  if (typeof fromMs !== "number") return samples;
  const i = samples.findIndex((s) => s[0] >= fromMs);
  const kept = i < 0 ? [] : samples.slice(i);
  const held = i < 0 ? samples[samples.length - 1] : samples[i - 1];
  if (held && (kept.length === 0 || kept[0][0] > fromMs)) kept.unshift([fromMs, held[1]]);
  return kept;
}

async function loadFleet(api, devices, recs) {
  const [drift, snapshots, cleared] = await Promise.all([
    optionalApi(api, "drift", "/api/drift"),
    optionalApi(api, "snapshots", "/api/snapshots"),
    api(`/api/alarms?active=false`),
  ]);
  if (!devices.some((d) => d.id === chartDevice)) {
    const first = devices.find((d) => d.contract) || devices[0];
    chartDevice = first ? first.id : null;
  }
  const [series, outage] = await Promise.all([
    chartDevice ? seriesOf(api, chartDevice) : null, outageOf(api, recs)]);
  return { drift: drift === null ? null : rowsOf(drift, "entries"),
    snapshots: snapshots === null ? null : rowsOf(snapshots, "snapshots"), cleared, series,
    outage };
}

// ---- sites ------------------------------------------------------------------------------

function deviceHealth(d, drift) {
  if (OFFLINE_STATES.includes(d.state)) return "offline";
  const alarmed = (d.alarms || []).length > 0;
  const drifting = drift.some((r) => !r.in_sync);
  return d.state === "fault" || alarmed || drifting ? "degraded" : "ok";
}

function siteHealth(healths) {
  if (healths.every((h) => h === "offline")) return "offline";
  return healths.some((h) => h !== "ok") ? "degraded" : "ok";
}

function byHealthThenName(a, b) {
  return SITE_ORDER[a.health] - SITE_ORDER[b.health] || a.name.localeCompare(b.name);
}

function groupSites(devices, driftRows) {
  // GET /api/drift has one entry per (device, desired contract): a device may have several.
  const driftOf = {};
  for (const r of driftRows || []) (driftOf[r.device] ||= []).push(r);
  const sites = {};
  for (const d of devices) {
    const entry = { device: d, drift: driftOf[d.id] || [] };
    entry.health = deviceHealth(d, entry.drift);
    entry.name = d.id;
    (sites[d.site] ||= []).push(entry);
  }
  return Object.entries(sites).map(([name, entries]) => ({
    name, entries: entries.sort(byHealthThenName),
    health: siteHealth(entries.map((e) => e.health)),
  })).sort(byHealthThenName);
}

const SNAPSHOT_ID_CHARS = 12; // a content hash: the first 12 hex digits tell snapshots apart

function driftText(r) {
  const desired = r.desired || {};
  const observed = r.observed || {};
  const sid = String(desired.snapshot || "?").slice(0, SNAPSHOT_ID_CHARS);
  const state = r.in_sync ? "in sync"
    : `DRIFT: ${r.why || "not as desired"} since ${formatTime(r.since_ms)}`;
  return `desired ${sid} (${r.contract || "?"}) · observed ${observed.contract || "nothing reported"}`
    + ` · ${state}`;
}

function snapshotText(entry, driftKnown) {
  if (!driftKnown) return "desired: – (this hub has no /api/drift)";
  if (entry.drift.length === 0) return "desired: none set";
  return entry.drift.map(driftText).join(" | ");
}

function fleetDevice(entry, driftKnown) {
  const d = entry.device;
  const li = el("li", null, `fleet-device fleet-${entry.health}`);
  li.setAttribute("data-device", d.id);
  li.setAttribute("data-health", entry.health);
  const pick = button(d.id, "fleet-pick", () => { chartDevice = d.id; refresh(); });
  li.append(pick, badge(d.state, d.state),
    el("span", contractLabel(d.contract, d.version), "fleet-contract"),
    el("span", snapshotText(entry, driftKnown), "fleet-snapshot"), alarmsCell(d.alarms));
  return li;
}

function fleetSite(site, driftKnown) {
  const box = el("section", null, `site site-${site.health}`);
  box.setAttribute("data-site", site.name);
  box.setAttribute("data-health", site.health);
  const alarms = site.entries.reduce((n, e) => n + (e.device.alarms || []).length, 0);
  const count = site.entries.length;
  box.append(el("h3", null, "site-title"));
  box.firstChild.append(el("span", site.name, "site-name"), badge(site.health, `site-${site.health}`),
    el("span", ` ${count} device${count === 1 ? "" : "s"} · ${alarms} alarm${alarms === 1 ? "" : "s"}`));
  const list = el("ul", null, "fleet-devices");
  list.append(...site.entries.map((e) => fleetDevice(e, driftKnown)));
  box.append(list);
  return box;
}

// ---- timeline ---------------------------------------------------------------------------

function auditEvent(e) {
  const kind = e.action === "push" ? "push" : e.action === "reconcile" ? "reconciliation" : "audit";
  const what = [e.action, e.contract, e.device && `on ${e.device}`, `by ${e.actor}`,
    e.outcome !== "ok" && `(${e.outcome})`, e.reason && `— ${e.reason}`];
  return { ts: e.ts_ms, kind, text: what.filter(Boolean).join(" ") };
}

function timelineEvents(board, fleet) {
  const events = board.audit.filter((e) => !QUIET_ACTIONS.includes(e.action)).map(auditEvent);
  for (const r of board.recs) {
    const reasons = ((r.report && r.report.reasons) || []).join("; ");
    events.push({ ts: r.ts_ms, kind: "reconciliation", text: `reconciled ${r.device} `
      + `${contractLabel(r.contract, r.version)}: ${r.divergent ? `divergent — ${reasons}` : "as projected"}` });
  }
  for (const a of board.alarms) {
    events.push({ ts: a.first_ms, kind: "alarm", text: `alarm ${a.kind} on ${a.device}: ${a.detail}` });
  }
  for (const a of fleet.cleared || []) {
    events.push({ ts: a.cleared_ms, kind: "alarm-cleared", text: `cleared ${a.kind} on ${a.device}` });
  }
  for (const s of fleet.snapshots || []) {
    events.push({ ts: s.created_ms, kind: "snapshot", text: `snapshot ${s.id}${s.actor ? ` by ${s.actor}` : ""}` });
  }
  return events.filter((e) => typeof e.ts === "number").sort((a, b) => b.ts - a.ts)
    .slice(0, TIMELINE_ROWS);
}

function timelineItem(event) {
  const li = el("li", null, `timeline-item timeline-${event.kind}`);
  li.setAttribute("data-kind", event.kind);
  li.append(el("time", formatTime(event.ts)), badge(event.kind, event.kind), el("span", event.text));
  return li;
}

// ---- the whole view ---------------------------------------------------------------------

function renderFleet(board) {
  const fleet = board.fleet;
  const driftKnown = fleet.drift !== null;
  const sites = groupSites(board.devices, fleet.drift);
  const root = document.getElementById("sites");
  root.replaceChildren(...sites.map((s) => fleetSite(s, driftKnown)));
  if (sites.length === 0) root.append(el("p", "no devices yet", "empty"));
  const events = timelineEvents(board, fleet).map(timelineItem);
  document.getElementById("timeline").replaceChildren(
    ...(events.length ? events : [el("li", "nothing happened yet", "empty")]));
  const device = board.devices.find((d) => d.id === chartDevice);
  document.getElementById("chart-title").textContent =
    device ? `Recent values: ${device.id}` : "Recent values";
  const lastTs = (fleet.series && fleet.series.points || []).flatMap((p) => p.samples.map((s) => s[0]));
  const endMs = Math.max(device && device.last_seen_ms || 0, ...lastTs);
  renderCharts(document.getElementById("charts"), fleet.series, endMs);
  renderOutage(document.getElementById("outage"), fleet.outage);
}
