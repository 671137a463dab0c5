"""A document of points only — `points: [...]`, what `fieldpact points import` writes — and the
contract rules that can be judged on points alone.

Rules of this module:
- An I/O table is not a contract: it has no id, steps or safe state. Its points are checked by the
  contract validator's point rules (duplicate names, overlapping addresses, table fit, limits within
  the type), run over a contract of only these points with every other part marked broken, so the
  rules that need another part (owner is this contract, timers against the scan period) are skipped
  here and judged when the points are pasted into a contract.
- `render` writes one flow mapping per point, only the fields that differ from their defaults, with
  the address also shown in Modicon notation as a comment (`# 40021`): the line an engineer pastes
  under a contract's `points:`. `parse` reads such a document back (a full contract's `points:`
  section is read the same way, the rest ignored).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from contracts import modicon
from contracts.errors import ContractInvalid, Issue
from contracts.limits import MAX_POINTS
from contracts.schema import MIN_SCAN_PERIOD_MS, Contract, Offline, Point
from contracts.schema_fields import Reader, cap_issues
from contracts.schema_parse import Layout
from contracts.schema_points import parse_point
from contracts.schema_serialize import point_to_brief
from contracts.validate import validate

NOT_POINTS = frozenset({"contract", "version", "device", "site", "valid_from", "valid_until",
                        "scan_period_ms", "safe_state", "steps", "offline"})
"""Every part of a contract but its points: absent here, so the rules that need them are skipped."""


def point_issues(points: Sequence[Point]) -> list[Issue]:
    """The contract validator's point rules over `points` alone; paths are `points[i]...`."""
    contract = Contract(contract="", version=1, device="", site="", valid_from=0, valid_until=0,
                        scan_period_ms=MIN_SCAN_PERIOD_MS, points=tuple(points), safe_state=(),
                        steps=(), offline=Offline(autonomy_s=0))
    layout = Layout(point_index=tuple(range(len(points))), step_index=(), broken=NOT_POINTS)
    return [i for i in validate(contract, layout) if i.path.startswith("points[")]


def parse(document: Any) -> tuple[Point, ...]:
    """The points of a `points:` document. Raises ContractInvalid listing every issue."""
    if not isinstance(document, Mapping) or not isinstance(document.get("points"), list):
        raise ContractInvalid([Issue(path="points", reason="must be a list of points")])
    raw = document["points"]
    if len(raw) > MAX_POINTS:
        raise ContractInvalid([Issue(path="points", reason=f"has {len(raw)} entries; at most"
                                                            f" {MAX_POINTS} are allowed")])
    r = Reader()
    points = [parse_point(r, m, f"points[{i}]") for i, m in enumerate(raw)]
    if r.issues:
        raise ContractInvalid(cap_issues(r.issues, r.extra))
    kept = tuple(p for p in points if p is not None)
    issues = point_issues(kept)
    if issues:
        raise ContractInvalid(cap_issues(issues))
    return kept


def render(points: Sequence[Point]) -> str:
    """`points:` and one line per point, its Modicon address as a comment."""
    if not points:
        return "points: []\n"
    lines = ["points:"]
    for p in points:
        flow = yaml.safe_dump(point_to_brief(p), default_flow_style=True, sort_keys=False,
                              width=1 << 16, allow_unicode=True).strip()
        lines.append(f"  - {flow}  # {modicon.format(p.table, p.address)}")
    return "\n".join(lines) + "\n"
