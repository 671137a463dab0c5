"""Health gates as data: the spec a deployment gives, the evidence and verdict types — pure.

contracts/rollout_health.py states the rules and judges; this module holds what it judges with
(`HealthSpec`, read from the I4 `health` mapping by `parse_health`) and what it answers (`Verdict`
of `Evidence`). Import them from contracts/rollout_health.py.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from contracts.errors import ContractInvalid, ExprSyntaxError, Issue
from contracts.expr import parse
from contracts.limits import quote
from contracts.types import EpochMs

__all__ = ["DEFAULT_WINDOW_S", "MAX_WINDOW_S", "Evidence", "Gate", "Health", "HealthSpec", "JournalRecord",
           "TelemetryView", "Verdict", "parse_health"]

MAX_WINDOW_S = 86_400
"""A day: the same bound as a contract's `rollout.health_window_s` (interface I1)."""
DEFAULT_WINDOW_S = 300
"""Five minutes when a deployment names no window: I1's example, and long enough for a keyframe
(once a minute) to prove the end of it on a process at rest."""
MAX_CYCLES = 100_000_000
"""More cycles than a day holds at the fastest scan period (1 ms): a bound, not a policy."""
MAX_STEP = 64
MAX_TELEMETRY = 500
"""An expression's text, bounded like any operator input before it is parsed (invariant 10)."""
_FIELDS = ("window_s", "min_cycles", "step", "telemetry", "commissioning")


class Health(enum.StrEnum):
    PENDING = "pending"
    HEALTHY = "healthy"
    FAILED = "failed"


class Gate(enum.StrEnum):
    """What a verdict names: the gate that failed, or that a PENDING verdict waits for."""

    ACCEPTED = "accepted"
    REFUSED = "refused"
    CYCLES = "cycles"
    STEP = "step"
    GUARD_TRIP = "guard_trip"
    SAFE_UNCONFIRMED = "safe_unconfirmed"
    SECOND_WRITER = "second_writer"
    ADAPTER_FAULT = "adapter_fault"
    MODEL_DIVERGENCE = "model_divergence"
    ROLLOUT_FALLBACK = "rollout_fallback"
    TELEMETRY = "telemetry"
    COMMISSIONING = "commissioning"


@dataclass(frozen=True, kw_only=True)
class HealthSpec:
    """A deployment's health gate (I4 `health`, read by `parse_health`)."""

    window_ms: int
    min_cycles: int = 0
    step: str | None = None
    telemetry: str | None = None  # an expression over point values (contracts.expr)
    commissioning: bool = False   # canaries: a passing commissioning report

    def to_mapping(self) -> dict[str, Any]:
        """The I4 form (`window_s` in seconds), which `parse_health` reads back."""
        return {"window_s": self.window_ms / 1000, "min_cycles": self.min_cycles,
                "step": self.step, "telemetry": self.telemetry,
                "commissioning": self.commissioning}


@dataclass(frozen=True, kw_only=True)
class Evidence:
    """One fact a verdict rests on: what (an event, a point, `window`...), the journal seq and
    the device's time of the entry that shows it, and its value."""

    what: str
    seq: int | None = None
    ts_ms: EpochMs | None = None
    value: Any = None

    def to_mapping(self) -> dict[str, Any]:
        return {"what": self.what, "seq": self.seq, "ts_ms": self.ts_ms, "value": self.value}


@dataclass(frozen=True, kw_only=True)
class Verdict:
    health: Health
    gate: str | None
    evidence: tuple[Evidence, ...]

    def to_mapping(self) -> dict[str, Any]:
        return {"health": self.health.value, "gate": None if self.gate is None else str(self.gate),
                "evidence": [e.to_mapping() for e in self.evidence]}


@dataclass(frozen=True, kw_only=True)
class TelemetryView:
    """The live values the hub holds for the device (its latest telemetry) and their time."""

    values: Mapping[str, Any]
    ts_ms: EpochMs


JournalRecord: TypeAlias = "tuple[int, EpochMs, Any]"
"""(seq, ts_ms, decoded body: contracts.journal_events' record) of one ingested entry."""


def parse_health(doc: Mapping[str, Any]) -> HealthSpec:
    """The HealthSpec of an I4 `health` mapping. Raises ContractInvalid with every issue, each
    naming its field (`health.window_s`) and the value."""
    if not isinstance(doc, Mapping):
        raise ContractInvalid([Issue(path="health", reason=f"must be a mapping, got {quote(doc)}")])
    issues = [Issue(path=f"health.{str(k)[:40]}", reason="is not a field of health (known: "
                    + ", ".join(_FIELDS) + ")") for k in doc if k not in _FIELDS]
    window = _number(doc.get("window_s", DEFAULT_WINDOW_S), issues)
    cycles = _cycles(doc.get("min_cycles", 0), issues)
    step = _text(doc.get("step"), "health.step", MAX_STEP, issues)
    telemetry = _text(doc.get("telemetry"), "health.telemetry", MAX_TELEMETRY, issues)
    if telemetry is not None:
        try:
            parse(telemetry)
        except ExprSyntaxError as exc:
            issues.append(Issue(path="health.telemetry", reason=str(exc)))
    commissioning = doc.get("commissioning", False)
    if not isinstance(commissioning, bool):
        issues.append(Issue(path="health.commissioning",
                            reason=f"must be true or false, got {quote(commissioning)}"))
    if issues:
        raise ContractInvalid(issues)
    assert window is not None
    return HealthSpec(window_ms=round(window * 1000), min_cycles=cycles, step=step,
                      telemetry=telemetry, commissioning=bool(commissioning))


def _number(v: Any, issues: list[Issue]) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 1 <= v <= MAX_WINDOW_S:
        issues.append(Issue(path="health.window_s",
                            reason=f"must be a number of seconds in 1..{MAX_WINDOW_S}, got {quote(v)}"))
        return None
    return float(v)


def _cycles(v: Any, issues: list[Issue]) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_CYCLES:
        issues.append(Issue(path="health.min_cycles",
                            reason=f"must be an integer in 0..{MAX_CYCLES}, got {quote(v)}"))
        return 0
    return v


def _text(v: Any, path: str, most: int, issues: list[Issue]) -> str | None:
    if v is None:
        return None
    if not isinstance(v, str) or not v.strip() or len(v) > most:
        issues.append(Issue(path=path, reason=f"must be null or text of 1..{most} characters, "
                                              f"got {quote(v)}"))
        return None
    return v
