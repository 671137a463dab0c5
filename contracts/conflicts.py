"""Write conflicts between contracts on one device — pure; the hub and the agent ask the same.

Invariant 2 (single writer): two contracts on one device never write the same register. The hub
refuses a submitted contract whose write points overlap another active contract's; the agent
refuses to run one whose write points overlap a contract it runs (agent/scan.py), so a contract
that reached the agent some other way (a local file, a stale push) cannot make a second writer.

Two write points overlap when they share at least one address of the same table on the same unit
of the same endpoint (`None`, the agent's only endpoint, is an endpoint like any other). A newer
version of the same contract id replaces the old one, so it never conflicts with it. The check is
indexed by register, so it is linear in the points (each point spans at most 4 registers).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from contracts.schema import Contract, Point

Cell = tuple[str | None, int, str, int]
"""(endpoint, unit id, table, address): one register or bit."""


@dataclass(frozen=True, kw_only=True)
class Overlap:
    """A write point of the new contract that shares registers with another contract's."""

    other: str  # "contract@version"
    point: str
    other_point: str

    def __str__(self) -> str:
        return f"{self.point} overlaps {self.other_point} of {self.other}"


def label(c: Contract) -> str:
    """"tank-fill@3": how a conflict names a contract (the hub store's contract id)."""
    return f"{c.contract}@{c.version}"


def overlaps(a: Point, b: Point) -> bool:
    """Whether two points share at least one address of the same table on the same unit."""
    return (a.endpoint == b.endpoint and a.unit_id == b.unit_id and a.table is b.table
            and a.address <= b.last_address and b.address <= a.last_address)


def _cells(p: Point) -> list[Cell]:
    return [(p.endpoint, p.unit_id, p.table.value, a) for a in range(p.address, p.last_address + 1)]


def write_conflicts(new: Contract, others: Iterable[Contract]) -> list[Overlap]:
    """Every overlap between `new`'s write points and those of `others` with a different contract
    id on the same device, in `new`'s point order."""
    index: dict[Cell, list[tuple[str, Point]]] = {}
    for o in others:
        if o.device == new.device and o.contract != new.contract:
            for q in o.write_points:
                for cell in _cells(q):
                    index.setdefault(cell, []).append((label(o), q))
    found: dict[tuple[str, str, str], Overlap] = {}
    for p in new.write_points:
        for cell in _cells(p):
            for other, q in index.get(cell, ()):
                found.setdefault((other, p.name, q.name),
                                 Overlap(other=other, point=p.name, other_point=q.name))
    return list(found.values())


def describe(new: Contract, found: Iterable[Overlap]) -> str:
    """One line naming the conflict: "tank-drain@1 write points overlap tank-fill@2: pump_speed
    overlaps pump_speed of tank-fill@2"."""
    items = list(found)
    others = sorted({o.other for o in items})
    return (f"{label(new)} write points overlap {', '.join(others)}: "
            + "; ".join(str(o) for o in items))
