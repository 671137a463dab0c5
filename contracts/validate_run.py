"""One validation run: the contract, its layout, and the indexes built once (O(n)); how an issue
and a number are written.

Rules: every rule module (contracts/validate_points.py, validate_steps.py) takes a `Ctx` and yields
`Issue`s in document order; a path names a document position through the layout (a partial parse
keeps the original indexes), and a rule that needs a field the layout marks broken is skipped.
"""
from __future__ import annotations

from collections.abc import Iterator

from contracts.errors import Issue
from contracts.expr import STEP_TIME
from contracts.expr_tree import Kind
from contracts.schema import Contract, DataType
from contracts.schema_parse import Layout

Issues = Iterator[Issue]


class Ctx:
    """One validation run: the contract, its layout, and indexes built once (O(n))."""

    def __init__(self, c: Contract, layout: Layout) -> None:
        self.c, self.layout = c, layout
        self.first_point: dict[str, int] = {}
        for i, p in enumerate(c.points):
            self.first_point.setdefault(p.name, i)
        self.first_step: dict[str, int] = {}
        for i, s in enumerate(c.steps):
            self.first_step.setdefault(s.name, i)
        self.kinds = {p.name: Kind.BOOL if p.type is DataType.BOOL else Kind.NUMBER
                      for p in c.points} | {STEP_TIME: Kind.NUMBER}
        self.occupant: dict[tuple[str, int, str, int], int] = {}  # (endpoint, unit, table, address) -> 1st point

    def broken(self, *fields: str) -> bool:
        return any(f in self.layout.broken for f in fields)

    def unknown(self, name: str) -> bool:
        """A reference to no point (one that exists, or one dropped by a structural issue)."""
        return not self.c.has_point(name) and name not in self.layout.dropped_points \
            and not self.broken("points")

    def point_at(self, i: int) -> str:
        return f"points[{self.layout.point_index[i]}]"

    def step_at(self, i: int) -> str:
        return f"steps[{self.layout.step_index[i]}]"


def issue(path: str, reason: str) -> Issue:
    return Issue(path=path, reason=reason)


def fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else repr(float(x))
