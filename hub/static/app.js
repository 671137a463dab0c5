// fieldpact operator page: polls the hub's JSON API and renders the fleet view (fleet.js, with
// charts drawn by chart.js) and its tables (each device's contracts: device_contracts.js).
//
// Rules:
// - No build step, no dependencies, nothing from the network but this hub (the machines are
//   offline; the page's CSP allows 'self' only).
// - Every value from the API reaches the DOM through textContent or an attribute set by
//   setAttribute on an element we created: never innerHTML, so device names or reasons
//   cannot inject markup.
// - The token lives in sessionStorage (gone when the tab closes) and goes out as
//   `Authorization: Bearer` on every API call; a 401 forgets it and asks again.
// - One refresh chain: the next starts REFRESH_MS after the previous one finished, so a slow hub
//   is never flooded; a newer refresh (after an action) or a sign-out supersedes one in flight.
// - When a refresh fails the tables stay but are greyed out as stale: an operator must never
//   mistake old values for live ones.
"use strict";

const TOKEN_KEY = "fieldpact.token";
const REFRESH_MS = 2000; // operators watch a live process; 2 s is one glance
const RECENT = 20; // rows of reconciliations and audit shown: a screen, not an archive
const MAX_VALUES = 8; // key values per device row before "…"
// Statuses in which a contract can still be held or aborted (hub/states.py CONTRACT_TRANSITIONS).
const OPEN_STATUSES = ["active", "held", "tripped", "accepted", "pushed"];
// A tripped or held contract leaves its latch only by an operator's resume (hub/service.py).
const RESUMABLE = ["tripped", "held"];

let timer = null;
let generation = 0; // bumped by every refresh and sign-out; older results are dropped

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- DOM helpers --------------------------------------------------------------------------

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) {
    const td = document.createElement("td");
    td.append(cell instanceof Node ? cell : el("span", cell ?? "–"));
    tr.append(td);
  }
  return tr;
}

function fillTable(id, rows, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const columns = document.querySelectorAll(`#${id} thead th`).length;
  if (rows.length === 0) {
    const td = el("td", emptyText, "empty");
    td.colSpan = columns;
    const tr = document.createElement("tr");
    tr.append(td);
    rows = [tr];
  }
  body.replaceChildren(...rows);
}

function badge(text, kind) {
  const span = el("span", String(text).toUpperCase(), `badge badge-${kind}`);
  span.setAttribute("data-value", text);
  return span;
}

function showMessage(text, kind) {
  const box = document.getElementById("message");
  box.textContent = text;
  box.className = `message message-${kind}`;
  box.hidden = false;
}

function clearMessage() {
  document.getElementById("message").hidden = true;
}

// ---- formatting ---------------------------------------------------------------------------

function formatTime(ms) {
  if (typeof ms !== "number") return "–";
  return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
}

