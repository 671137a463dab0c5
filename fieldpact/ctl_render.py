"""What `fieldpact ctl` prints of the hub's JSON: rich tables for people (`--json` prints the JSON).

Rules:
- Pure: JSON values in, rich renderables out; the command module prints them.
- Every time is shown as UTC RFC 3339 and every age in words, so a table pasted into a ticket
  means the same in every time zone.
- The lane-E resources (designs, snapshots, plans, drift) are shown by `rows_table`, which takes
  its columns from the rows and prefers the ones named, so a field the hub adds is shown, not lost.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

MAX_CELL_CHARS = 80
"""A nested value shown in a cell is cut here: the table is a summary; --json has it all."""


def when(ms: Any) -> str:
    if not isinstance(ms, int) or isinstance(ms, bool):
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def age(ms: Any) -> str:
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        return "-"
    s = max(0, round(ms / 1000))
    if s < 120:
        return f"{s} s ago"
    return f"{round(s / 60)} min ago" if s < 7200 else f"{s / 3600:.1f} h ago"


def cell(value: Any) -> str:
    """One value as table text: none as '-', floats to 4 significant digits, nested as JSON."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (Mapping, list, tuple)):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
        return text if len(text) <= MAX_CELL_CHARS else text[:MAX_CELL_CHARS - 1] + "…"
    return str(value)


EPOCH_MS_FLOOR = 10**12
"""A `*_ms` field at least this large is a time (after 2001-09-09), a smaller one a duration."""


def field_cell(key: str, value: Any) -> Any:
    """A value of a field named `key`: `*_ms` fields as a time or a duration, others as they are."""
    if key.endswith("_ms") and isinstance(value, int) and not isinstance(value, bool):
        return when(value) if value >= EPOCH_MS_FLOOR else f"{value / 1000:.0f} s"
    return value


MAX_KEY_CHARS = 72
"""The first column names the row (an id an operator copies into the next command: a snapshot id
is 64 hex digits): it is never folded up to this width; the other columns fold instead."""


def _table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    cells = [[v if isinstance(v, Text) else Text(cell(v)) for v in r] for r in rows]
    key_width = max((len(r[0]) for r in cells if r), default=0)
    table = Table(title=title, title_justify="left")
    for i, column in enumerate(columns):
        table.add_column(column, overflow="fold",
                         min_width=min(max(key_width, len(column)), MAX_KEY_CHARS) if i == 0
                         else None)
    for r in cells:
        table.add_row(*r)
    return table


def _contract(contract: Any, version: Any) -> str:
    return f"{contract}@{version}" if contract else "-"


def _alarm_kinds(alarms: Any) -> str:
    if not isinstance(alarms, list) or not alarms:
        return "-"
    return ", ".join(f"{a.get('kind')}{' (acked)' if a.get('acknowledged') else ''}"
                     for a in alarms if isinstance(a, Mapping))


def _endpoints(endpoints: Any) -> str:
    """`plc (modbus-tcp), line (modbus-rtu)`; `-` when none are registered (unknown)."""
    if not isinstance(endpoints, list) or not endpoints:
        return "-"
    return ", ".join(f"{e.get('name')} ({e.get('kind')})" for e in endpoints
                     if isinstance(e, Mapping))


def devices_table(devices: Sequence[Mapping[str, Any]]) -> Table:
    return _table(f"devices ({len(devices)})",
                  ("device", "site", "state", "since", "contract", "last seen", "seq", "alarms"),
                  ((d.get("id"), d.get("site"), d.get("state"), when(d.get("state_since_ms")),
                    _contract(d.get("contract"), d.get("version")), when(d.get("last_seen_ms")),
                    f"{d.get('acked_seq')}/{d.get('last_seq')}", _alarm_kinds(d.get("alarms")))
                   for d in devices))


