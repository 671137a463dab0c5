"""What the hub admits from an operator — pure rules over contracts and requests.

Rules:
- Rollback protection (invariant 6): a submission's version must be newer than the highest the
  hub knows for that contract id (`stale_version`).
- Single writer (invariant 2): its write points must not share a register with those of another
  contract id that still claims points on the same device (`write_conflicts`); a newer version of
  the same contract replaces it, never conflicts. Each overlap becomes an issue at the point's
  path (`conflict_issues`).
- A reconciliation request absorbs a repeat while it is open, or for RECONCILE_REPEAT_MS after it
  (`absorbs`), so a flood of requests stays bounded.
hub/service.py applies these under its admission lock, audits every refusal and raises.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.errors import Issue
from contracts.schema import Contract, Point
from contracts.types import EpochMs
from hub.store import ReconcileRequest, contract_id

RECONCILE_REPEAT_MS = 10_000
"""A reconciliation reads the device's whole run from the journal; asking again within 10 s of the
last request cannot tell the operator anything new, so the repeat is absorbed into it."""


def stale_version(c: Contract, highest: int | None) -> str | None:
    """Why `c` is refused as not newer than `highest` (the highest version known), or None."""
    if highest is not None and c.version <= highest:
        return f"version {c.version} is not newer than {highest}, the highest known"
    return None


@dataclass(frozen=True, kw_only=True)
class Overlap:
    """A write point of the new contract that shares registers with another contract's."""

    other: str  # "contract@version"
    point: str
    other_point: str


def overlaps(a: Point, b: Point) -> bool:
    """Whether two points share at least one address of the same table on the same unit."""
    return (a.unit_id == b.unit_id and a.table is b.table
            and a.address <= b.last_address and b.address <= a.last_address)


def _cells(p: Point) -> list[tuple[int, str, int]]:
    return [(p.unit_id, p.table.value, a) for a in range(p.address, p.last_address + 1)]


def write_conflicts(new: Contract, others: Iterable[Contract]) -> list[Overlap]:
    """Every overlap between `new`'s write points and those of `others` with a different contract
    id on the same device (a newer version of the same contract replaces, never conflicts).
    Indexed by register, so linear in the points (each point spans at most 4 registers)."""
    index: dict[tuple[int, str, int], list[tuple[str, Point]]] = {}
    for o in others:
        if o.device == new.device and o.contract != new.contract:
            for q in o.write_points:
                for cell in _cells(q):
                    index.setdefault(cell, []).append((contract_id(o.contract, o.version), q))
    found: dict[tuple[str, str, str], Overlap] = {}
    for p in new.write_points:
        for cell in _cells(p):
            for other, q in index.get(cell, ()):
                found.setdefault((other, p.name, q.name),
                                 Overlap(other=other, point=p.name, other_point=q.name))
    return list(found.values())


def conflict_issues(c: Contract, found: Iterable[Overlap]) -> list[Issue]:
    """One issue per overlap, at the path of `c`'s point (its first occurrence)."""
    where = {p.name: i for i, p in reversed(list(enumerate(c.points)))}
    return [Issue(path=f"points[{where[o.point]}]",
                  reason=f"write point {o.point!r} overlaps {o.other_point!r} of {o.other}")
            for o in found]


def absorbs(latest: ReconcileRequest, now_ms: EpochMs) -> bool:
    """Whether the latest request for a contract absorbs a new one made at `now_ms`."""
    return latest.done_ms is None or now_ms - latest.ts_ms < RECONCILE_REPEAT_MS
