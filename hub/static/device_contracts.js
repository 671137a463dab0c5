// fieldpact operator page: each contract of a device, on a row of its own under the device's row
// in the devices table (app.js renders the table; this file holds no state).
//
// Rules (app.js's hold here too):
// - Every value from the API reaches the DOM through textContent or setAttribute on an element
//   we created (app.js `el`, `badge`): never innerHTML.
// - What a contract shows is the hub's view of it (hub/views.py contracts_view): the device's
//   read-back beside the engine's command, a failing read's fault in words, and, while the
//   device is offline, the contract's projection marked as such with its confidence.
"use strict";

// Each contract the device runs, on a row of its own under the device (an agent runs several side
// by side, each with its own engine): the hub's status for it, its step and mode, its values
// (read-back beside commanded) and each failing read's fault in words; while the device is
// offline, the contract's projection with its confidence instead (hub/views.py contracts_view).
function contractsRow(d, statusOf) {
  const list = d.contracts || [];
  if (list.length === 0) return null;
  const ul = el("ul", null, "device-contracts");
  for (const c of list) ul.append(deviceContract(c, statusOf));
  const td = el("td", null, "device-contracts-cell");
  td.colSpan = document.querySelectorAll("#devices thead th").length;
  td.append(el("span", `${d.id} runs ${list.length} contract${list.length === 1 ? "" : "s"}:`,
    "device-contracts-title"), ul);
  const tr = document.createElement("tr");
  tr.className = "device-contracts-row";
  tr.setAttribute("data-contracts-of", d.id);
  tr.append(td);
  return tr;
}

function deviceContract(c, statusOf) {
  const id = typeof c.version === "number" ? `${c.contract}@${c.version}` : (c.contract || "–");
  const status = statusOf[id] || "unknown";
  const li = el("li", null, "device-contract");
  li.setAttribute("data-contract", id);
  li.setAttribute("data-status", status);
  const rows = c.values || [];
  const values = Object.fromEntries(rows.filter((r) => r.value !== null && r.value !== undefined)
    .map((r) => [r.name, r.value]));
  li.append(el("strong", id, "device-contract-id"), badge(status, status),
    el("span", [c.step, c.mode].filter(Boolean).join(" / ") || "–", "device-contract-step"),
    el("span", formatValues(values, rows), "device-contract-values"));
  if (c.source === "projection") {
    const pct = typeof c.confidence === "number" ? `${Math.round(c.confidence * 100)}%` : "?";
    li.append(el("span", `projected · confidence ${pct}`, "device-contract-projection"));
  } else if (c.trip) {
    li.append(el("span", `trip ${c.trip}`, "device-contract-trip"));
  }
  for (const r of rows.filter((row) => row.fault)) {
    const fault = el("span", `${r.name}: ${r.fault}`, "device-contract-fault");
    fault.setAttribute("data-point", r.name);
    li.append(fault);
  }
  return li;
}