def device_view(d: Mapping[str, Any]) -> RenderableType:
    """One device: its facts, its values (read-back beside commanded, with age), its alarms."""
    facts = _table(f"device {d.get('id')}", ("field", "value"), (
        ("site", d.get("site")), ("labels", d.get("labels") or "-"),
        ("state", f"{d.get('state')} since {when(d.get('state_since_ms'))}"),
        ("contract", _contract(d.get("contract"), d.get("version"))),
        ("last seen", age(d.get("last_seen_age_ms"))),
        ("journal", f"acked {d.get('acked_seq')} of {d.get('last_seq')}"),
        ("boot", d.get("boot_id")), ("drift", d.get("drift")),
        ("endpoints", _endpoints(d.get("endpoints")))))
    parts: list[RenderableType] = [facts]
    values = d.get("values")
    if isinstance(values, Mapping):
        parts.append(_values_table(values))
    running = d.get("contracts")
    if isinstance(running, list) and running:  # an agent may run several contracts side by side
        parts.append(_table("contracts running (the device's telemetry)",
                            ("contract", "mode", "step", "safe", "trip", "live"),
                            ((c.get("contract"), c.get("mode"), c.get("step"), c.get("safe"),
                              c.get("trip"), c.get("live")) for c in running
                             if isinstance(c, Mapping))))
    alarms = d.get("alarms")
    if isinstance(alarms, list) and alarms:
        parts.append(_table("alarms", ("id", "kind", "count", "acknowledged"),
                            ((a.get("id"), a.get("kind"), a.get("count"), a.get("acknowledged"))
                             for a in alarms)))
    return Group(*parts)


def _values_table(v: Mapping[str, Any]) -> Table:
    head = f"values ({v.get('source')}, {age(v.get('age_ms'))}"
    if v.get("source") == "projection":
        head += f", confidence {cell(v.get('confidence'))}"
    title = head + f"; step {v.get('step') or '-'}, mode {v.get('mode') or '-'})"
    points = v.get("points") or []
    if points:
        return _table(title, ("point", "value", "commanded", "read", "live"),
                      ((p.get("name"), p.get("value"), p.get("commanded"), age(p.get("age_ms")),
                        p.get("live")) for p in points))
    values = v.get("values") or {}
    return _table(title, ("point", "value"), sorted(values.items()))


def contracts_table(contracts: Sequence[Mapping[str, Any]]) -> Table:
    return _table(f"contracts ({len(contracts)})",
                  ("contract", "device", "status", "engine", "updated", "hash", "reason"),
                  ((c.get("id"), c.get("device"), c.get("status"), _engine(c.get("engine")),
                    when(c.get("updated_ms")), str(c.get("content_hash") or "-")[:12],
                    c.get("reason")) for c in contracts))


def _engine(engine: Any) -> str:
    if not isinstance(engine, Mapping):
        return "-"
    trip = f", trip {engine['trip']}" if engine.get("trip") else ""
    return f"{engine.get('mode') or '-'} / {engine.get('step') or '-'}{trip}"


def alarms_table(alarms: Sequence[Mapping[str, Any]]) -> Table:
    return _table(f"alarms ({len(alarms)})",
                  ("id", "device", "kind", "count", "first", "last", "ack", "detail"),
                  ((a.get("id"), a.get("device"), a.get("kind"), a.get("count"),
                    when(a.get("first_ms")), when(a.get("last_ms")),
                    a.get("acked_by") if a.get("acknowledged") else "no", a.get("detail"))
                   for a in alarms))


def result_line(what: str, body: Any) -> str:
    """One line for an action's answer: `what: status` (the body's status or state, if any)."""
    if isinstance(body, Mapping):
        status = body.get("status") or body.get("state")
        if status is not None:
            return f"{what}: {status}"
    return f"{what}: done"


def rows_table(title: str, rows: Any, preferred: Sequence[str] = ()) -> RenderableType:
    """A list of objects as a table; an object as field/value rows; anything else as JSON text.
    Columns: the `preferred` ones present, then every other key in first-seen order."""
    if isinstance(rows, Mapping):
        return _table(title, ("field", "value"), ((k, field_cell(str(k), v))
                                                  for k, v in rows.items()))
    if not isinstance(rows, list) or not all(isinstance(r, Mapping) for r in rows):
        return Text(json.dumps(rows, indent=2, sort_keys=True))
    keys: dict[str, None] = {k: None for k in preferred if any(k in r for r in rows)}
    for r in rows:
        keys.update((str(k), None) for k in r)
    return _table(f"{title} ({len(rows)})", tuple(keys),
                  ([field_cell(k, r.get(k)) for k in keys] for r in rows))
