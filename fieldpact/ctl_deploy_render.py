"""What `fieldpact ctl deploy …` prints of a deployment (the hub's view, fixed interface I4).

Rules:
- Pure: the view's JSON in, rich renderables out (fieldpact/ctl_render.py's tables and cells).
- An operator reads a deployment top-down: where it is (state, wave, step), how far each wave got
  (healthy / failed / unreachable / skipped of its devices, and its gate), why a gate failed (the
  device, the gate, the journal evidence: seq, time, value), why it rolled back (who or what
  initiated it, which gate, which devices, the evidence), then each device and the timeline of
  its state changes.
- The view is read defensively: a field the hub leaves out is shown as `-`, never a crash, so an
  older or newer engine's answer still prints.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text

from fieldpact.ctl_render import _table, cell, when

SNAPSHOT_ID_CHARS = 12
"""A snapshot id is a content hash: its first 12 hex digits tell snapshots apart in a table."""
COUNTS = ("healthy", "failed", "unreachable", "skipped")
"""A wave's gate counts, in the order a person reads them (I4 `waves[].gate.counts`)."""


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def short(snapshot: Any) -> str:
    return str(snapshot)[:SNAPSHOT_ID_CHARS] if snapshot else "-"


def step_text(step: Any) -> str:
    """`wave:1:gate (running, attempt 2)`."""
    s = _map(step)
    if not s:
        return "-"
    attempts = s.get("attempts")
    tries = f", attempt {attempts}" if isinstance(attempts, int) and attempts > 1 else ""
    return f"{s.get('name')} ({s.get('status')}{tries})"


def evidence_text(evidence: Any) -> str:
    """`level = 7.5 at seq 12 (2026-…Z); guard_trip at seq 14`: the journal proof of a verdict."""
    parts = []
    for e in _list(evidence):
        text = str(e.get("what"))
        if e.get("value") is not None:
            text += f" = {cell(e.get('value'))}"
        if e.get("seq") is not None:
            text += f" at seq {e.get('seq')}"
        if e.get("ts_ms") is not None:
            text += f" ({when(e.get('ts_ms'))})"
        parts.append(text)
    return "; ".join(parts) or "-"


def progress_text(wave: Mapping[str, Any]) -> str:
    """`2/3 healthy, 1 failed, 0 unreachable, 0 skipped`."""
    counts = _map(_map(wave.get("gate")).get("counts"))
    total = len(wave.get("devices") or [])
    head = f"{counts.get('healthy', 0)}/{total} healthy"
    return ", ".join([head, *(f"{counts.get(k, 0)} {k}" for k in COUNTS[1:])])


def rollback_evidence(evidence: Any) -> str:
    """A rollback's evidence: per device (`d1 (telemetry): level = 5.6 at seq 12`) when the hub
    groups it so (hub/rollout_flow.py), else the evidence items themselves."""
    groups = [e for e in _list(evidence) if "device" in e]
    if not groups:
        return evidence_text(evidence)
    return " | ".join(f"{_who(g)} ({g.get('gate')}): {evidence_text(g.get('evidence'))}"
                      for g in groups)


def rollback_text(rollback: Any) -> str | None:
    """One sentence: who or what rolled back, on which gate, for which devices, with what proof."""
    r = _map(rollback)
    if not r:
        return None
    devices = ", ".join(str(d) for d in r.get("devices") or []) or "-"
    gate = f"gate {r.get('gate')}" if r.get("gate") else "no gate"
    return (f"rolled back at {when(r.get('ts_ms'))}: initiated by {r.get('initiated_by')}, {gate}, "
            f"devices {devices}; evidence: {rollback_evidence(r.get('evidence'))}"
            + (f"; reason: {r.get('reason')}" if r.get("reason") else ""))


def strategy_text(strategy: Any) -> str:
    s = _map(strategy)
    canary, waves = _map(s.get("canary")), _map(s.get("waves"))
    parts = [f"canary {cell(dict(canary))}" if canary else "no canary",
             f"waves {cell(dict(waves))}" if waves else "one wave",
             f"approval {s.get('approval', 'auto')}"]
    parts += [f"{k} {cell(s[k])}" for k in ("pause_s", "reach_deadline_s", "abort") if k in s]
    return ", ".join(parts)


def deployments_table(rows: Sequence[Mapping[str, Any]]) -> RenderableType:
    return _table(f"deployments ({len(rows)})",
                  ("id", "snapshot", "state", "wave", "step", "actor", "created", "updated"),
                  ((r.get("id"), short(r.get("snapshot")), r.get("state"), r.get("wave"),
                    step_text(r.get("step")), r.get("actor"), when(r.get("created_ms")),
                    when(r.get("updated_ms"))) for r in rows))


