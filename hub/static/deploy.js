// fieldpact operator page: the deployments section — staged rollouts (GET /api/deployments and
// /api/deployments/{id}, fixed interface I4): per wave its progress and gate, each failed gate with
// its journal evidence, the rollback's reason, each device; and the operator's actions on them.
//
// Rules:
// - Its own refresh chain (the next read REFRESH_MS after the previous one finished), running only
//   while a token is signed in; it uses app.js's api(), el(), badge(), button(), formatTime() and
//   showMessage() and never touches the rest of the board.
// - A hub without /api/deployments (404/405) is said so and not asked again until the next load.
// - The deployment shown is the one picked; until one is, the newest one still under way, else
//   the newest.
// - A rollback says who or what initiated it, on which gate, for which devices, with which evidence
//   (journal seq, time, value): an operator must never have to guess why a rollout stopped. So
//   does a device's own rollback (rolled back alone while the deployment went on).
// - Values from the API reach the DOM as text only (el()), never as markup.
"use strict";

const DEPLOY_REFRESH_MS = 2000; // as the board's: one glance
const DEPLOY_LIST_ROWS = 10; // recent deployments listed; `fieldpact ctl deploy list` has them all
const DEPLOY_SNAPSHOT_CHARS = 12; // a content hash: 12 hex digits tell snapshots apart
const DEPLOY_STOPPED = ["complete", "rolled_back", "failed"]; // nothing more happens by itself
const DEPLOY_COUNTS = ["healthy", "failed", "unreachable", "skipped"]; // I4 waves[].gate.counts
// Which action each state allows (hub/states DEPLOYMENT): the hub still decides (409 if not).
const DEPLOY_ACTIONS = {
  pause: ["planned", "canary", "wave", "verifying"],
  resume: ["paused"],
  approve: ["paused"],
  retry: ["failed"],
  rollback: ["planned", "canary", "wave", "verifying", "paused", "failed"],
};

const deployState = { known: true, picked: null, timer: null, generation: 0 };

function deployToken() {
  return sessionStorage.getItem("fieldpact.token");
}

async function loadDeployments() {
  if (!deployState.known) return null;
  let body;
  try {
    body = await api("/api/deployments");
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      deployState.known = false;
      return null;
    }
    throw err;
  }
  const rows = (Array.isArray(body) ? body : (body && body.deployments) || [])
    .slice().sort((a, b) => (b.created_ms || 0) - (a.created_ms || 0));
  const picked = rows.find((d) => d.id === deployState.picked)
    || rows.find((d) => !DEPLOY_STOPPED.includes(d.state)) || rows[0];
  const view = picked ? await api(`/api/deployments/${encodeURIComponent(picked.id)}`) : null;
  return { rows, view };
}

// ---- one deployment -----------------------------------------------------------------------

function shortSnapshot(sid) {
  return String(sid || "?").slice(0, DEPLOY_SNAPSHOT_CHARS);
}

function stepText(step) {
  if (!step) return "–";
  const tries = step.attempts > 1 ? `, attempt ${step.attempts}` : "";
  return `${step.name} (${step.status}${tries})`;
}

function evidenceItem(e) {
  const parts = [e.what];
  if (e.value !== null && e.value !== undefined) parts.push(`= ${formatValue(e.value)}`);
  if (e.seq !== null && e.seq !== undefined) parts.push(`· journal seq ${e.seq}`);
  if (typeof e.ts_ms === "number") parts.push(`· ${formatTime(e.ts_ms)}`);
  const li = el("li", parts.join(" "), "deploy-evidence");
  if (e.seq !== null && e.seq !== undefined) li.setAttribute("data-seq", String(e.seq));
  return li;
}

function evidenceList(evidence) {
  const ul = el("ul", null, "deploy-evidence-list");
  ul.append(...(evidence || []).map(evidenceItem));
  return ul;
}

function rollbackBox(r, title = "Rolled back: ") {
  const box = el("div", null, "deploy-rollback");
  box.setAttribute("role", "alert");
  const devices = (r.devices || []).join(", ") || "–";
  box.append(el("strong", title), el("span", [
    `initiated by ${r.initiated_by}`, r.gate ? `gate ${r.gate}` : "no gate",
    `devices ${devices}`, formatTime(r.ts_ms)].join(" · "), "deploy-rollback-why"));
  if (r.reason) box.append(el("p", `reason: ${r.reason}`, "deploy-rollback-reason"));
  // The hub groups the evidence per failed device ({device, gate, evidence}); items without a
  // device are evidence themselves.
  const groups = (r.evidence || []).filter((e) => e && e.device !== undefined);
  const loose = (r.evidence || []).filter((e) => e && e.device === undefined);
  for (const g of groups) {
    const item = el("div", null, "deploy-rollback-device");
    item.setAttribute("data-device", g.device);
    item.append(el("strong", `${who(g)}: gate ${g.gate}`), evidenceList(g.evidence));
    box.append(item);
  }
  if (loose.length) box.append(evidenceList(loose));
  return box;
}