function formatAge(ms) {
  if (typeof ms !== "number") return "–";
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function formatValue(v) {
  if (typeof v === "number" && !Number.isInteger(v)) return String(Number(v.toPrecision(4)));
  if (typeof v === "object" && v !== null) return JSON.stringify(v);
  return String(v);
}

function formatValues(values, points) {
  // The device's read-back; where the engine commands something else, both (hub/views.py).
  const commanded = Object.fromEntries((points || []).filter((p) => "commanded" in p)
    .map((p) => [p.name, p.commanded]));
  const names = Object.keys(values || {}).sort();
  const shown = names.slice(0, MAX_VALUES).map((n) => (n in commanded
    ? `${n} ${formatValue(values[n])} (commanded ${formatValue(commanded[n])})`
    : `${n} ${formatValue(values[n])}`));
  if (names.length > MAX_VALUES) shown.push("…");
  return shown.join(" · ") || "–";
}

function valuesCell(v) {
  // Every value has an age; values the hub cannot vouch for are marked, never shown as live.
  const text = formatValues(v.values, v.points);
  const ages = (v.points || []).map((p) => p.age_ms).filter((a) => typeof a === "number");
  const oldest = ages.length ? Math.max(...ages) : v.age_ms;
  const age = typeof oldest === "number" ? ` — read ${formatAge(oldest)}` : "";
  const cell = el("span", text + age, v.source === "last_known" ? "values-stale" : "values");
  if (v.source === "last_known") cell.prepend(el("strong", "LAST KNOWN: "));
  return cell;
}

function contractLabel(contract, version) {
  return contract ? `${contract}@${version ?? "?"}` : "–";
}

// ---- API ----------------------------------------------------------------------------------

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY) || ""}` };
  let response;
  try {
    response = await fetch(path, { ...options, headers: { ...headers, ...options.headers } });
  } catch (err) {
    throw new ApiError(0, `hub unreachable: ${err.message}`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const text = body && body.error ? body.error : response.statusText;
    throw new ApiError(response.status, text);
  }
  return body;
}

async function loadBoard() {
  const [devices, alarms, recs, audit, ...open] = await Promise.all([
    api("/api/devices"),
    api("/api/alarms"),
    api(`/api/reconciliations?limit=${RECENT}`),
    api(`/api/audit?limit=${RECENT}`),
    ...OPEN_STATUSES.map((s) => api(`/api/contracts?status=${s}`)),
  ]);
  const details = await Promise.all(
    devices.map((d) => api(`/api/devices/${encodeURIComponent(d.id)}`)));
  const commissioning = await Promise.all(devices.map((d) => commissioningOf(d.id)));
  const contracts = open.flat().sort((a, b) => a.id.localeCompare(b.id));
  const fleet = await loadFleet(api, details, recs);
  return { devices: details, alarms, recs, audit, contracts, fleet,
    commissioning: commissioning.filter(Boolean) };
}

async function commissioningOf(device) {
  // 404: the device went away between the two requests; nothing to show.
  try {
    return await api(`/api/devices/${encodeURIComponent(device)}/commissioning`);
  } catch (err) {
    if (err.status === 404) return null;
    throw err;
  }
}

// ---- rendering ----------------------------------------------------------------------------

function projectionCell(values) {
  if (!values || values.source !== "projection") return "–";
  const c = values.confidence;
  const pct = typeof c === "number" ? `${Math.round(c * 100)}%` : "?";
  return `confidence ${pct} · ${formatAge(values.age_ms).replace(" ago", " old")}`;
}

function alarmsCell(alarms) {
  if (!alarms || alarms.length === 0) return "–";
  const cell = el("span", null, "device-alarms");
  for (const a of alarms) {
    const b = badge(a.count > 1 ? `${a.kind} ×${a.count}` : a.kind, a.acknowledged ? "acked" : "alarm");
    b.setAttribute("data-kind", a.kind);
    cell.append(b);
  }
  return cell;
}

function deviceRow(d, statusOf) {
  const v = d.values || {};
  const cid = d.contract ? `${d.contract}@${d.version}` : null;
  const status = statusOf[cid] ? ` (${statusOf[cid]})` : "";
  const contract = contractLabel(d.contract, d.version) + status;
  const actions = el("span", null, "actions");
  if (d.state === "fault") {
    actions.append(button("Reset", "action-reset", () => resetDevice(d)));
  }
  actions.append(button("Commission", "action-commission", () => commission(d)));
  const tr = row([el("strong", d.id), d.site, badge(d.state, d.state), contract,
    formatAge(d.last_seen_age_ms), [v.step, v.mode].filter(Boolean).join(" / ") || "–",
    valuesCell(v), projectionCell(d.values), alarmsCell(d.alarms),
    actions.childElementCount ? actions : "–"]);
  tr.setAttribute("data-device", d.id);
  return tr;
}

function button(label, className, onClick, disabled = false) {
  const b = el("button", label, `action ${className}`);
  b.type = "button";
  b.disabled = disabled;
  b.addEventListener("click", onClick);
  return b;
}

function actionButton(label, contract, disabled) {
  return button(label, `action-${label.toLowerCase()}`, () => act(label, contract), disabled);
}

function contractRow(c) {
  const actions = el("span", null, "actions");
  if (RESUMABLE.includes(c.status)) {
    actions.append(button("Resume", "action-resume", () => resume(c)));
  }
  actions.append(actionButton("Hold", c, c.status === "held" || c.status === "tripped"),
    actionButton("Abort", c, false));
  const engine = c.engine && c.engine.trip ? ` · trip ${c.engine.trip}` : "";
  const tr = row([el("strong", c.id), c.device, badge(c.status, c.status), formatTime(c.updated_ms),
    (c.reason || "–") + engine, actions]);
  tr.setAttribute("data-contract", c.id);
  return tr;
}

function alarmItem(a) {
  const li = el("li", null, a.acknowledged ? "alarm alarm-acked" : "alarm");
  li.setAttribute("data-alarm", String(a.id));
  li.append(el("strong", `${a.device}: ${a.kind}`), el("span", ` ${a.detail}`),
    el("span", ` · ×${a.count} · first ${formatTime(a.first_ms)} · last ${formatTime(a.last_ms)}`,
      "alarm-times"));
  if (a.acknowledged) li.append(el("span", ` · acknowledged by ${a.acked_by}`, "alarm-acked-by"));
  else li.append(button("Acknowledge", "action-ack", () => ack(a)));
  return li;
}

function renderAlarms(alarms) {
  const banner = document.getElementById("alarm-banner");
  banner.hidden = alarms.length === 0;
  const open = alarms.filter((a) => !a.acknowledged).length;
  document.getElementById("alarm-title").textContent =
    `Active alarms: ${alarms.length} (${open} not acknowledged)`;
  document.getElementById("alarms").replaceChildren(...alarms.map(alarmItem));
}

function reconciliationRow(r) {
  const reasons = (r.report && r.report.reasons) || [];
  return row([formatTime(r.ts_ms), r.device, contractLabel(r.contract, r.version),
    r.divergent ? badge("yes", "divergent") : badge("no", "ok"), reasons.join("; ") || "–",
    r.action]);
}

// One row per point of a device's newest commissioning answer, after a row for its newest request
// when that one is not (yet) the answer shown: pending, refused, timed out or unsent.
function commissioningRows(c) {
  if (c.state === "none") return [];
  const answer = c.report ? c : c.last_answer;
  const rows = [];
  if (!c.report) {
    const why = c.refused || (c.state === "pending" ? "waiting for the agent" : "no answer in time");
    const tr = row([el("strong", c.device), formatTime(c.requested_ms), badge(c.state, c.state),
      why, "", "", "", "", "", ""]);
    tr.setAttribute("data-commissioning", c.device);
    rows.push(tr);
  }
  if (!answer || !answer.report) return rows;
  for (const p of answer.report.points) {
    const value = p.value === null ? (p.error || "–") : `${formatValue(p.value)} ${p.unit}`.trim();
    const readback = p.readback === null ? "–" : (p.readback ? "yes" : "no");
    const tr = row([el("strong", c.device), formatTime(answer.received_ms), badge(p.verdict, p.verdict),
      p.name, `${p.where} ${p.type}`, value, p.range, p.motion, readback, p.hints.join(" · ") || "–"]);
    tr.setAttribute("data-point", `${c.device}/${p.name}`);
    rows.push(tr);
  }
  return rows;
}

function auditRow(e) {
  return row([formatTime(e.ts_ms), e.actor, e.action, e.contract, badge(e.outcome, e.outcome),
    e.reason]);
}

function render(board) {
  renderAlarms(board.alarms);
  renderFleet(board);
  const statusOf = Object.fromEntries(board.contracts.map((c) => [c.id, c.status]));
  fillTable("devices", board.devices.flatMap((d) => [deviceRow(d, statusOf),
    contractsRow(d, statusOf)].filter(Boolean)), "no devices yet");
  fillTable("contracts", board.contracts.map(contractRow), "no open contracts");
  fillTable("reconciliations", board.recs.map(reconciliationRow), "no reconciliations yet");
  fillTable("audit", board.audit.map(auditRow), "no audit entries yet");
  fillTable("commissioning", board.commissioning.flatMap(commissioningRows),
    "no commissioning reports yet: Commission a device");
  const count = board.devices.length;
  setStatus(`${count} device${count === 1 ? "" : "s"} · updated ${formatTime(Date.now())}`);
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

// ---- actions and the refresh loop ---------------------------------------------------------

async function act(label, contract) {
  const verb = label.toLowerCase();
  const what = `${label} ${contract.id} on ${contract.device}`;
  const warning = verb === "abort" ? "\nOutputs go to the contract's safe state." : "";
  if (!window.confirm(`${what}?${warning}`)) return;
  try {
    await api(`/api/contracts/${encodeURIComponent(contract.id)}/${verb}`, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ reason: "from the operator page" }),
    });
    showMessage(`${what}: done`, "info");
  } catch (err) {
    showMessage(`${what} refused (${err.status}): ${err.message}`, "error");
  }
  await refresh();
}

async function post(path, body, what) {
  try {
    await api(path, {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    showMessage(`${what}: sent`, "info");
  } catch (err) {
    showMessage(`${what} refused (${err.status}): ${err.message}`, "error");
  }
  await refresh();
}

function askReason(question) {
  // A resume or reset is audited with its reason; the hub refuses one without (422).
  const reason = window.prompt(question);
  return reason && reason.trim() ? reason.trim() : null;
}

async function resume(contract) {
  const what = `Resume ${contract.id} on ${contract.device}`;
  const reason = askReason(`${what}: the agent refuses while the trip's cause persists.\nReason:`);
  if (!reason) return;
  await post(`/api/contracts/${encodeURIComponent(contract.id)}/resume`, { reason }, what);
}

