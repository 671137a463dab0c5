// fieldpact operator page: a device's recent values as SVG charts, drawn by this file.
//
// Rules:
// - No library, no build step: SVG elements made with createElementNS, every label set as
//   textContent (a point name or unit from the API cannot inject markup).
// - A series is the journal's readings (GET /api/devices/{id}/series): a value holds until the
//   next one, so the line is drawn in steps; a null sample is a gap (the device could not read
//   the point), never joined across. The last value is held to the chart's right edge.
// - One chart per point, each with its own axis and its unit in the title and on the last value.
// - A reconciled outage: the projected steps and values against the actual ones (below).
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART = { width: 480, height: 170, left: 58, right: 84, top: 12, bottom: 26 };
const Y_TICKS = 4; // an operator reads a trend, not a table: four gridlines are enough
const MAX_CHARTS = 8;

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

// Round numbers for an axis: steps of 1, 2 or 5 times a power of ten.
function niceTicks(min, max, count) {
  const span = max - min || Math.abs(max) || 1;
  const raw = span / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const first = Math.floor(min / step) * step;
  const ticks = [];
  for (let v = first; v <= max + step * 0.5; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function tickLabel(v) {
  return Math.abs(v) >= 10000 || (Math.abs(v) < 0.01 && v !== 0)
    ? v.toExponential(1) : String(Number(v.toPrecision(4)));
}

function clockLabel(ms) {
  return new Date(ms).toISOString().slice(11, 19);
}

// The extent of the series' values, padded so a flat line sits mid-chart.
function valueRange(samples) {
  const values = samples.map((s) => s[1]).filter((v) => typeof v === "number");
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (lo === hi) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  return [lo, hi];
}

// The path's `d`: steps through every sample, a gap at each null, the last value held to endMs.
function stepPath(samples, x, y, endMs) {
  const parts = [];
  let open = false;
  samples.forEach(([ts, v], i) => {
    if (typeof v !== "number") {
      open = false;
      return;
    }
    const next = i + 1 < samples.length ? samples[i + 1][0] : endMs;
    parts.push(`${open ? "L" : "M"}${x(ts).toFixed(1)},${y(v).toFixed(1)}`);
    parts.push(`L${x(Math.max(ts, next)).toFixed(1)},${y(v).toFixed(1)}`);
    open = true;
  });
  return parts.join(" ");
}

function lastValue(samples) {
  const last = samples[samples.length - 1];
  return last ? last[1] : null;
}

// One point's chart as an <svg> element (data-point names it, for tests and styles).
function seriesChart(point, endMs) {
  const { width, height, left, right, top, bottom } = CHART;
  const samples = point.samples;
  const startMs = samples[0][0];
  const end = Math.max(endMs, startMs + 1000);
  const [lo, hi] = valueRange(samples);
  const ticks = niceTicks(lo, hi, Y_TICKS);
  const yMin = Math.min(lo, ticks[0]);
  const yMax = Math.max(hi, ticks[ticks.length - 1]);
  const x = (ts) => left + ((ts - startMs) / (end - startMs)) * (width - left - right);
  const y = (v) => top + (1 - (v - yMin) / (yMax - yMin)) * (height - top - bottom);
  const unit = point.unit ? ` ${point.unit}` : "";
  const svg = svgEl("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img",
    "data-point": point.name });
  svg.append(svgEl("title", {}, `${point.name}${point.unit ? ` (${point.unit})` : ""}`));
  for (const t of ticks) {
    svg.append(svgEl("line", { class: "chart-grid", x1: left, x2: width - right, y1: y(t), y2: y(t) }),
      svgEl("text", { class: "chart-tick", x: left - 6, y: y(t) + 4, "text-anchor": "end" },
        tickLabel(t)));
  }
  svg.append(
    svgEl("text", { class: "chart-tick", x: left, y: height - 6 }, clockLabel(startMs)),
    svgEl("text", { class: "chart-tick", x: width - right, y: height - 6, "text-anchor": "end" },
      `${clockLabel(end)} UTC`),
    svgEl("path", { class: "chart-line", d: stepPath(samples, x, y, end) }));
  const now = lastValue(samples);
  const label = typeof now === "number" ? `${tickLabel(now)}${unit}` : "no reading";
  const ly = typeof now === "number" ? y(now) + 4 : top + 12;
  svg.append(svgEl("text", { class: "chart-last", x: width - right + 6, y: ly }, label));
  return svg;
}

// Fill `container` with one titled chart per point of `series` (the API's answer).
function renderCharts(container, series, endMs) {
  const points = (series && series.points) || [];
  const figures = points.slice(0, MAX_CHARTS).map((p) => {
    const figure = document.createElement("figure");
    figure.className = "chart-figure";
    figure.setAttribute("data-point", p.name);
    const caption = document.createElement("figcaption");
    caption.textContent = p.unit ? `${p.name} (${p.unit})` : `${p.name} (no unit)`;
    figure.append(caption, seriesChart(p, endMs));
    return figure;
  });
  if (figures.length === 0) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "no journaled readings yet";
    figures.push(empty);
  }
  container.replaceChildren(...figures);
}

