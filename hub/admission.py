"""What the hub admits from an operator — pure rules over contracts and requests.

Rules:
- Rollback protection (invariant 6): a submission's version must be newer than the highest the
  hub knows for that contract id (`stale_version`).
- Single writer (invariant 2): its write points must not share a register with those of another
  contract id that still claims points on the same device (`write_conflicts`, the rule the agent
  applies too: contracts/conflicts.py); a newer version of the same contract replaces it, never
  conflicts. Each overlap becomes an issue at the point's path (`conflict_issues`).
- A reconciliation request absorbs a repeat while it is open, or for RECONCILE_REPEAT_MS after it
  (`absorbs`), so a flood of requests stays bounded.
hub/service.py applies these under its admission lock, audits every refusal and raises.
"""
from __future__ import annotations

from collections.abc import Iterable

from contracts.conflicts import Overlap, write_conflicts
from contracts.errors import Issue
from contracts.schema import Contract
from contracts.types import EpochMs
from hub.store import ReconcileRequest

__all__ = ["Overlap", "absorbs", "conflict_issues", "stale_version", "write_conflicts"]

RECONCILE_REPEAT_MS = 10_000
"""A reconciliation reads the device's whole run from the journal; asking again within 10 s of the
last request cannot tell the operator anything new, so the repeat is absorbed into it."""


def stale_version(c: Contract, highest: int | None) -> str | None:
    """Why `c` is refused as not newer than `highest` (the highest version known), or None."""
    if highest is not None and c.version <= highest:
        return f"version {c.version} is not newer than {highest}, the highest known"
    return None


def conflict_issues(c: Contract, found: Iterable[Overlap]) -> list[Issue]:
    """One issue per overlap, at the path of `c`'s point (its first occurrence)."""
    where = {p.name: i for i, p in reversed(list(enumerate(c.points)))}
    return [Issue(path=f"points[{where[o.point]}]",
                  reason=f"write point {o.point!r} overlaps {o.other_point!r} of {o.other}")
            for o in found]


def absorbs(latest: ReconcileRequest, now_ms: EpochMs) -> bool:
    """Whether the latest request for a contract absorbs a new one made at `now_ms`."""
    return latest.done_ms is None or now_ms - latest.ts_ms < RECONCILE_REPEAT_MS
