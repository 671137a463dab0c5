"""The gates' checks over what a HealthProof collected — pure: which journal occurrences fail
which gate, the telemetry condition over point values, the commissioning report.
contracts/rollout_health.py states the rules; this module is its part by part detail.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from contracts.commission_report import CommissionReport
from contracts.engine_modes import mode_after
from contracts.engine_state import Mode
from contracts.errors import ExprEvalError
from contracts.expr import Expr, parse
from contracts.journal_events import (AdapterFaultBody, AgentEvent, EventKind, GapBody, HubGapBody,
                                      KeyframeBody, RefusalBody, StepBody, TripBody)
from contracts.rollout_spec import Evidence, Gate, Health, Verdict

__all__ = ["BAD_EVENTS", "bad_gate", "commissioning_verdict", "condition", "detail", "entered",
           "failed", "gap_range", "parsed"]

BAD_EVENTS: Mapping[str, Gate] = MappingProxyType({
    EventKind.GUARD_TRIP: Gate.GUARD_TRIP,
    EventKind.ENGINE_ERROR: Gate.GUARD_TRIP,
    AgentEvent.SAFE_UNCONFIRMED: Gate.SAFE_UNCONFIRMED,
    AgentEvent.SECOND_WRITER: Gate.SECOND_WRITER,
    AgentEvent.MODEL_DIVERGENCE: Gate.MODEL_DIVERGENCE,
})
"""Occurrences that fail a gate inside the window (an autonomy budget run out into safe_state is
a trip as well: `bad_gate`). ADAPTER_FAULT entries fail `adapter_fault` unless they are a recovery."""


@functools.lru_cache(maxsize=256)
def parsed(text: str) -> Expr:
    """A deployment's condition, parsed once (a gate judges it for every device, every tick)."""
    return parse(text)


def condition(expr: Any, env: Mapping[str, Any], evidence: tuple[Evidence, ...]) -> Verdict:
    try:
        held = expr.evaluate(env) is True
    except ExprEvalError as exc:
        return failed(Gate.TELEMETRY, *evidence, Evidence(what="telemetry", value=str(exc)[:200]))
    if not held:
        return failed(Gate.TELEMETRY, *evidence, Evidence(what="telemetry", value=expr.text))
    return Verdict(health=Health.HEALTHY, gate=None, evidence=evidence)


def commissioning_verdict(report: CommissionReport | None, found: tuple[Evidence, ...]) -> Verdict:
    if report is None:
        return Verdict(health=Health.PENDING, gate=Gate.COMMISSIONING, evidence=found)
    if not report.ok:
        return failed(Gate.COMMISSIONING, *(
            Evidence(what=f"commissioning:{p.name}", ts_ms=report.started_ms,
                     value=p.error or "; ".join(p.hints) or p.verdict.value)
            for p in report.failing()))
    return Verdict(health=Health.HEALTHY, gate=None, evidence=(
        *found, Evidence(what="commissioning", ts_ms=report.started_ms, value="ok")))


def failed(gate: Gate, *evidence: Evidence) -> Verdict:
    return Verdict(health=Health.FAILED, gate=gate, evidence=tuple(evidence))


def entered(body: Any, step: str) -> bool:
    if isinstance(body, StepBody):
        return body.event == EventKind.STEP_ENTERED and body.get("step") == step
    return isinstance(body, KeyframeBody) and body.step == step


def bad_gate(body: Any) -> Gate | None:
    if isinstance(body, AdapterFaultBody):
        return None if body.what.endswith("_recovered") else Gate.ADAPTER_FAULT
    if isinstance(body, TripBody) and body.event == EventKind.AUTONOMY_EXHAUSTED:
        return Gate.GUARD_TRIP if mode_after(body.event, body.get("then")) is Mode.SAFE else None
    if isinstance(body, TripBody | StepBody | RefusalBody) or hasattr(body, "event"):
        return BAD_EVENTS.get(str(body.event))
    return None


def detail(body: Any) -> Any:
    if isinstance(body, AdapterFaultBody):
        return {"what": body.what, "reason": body.reason, "point": body.point}
    fields = getattr(body, "fields", {})
    return {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool | None)}


def gap_range(body: GapBody | HubGapBody) -> tuple[int, int]:
    if isinstance(body, GapBody):
        return body.dropped_from, body.dropped_to
    return body.missing_from, body.missing_to