// ---- a reconciled outage: projected against actual -----------------------------------------
//
// From the reconciliation report alone (hub/reconcile.py): `timing` has, for each step both
// entered, when the projection said and when the device's journal says: two lanes of step
// segments over the outage [from_ms, to_ms]. `trajectory` (hub/trajectory.py; only in the one
// report read by id: GET /api/reconciliations/{id}) has, per charted read point with its unit,
// the projected samples, drawn as a dashed line (the model is linear between them), and the
// actual ones from the journal, drawn in steps (a reading holds until the next): one chart each,
// on one time axis and one value axis, so the gap between the two is the divergence.

const OUTAGE = { width: 960, height: 110, left: 90, right: 20, lane: 26, top: 14 };
const TRAJECTORY = { width: 960, height: 190, left: 58, right: 130, top: 12, bottom: 26 };
const MAX_TRAJECTORIES = 4; // the modelled points come first in the report

function stepSegments(marks, endMs) {
  const sorted = marks.filter((m) => typeof m.ts === "number").sort((a, b) => a.ts - b.ts);
  return sorted.map((m, i) => ({ step: m.step, from: m.ts,
    to: i + 1 < sorted.length ? sorted[i + 1].ts : endMs }));
}

function outageLane(svg, label, segments, row, x) {
  const y = OUTAGE.top + row * (OUTAGE.lane + 12);
  svg.append(svgEl("text", { class: "chart-tick", x: OUTAGE.left - 8, y: y + 17,
    "text-anchor": "end" }, label));
  for (const s of segments) {
    const x0 = x(s.from);
    const w = Math.max(2, x(s.to) - x0);
    const g = svgEl("g", { class: `outage-step outage-${label}`, "data-step": s.step,
      "data-lane": label });
    g.append(svgEl("rect", { x: x0, y, width: w, height: OUTAGE.lane }),
      svgEl("text", { class: "outage-label", x: x0 + 4, y: y + 17 }, s.step));
    svg.append(g);
  }
}

function outageSpan(report) {
  const from = report.from_ms;
  return [from, Math.max(report.to_ms, from + 1000)];
}

function outageChart(report) {
  const { width, left, right } = OUTAGE;
  const [from, to] = outageSpan(report);
  const x = (ts) => left + ((Math.min(Math.max(ts, from), to) - from) / (to - from))
    * (width - left - right);
  const timing = report.timing || [];
  const svg = svgEl("svg", { class: "outage-chart", viewBox: `0 0 ${width} ${OUTAGE.height}`,
    role: "img" });
  svg.append(svgEl("title", {}, "projected steps against actual steps"));
  outageLane(svg, "projected", stepSegments(timing.map((t) => ({ step: t.step, ts: t.projected_ms })), to), 0, x);
  outageLane(svg, "actual", stepSegments(timing.map((t) => ({ step: t.step, ts: t.actual_ms })), to), 1, x);
  const axisY = OUTAGE.height - 6;
  svg.append(svgEl("text", { class: "chart-tick", x: left, y: axisY }, clockLabel(from)),
    svgEl("text", { class: "chart-tick", x: width - right, y: axisY, "text-anchor": "end" },
      `${clockLabel(to)} UTC`));
  return svg;
}

// The path's `d`: straight lines through the samples (the projection between its samples).
function linePath(samples, x, y) {
  return samples.map(([ts, v], i) => `${i ? "L" : "M"}${x(ts).toFixed(1)},${y(v).toFixed(1)}`)
    .join(" ");
}