function aloneBox(d) {
  // A device rolled back alone (it failed its gate under the abort threshold; the deployment
  // went on): what became of it (restored as a version, latched, held, aborted, waiting).
  const r = d.rollback;
  const outcome = r.restored ? `restored as ${r.restored}` : r.result;
  const box = rollbackBox(r, `${who({ device: d.device, contract: r.contract })} rolled back `
    + `alone (${outcome}): `);
  box.classList.add("deploy-rollback-alone");
  box.setAttribute("data-device", d.device);
  return box;
}

function progressBar(wave) {
  // One segment per count, as wide as its share of the wave; the rest is not yet judged.
  const counts = (wave.gate && wave.gate.counts) || {};
  const total = Math.max(1, (wave.devices || []).length);
  const bar = el("div", null, "deploy-bar");
  for (const k of DEPLOY_COUNTS) {
    const n = counts[k] || 0;
    if (!n) continue;
    const seg = el("span", null, `deploy-seg deploy-seg-${k}`);
    seg.style.width = `${(100 * n) / total}%`;
    seg.setAttribute("data-count", String(n));
    seg.title = `${n} ${k}`;
    bar.append(seg);
  }
  return bar;
}

function waveBox(wave) {
  const gate = wave.gate || {};
  const counts = gate.counts || {};
  const n = (wave.devices || []).length;
  const box = el("div", null, `deploy-wave deploy-gate-${gate.status}`);
  box.setAttribute("data-wave", String(wave.index));
  box.setAttribute("data-gate", gate.status || "pending");
  const title = el("h4", null, "deploy-wave-title");
  title.append(el("span", `${wave.kind === "canary" ? "canary" : `wave ${wave.index}`} · `
    + `${n} device${n === 1 ? "" : "s"}`), badge(`gate ${gate.status || "pending"}`, gate.status));
  const text = [`${counts.healthy || 0}/${n} healthy`,
    ...DEPLOY_COUNTS.slice(1).map((k) => `${counts[k] || 0} ${k}`)].join(" · ");
  box.append(title, progressBar(wave), el("p", text, "deploy-counts"));
  for (const f of gate.failed || []) {
    const item = el("div", null, "deploy-failure");
    item.setAttribute("data-device", f.device);
    item.append(el("strong", `${who(f)}: gate ${f.gate} failed`), evidenceList(f.evidence));
    box.append(item);
  }
  return box;
}

// A device, and which of its contracts when the item names one (a device may run several).
function who(item) {
  return item.contract ? `${item.device} ${item.contract}` : item.device;
}

function deviceRows(view) {
  return (view.devices || []).map((d) => {
    // The known-good contract, and the version a rollback re-issued it as.
    const good = d.known_good ? d.known_good.contract + (d.restored ? ` (restored as ${d.restored})`
      : "") : null;
    // A device has a row per contract: the version issued, else the contract it will get.
    const tr = row([el("strong", d.device), String(d.wave), badge(d.state, d.state),
      d.contract || d.name,
      good, d.reason]);
    tr.setAttribute("data-device", d.device);
    return tr;
  });
}

function awaitsApproval(view) {
  // Paused at a gate of a manual-approval deployment (approve), not by an operator (resume).
  const step = view.step || {};
  return view.state === "paused" && step.status === "running"
    && String(step.name || "").endsWith(":approval");
}

function deployActions(view) {
  const box = el("span", null, "actions deploy-actions");
  for (const [verb, states] of Object.entries(DEPLOY_ACTIONS)) {
    if (!states.includes(view.state)) continue;
    if ((verb === "approve" && !awaitsApproval(view)) || (verb === "resume" && awaitsApproval(view))) {
      continue;
    }
    const label = verb[0].toUpperCase() + verb.slice(1);
    box.append(button(label, `action-deploy-${verb}`, () => deployAct(view, verb)));
  }
  return box;
}

function deploymentDetail(view) {
  const box = el("article", null, `deploy-detail deploy-${view.state}`);
  box.setAttribute("data-deployment", view.id);
  box.setAttribute("data-state", view.state);
  const head = el("h3", null, "deploy-head");
  head.append(el("span", `${view.id} · snapshot ${shortSnapshot(view.snapshot)} · `),
    badge(view.state, view.state), el("span", ` · step ${stepText(view.step)} · by ${view.actor}`),
    deployActions(view));
  box.append(head);
  if (view.rollback) box.append(rollbackBox(view.rollback));
  for (const d of view.devices || []) if (d.rollback) box.append(aloneBox(d));
  if (view.pausing_until_ms) {
    box.append(el("p", `next wave not before ${formatTime(view.pausing_until_ms)} (pause_s)`,
      "deploy-pausing"));
  }
  const waves = el("div", null, "deploy-waves");
  waves.append(...(view.waves || []).map(waveBox));
  const table = el("table", null, "deploy-devices");
  const header = el("tr");
  for (const h of ["Device", "Wave", "State", "Contract", "Known good", "Reason"]) {
    header.append(el("th", h));
  }
  table.append(el("thead"), el("tbody"));
  table.tHead.append(header);
  table.tBodies[0].append(...deviceRows(view));
  box.append(waves, table, timelineList(view.timeline || []), stepsList(view.steps || []));
  return box;
}