def deployment_view(view: Mapping[str, Any], *, steps: bool = False) -> RenderableType:
    """The whole deployment: facts, waves, gate failures, rollback, devices (and its steps)."""
    parts: list[RenderableType] = [_facts(view), _waves(view)]
    failures = [(w.get("index"), f) for w in _list(view.get("waves"))
                for f in _list(_map(w.get("gate")).get("failed"))]
    if failures:
        parts.append(_table("gate failures", ("wave", "device", "gate", "evidence"),
                            ((i, f.get("device"), f.get("gate"), evidence_text(f.get("evidence")))
                             for i, f in failures)))
    why = rollback_text(view.get("rollback"))
    if why:
        parts.append(Text(why, style="bold red"))
    parts.append(_devices(view))
    parts += [Text(alone_text(d), style="red") for d in _list(view.get("devices"))
              if _map(d).get("rollback")]
    timeline = _list(view.get("timeline"))
    if timeline:
        parts.append(_table("timeline", ("time", "from", "to", "event", "reason"),
                            ((when(t.get("ts_ms")), t.get("from"), t.get("to"), t.get("event"),
                              t.get("reason")) for t in timeline)))
    if steps:
        parts.append(_table("steps", ("index", "name", "status", "attempts", "actor", "started",
                                      "finished", "result"),
                            ((s.get("index"), s.get("name"), s.get("status"), s.get("attempts"),
                              s.get("actor"), when(s.get("started_ms")),
                              when(s.get("finished_ms")), s.get("result"))
                             for s in _list(view.get("steps")))))
    return Group(*parts)


def _who(item: Mapping[str, Any]) -> str:
    """`d1`, or `d1 tank-aux.d1` when it names one of the device's contracts."""
    contract = item.get("contract")
    return f"{item.get('device')} {contract}" if contract else str(item.get("device"))


def alone_text(device: Mapping[str, Any]) -> str:
    """A device rolled back alone (the deployment went on): its gate, what became of it, proof."""
    r = _map(device.get("rollback"))
    done = r.get("result")
    outcome = f"restored as {r.get('restored')}" if r.get("restored") else str(done)
    return (f"{_who({**r, 'device': device.get('device')})} rolled back alone at {when(r.get('ts_ms'))} ({outcome}): "
            f"initiated by {r.get('initiated_by')}, gate {r.get('gate')} in {r.get('step')}; "
            f"evidence: {rollback_evidence(r.get('evidence'))}")


def _facts(view: Mapping[str, Any]) -> RenderableType:
    health = _map(view.get("health"))
    return _table(f"deployment {view.get('id')}", ("field", "value"), (
        ("snapshot", view.get("snapshot")), ("state", view.get("state")),
        ("wave", view.get("wave")), ("step", step_text(view.get("step"))),
        *((("next wave not before", when(view.get("pausing_until_ms"))),)
          if view.get("pausing_until_ms") else ()),
        ("actor", view.get("actor")), ("created", when(view.get("created_ms"))),
        ("updated", when(view.get("updated_ms"))),
        ("strategy", strategy_text(view.get("strategy"))),
        ("health", ", ".join(f"{k} {cell(v)}" for k, v in health.items()) or "-")))


def _waves(view: Mapping[str, Any]) -> RenderableType:
    return _table("waves", ("wave", "kind", "devices", "progress", "gate"),
                  ((w.get("index"), w.get("kind"), ", ".join(map(str, w.get("devices") or [])),
                    progress_text(w), _map(w.get("gate")).get("status"))
                   for w in _list(view.get("waves"))))


def _devices(view: Mapping[str, Any]) -> RenderableType:
    return _table("devices", ("device", "wave", "state", "contract", "known good", "reason",
                              "evidence"),
                  ((d.get("device"), d.get("wave"), d.get("state"),
                    d.get("contract") or d.get("name"),  # issued, else the one it will get
                    _known_good(d), d.get("reason"),
                    evidence_text(d.get("evidence"))) for d in _list(view.get("devices"))))


def _known_good(d: Mapping[str, Any]) -> str | None:
    """The device's known-good contract, and the version a rollback re-issued it as."""
    good = _map(d.get("known_good")).get("contract")
    if good and d.get("restored"):
        return f"{good} (restored as {d.get('restored')})"
    return str(good) if good else None