// One point's projected and actual values over the outage, as an <svg> (data-point names it).
function trajectoryChart(t, from, to) {
  const { width, height, left, right, top, bottom } = TRAJECTORY;
  const projected = (t.projected || []).filter((s) => typeof s[1] === "number");
  const actual = (t.actual || []).filter((s) => typeof s[1] === "number");
  const [lo, hi] = valueRange([...projected, ...actual]);
  const ticks = niceTicks(lo, hi, Y_TICKS);
  const yMin = Math.min(lo, ticks[0]);
  const yMax = Math.max(hi, ticks[ticks.length - 1]);
  const x = (ts) => left + ((Math.min(Math.max(ts, from), to) - from) / (to - from))
    * (width - left - right);
  const y = (v) => top + (1 - (v - yMin) / (yMax - yMin)) * (height - top - bottom);
  const unit = t.unit ? ` ${t.unit}` : "";
  const svg = svgEl("svg", { class: "trajectory-chart", viewBox: `0 0 ${width} ${height}`,
    role: "img", "data-point": t.point });
  svg.append(svgEl("title", {}, `${t.point}${t.unit ? ` (${t.unit})` : ""}: projected against actual`));
  for (const v of ticks) {
    svg.append(svgEl("line", { class: "chart-grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
      svgEl("text", { class: "chart-tick", x: left - 6, y: y(v) + 4, "text-anchor": "end" },
        `${tickLabel(v)}${unit}`));
  }
  svg.append(
    svgEl("text", { class: "chart-tick", x: left, y: height - 6 }, clockLabel(from)),
    svgEl("text", { class: "chart-tick", x: width - right, y: height - 6, "text-anchor": "end" },
      `${clockLabel(to)} UTC`),
    svgEl("path", { class: "chart-projected", d: linePath(projected, x, y) }),
    svgEl("path", { class: "chart-actual", d: stepPath(actual, x, y, to) }));
  const ends = [["projected", projected], ["actual", actual]];
  for (const [i, [label, samples]] of ends.entries()) {
    const last = lastValue(samples);
    if (typeof last !== "number") continue;
    svg.append(svgEl("text", { class: `chart-last trajectory-${label}`, x: width - right + 6,
      y: top + 14 + i * 16 }, `${label} ${tickLabel(last)}${unit}`));
  }
  return svg;
}

function trajectoryFigure(t, from, to) {
  const figure = document.createElement("figure");
  figure.className = "chart-figure trajectory-figure";
  figure.setAttribute("data-point", t.point);
  const caption = document.createElement("figcaption");
  caption.textContent = `${t.point} (${t.unit || "no unit"}): projected`
    + `${t.modelled ? "" : " (held: no model)"} against actual`;
  figure.append(caption, trajectoryChart(t, from, to));
  return figure;
}

// The reconciliation the outage chart shows: the newest with an outage span and step timing or
// trajectories (GET /api/reconciliations lists `trajectory_points`, not the samples).
function outageToShow(recs) {
  return (recs || []).find((r) => r.report && typeof r.report.from_ms === "number"
    && typeof r.report.to_ms === "number"
    && ((r.report.timing || []).length > 0 || r.trajectory_points > 0)) || null;
}

// `rec` (read in full when it has trajectories) drawn into `container`, or why there is none.
function renderOutage(container, rec) {
  if (!rec) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "no reconciled outage with step timing or trajectories yet";
    container.replaceChildren(empty);
    return;
  }
  const caption = document.createElement("p");
  caption.className = "outage-caption";
  const reasons = (rec.report.reasons || []).join("; ") || "within tolerance";
  caption.textContent = `${rec.device} · ${rec.contract}@${rec.version} · outage `
    + `${clockLabel(rec.report.from_ms)}–${clockLabel(rec.report.to_ms)} UTC · ${reasons}`;
  const parts = [caption];
  if ((rec.report.timing || []).length > 0) parts.push(outageChart(rec.report));
  const [from, to] = outageSpan(rec.report);
  const drawn = (rec.report.trajectory || []).filter((t) =>
    (t.projected || []).length > 0 || (t.actual || []).length > 0).slice(0, MAX_TRAJECTORIES);
  if (drawn.length > 0) {
    const box = document.createElement("div");
    box.className = "charts trajectories";
    box.append(...drawn.map((t) => trajectoryFigure(t, from, to)));
    parts.push(box);
  }
  container.replaceChildren(...parts);
}