function timelineList(timeline) {
  // The deployment's state changes, oldest first, with the event and its reason.
  const box = el("div", null, "deploy-timeline-box");
  box.append(el("h4", "State changes", "deploy-timeline-title"));
  const list = el("ol", null, "deploy-timeline");
  box.append(list);
  list.append(...timeline.map((t) => {
    const li = el("li", `${formatTime(t.ts_ms)} · ${t.from || "–"} → ${t.to} (${t.event})`
      + (t.reason ? ` — ${t.reason}` : ""), "deploy-transition");
    li.setAttribute("data-to", t.to);
    return li;
  }));
  return box;
}

function stepsList(steps) {
  // The persisted steps, oldest first: what the engine did, when, as whom, how often tried.
  const box = el("details", null, "deploy-steps");
  box.append(el("summary", `${steps.length} step${steps.length === 1 ? "" : "s"}`));
  const list = el("ol", null, "deploy-step-list");
  list.append(...steps.map((s) => {
    const li = el("li", [`${s.name}: ${s.status}`, s.attempts > 1 && `attempt ${s.attempts}`,
      `by ${s.actor}`, `${formatTime(s.started_ms)} → ${formatTime(s.finished_ms)}`]
      .filter(Boolean).join(" · "), "deploy-step");
    li.setAttribute("data-step", s.name);
    li.setAttribute("data-status", s.status);
    return li;
  }));
  box.append(list);
  return box;
}

// ---- the list and the section -------------------------------------------------------------

function deploymentItem(d, shownId) {
  const li = el("li", null, d.id === shownId ? "deploy-item deploy-item-shown" : "deploy-item");
  li.setAttribute("data-deployment", d.id);
  li.append(button(d.id, "deploy-pick", () => { deployState.picked = d.id; refreshDeployments(); }),
    badge(d.state, d.state), el("span", ` snapshot ${shortSnapshot(d.snapshot)} · wave ${d.wave}`
      + ` · ${stepText(d.step)} · ${formatTime(d.created_ms)}`));
  return li;
}

function renderDeployments(loaded) {
  const list = document.getElementById("deployments");
  const detail = document.getElementById("deployment");
  if (loaded === null) {
    list.replaceChildren(el("li", "– (this hub has no /api/deployments)", "empty"));
    detail.replaceChildren();
    return;
  }
  const shownId = loaded.view ? loaded.view.id : null;
  const items = loaded.rows.slice(0, DEPLOY_LIST_ROWS).map((d) => deploymentItem(d, shownId));
  list.replaceChildren(...(items.length ? items : [el("li", "no deployments yet", "empty")]));
  detail.replaceChildren(...(loaded.view ? [deploymentDetail(loaded.view)] : []));
}

async function deployAct(view, verb) {
  const what = `${verb[0].toUpperCase()}${verb.slice(1)} deployment ${view.id}`;
  let body;
  if (verb === "rollback") {
    const reason = window.prompt(`${what}: every device it reached goes back to its known-good `
      + "contract.\nReason:");
    if (!reason || !reason.trim()) return;
    body = JSON.stringify({ reason: reason.trim() });
  } else if (!window.confirm(`${what}?`)) {
    return;
  }
  try {
    const answer = await api(`/api/deployments/${encodeURIComponent(view.id)}/${verb}`, {
      method: "POST", headers: body ? { "Content-Type": "application/json" } : {}, body,
    });
    showMessage(`${what}: ${answer && answer.state}`, "info");
  } catch (err) {
    showMessage(`${what} refused (${err.status}): ${err.message}`, "error");
  }
  await refreshDeployments();
}

async function refreshDeployments() {
  clearTimeout(deployState.timer);
  const mine = ++deployState.generation;
  if (!deployToken()) {
    deployState.known = true; // signed out: the next sign-in asks again
    deployState.picked = null;
    deployState.timer = setTimeout(refreshDeployments, DEPLOY_REFRESH_MS);
    return;
  }
  const outcome = await loadDeployments().then((loaded) => ({ loaded }), (error) => ({ error }));
  if (mine !== deployState.generation) return; // superseded by a newer refresh
  const section = document.getElementById("deployments-section");
  if (outcome.error) section.classList.add("stale");
  else {
    section.classList.remove("stale");
    renderDeployments(outcome.loaded);
  }
  deployState.timer = setTimeout(refreshDeployments, DEPLOY_REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", refreshDeployments);