async function resetDevice(device) {
  const what = `Reset ${device.id}`;
  const reason = askReason(`${what} out of FAULT (admin).\nReason:`);
  if (!reason) return;
  await post(`/api/devices/${encodeURIComponent(device.id)}/reset`, { reason }, what);
}

async function commission(device) {
  // Read-only on the device: the agent polls every point for a few seconds and answers, unless a
  // step is driving the outputs (then it refuses, and the row says why).
  await post(`/api/devices/${encodeURIComponent(device.id)}/commissioning`, { seconds: 3 },
    `Commission ${device.id}`);
}

async function ack(alarm) {
  await post(`/api/alarms/${alarm.id}/ack`, {}, `Acknowledge ${alarm.kind} on ${alarm.device}`);
}

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  if (!sessionStorage.getItem(TOKEN_KEY)) return;
  const outcome = await loadBoard().then((board) => ({ board }), (error) => ({ error }));
  if (mine !== generation) return; // superseded: a newer refresh or a sign-out owns the page
  const { board, error } = outcome;
  if (error && error.status === 401) return signOut(`Token refused by the hub: ${error.message}`);
  if (board) render(board);
  else setStatus(`STALE: refresh failed (${error.status}): ${error.message}`);
  const main = document.getElementById("board");
  main.classList.toggle("stale", !board);
  document.getElementById("status").classList.toggle("status-stale", !board);
  main.hidden = false;
  timer = setTimeout(refresh, REFRESH_MS);
}

function showSignedIn(signedIn) {
  document.getElementById("login").hidden = signedIn;
  document.getElementById("logout").hidden = !signedIn;
  if (!signedIn) document.getElementById("board").hidden = true;
}

function signOut(why) {
  clearTimeout(timer);
  generation++;
  sessionStorage.removeItem(TOKEN_KEY);
  resetFleet();
  showSignedIn(false);
  setStatus("not signed in");
  if (why) showMessage(why, "error");
  else clearMessage();
}

function signIn(event) {
  event.preventDefault();
  const input = document.getElementById("token");
  sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = "";
  clearMessage();
  showSignedIn(true);
  refresh();
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login").addEventListener("submit", signIn);
  document.getElementById("logout").addEventListener("click", () => signOut(null));
  showSignedIn(Boolean(sessionStorage.getItem(TOKEN_KEY)));
  refresh();
});
