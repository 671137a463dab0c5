"""INTERIM health judge with interface I3's shapes, for lane E's engine and tests until lane F's
contracts/rollout_health.py and hub/health.py land (branch p3-health); hub/rollout_gate.py
imports theirs when present, this module otherwise. Delete it once p3-health is merged.

What it proves, from the device's own ingested journal after the push: the CONTRACT entry
`accepted` with the pushed content hash; no TRIP, no `safe_unconfirmed`, `second_writer`,
`model_divergence` or `rollout_fallback` event, no adapter fault, within the window after the
acceptance; at least `min_cycles` cycles (the telemetry's journal head moving is not counted:
INPUT entries are); `step` reached when named; the `telemetry` expression true on the live values.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.chain import Entry, EntryKind
from contracts.errors import ContractInvalid, ExprEvalError, ExprSyntaxError, Issue
from contracts.expr import parse
from contracts.types import EpochMs
from hub.live import LiveValues
from hub.store import HubStore

_FAILING_EVENTS = ("safe_unconfirmed", "second_writer", "model_divergence", "rollout_fallback")


@dataclass(frozen=True)
class HealthSpec:
    window_ms: int
    min_cycles: int = 0
    step: str | None = None
    telemetry: str | None = None
    commissioning: bool = False


def parse_health(doc: Mapping[str, Any]) -> HealthSpec:
    """Raises ContractInvalid naming the field (health.window_s, ...)."""
    issues: list[Issue] = []
    window = doc.get("window_s", 300)
    if not (isinstance(window, (int, float)) and not isinstance(window, bool) and
            1 <= window <= 86_400):
        issues.append(Issue(path="health.window_s", reason="must be a number 1..86400"))
        window = 300
    cycles = doc.get("min_cycles", 0)
    if not (isinstance(cycles, int) and not isinstance(cycles, bool) and cycles >= 0):
        issues.append(Issue(path="health.min_cycles", reason="must be an integer >= 0"))
        cycles = 0
    telemetry = doc.get("telemetry")
    if telemetry is not None:
        try:
            parse(str(telemetry))
        except ExprSyntaxError as exc:
            issues.append(Issue(path="health.telemetry", reason=str(exc)))
    step = doc.get("step")
    if step is not None and not isinstance(step, str):
        issues.append(Issue(path="health.step", reason="must be a step name or null"))
    if issues:
        raise ContractInvalid(issues)
    return HealthSpec(window_ms=int(window * 1000), min_cycles=cycles, step=step,
                      telemetry=telemetry, commissioning=bool(doc.get("commissioning", False)))


@dataclass(frozen=True)
class Evidence:
    what: str
    seq: int | None = None
    ts_ms: int | None = None
    value: Any = None


class Health(enum.StrEnum):
    PENDING = "pending"
    HEALTHY = "healthy"
    FAILED = "failed"


@dataclass(frozen=True)
class Verdict:
    health: Health
    gate: str | None
    evidence: tuple[Evidence, ...]


def _failed(gate: str, *evidence: Evidence) -> Verdict:
    return Verdict(Health.FAILED, gate, tuple(evidence))


class HealthJudge:
    def __init__(self, store: HubStore, live: Mapping[str, LiveValues]) -> None:
        self.store, self.live = store, live

    def judge(self, device: str, contract_id: str, content_hash: str, pushed_ms: EpochMs,
              spec: HealthSpec, now_ms: EpochMs, *, canary: bool) -> Verdict:
        entries = [e for e in self.store.journal.entries(device) if e.ts_ms >= pushed_ms - 5_000]
        accepted = next((e for e in entries if e.kind is EntryKind.CONTRACT
                         and e.body.get("hash") == content_hash), None)
        refused = next((e for e in entries if e.kind is EntryKind.CONTRACT
                        and e.body.get("event") == "refused"
                        and e.body.get("version") == int(contract_id.rpartition("@")[2])), None)
        if refused is not None:
            return _failed("refused", Evidence("refused", refused.seq, refused.ts_ms,
                                               refused.body.get("reason")))
        if accepted is None:
            return Verdict(Health.PENDING, None, ())
        after = [e for e in entries if e.seq > accepted.seq]
        bad = self._first_failure(after, contract_id)
        if bad is not None:
            return bad
        cycles = sum(1 for e in after if e.kind is EntryKind.INPUT)
        proof = [Evidence("accepted", accepted.seq, accepted.ts_ms, content_hash)]
        if spec.telemetry is not None:
            live = self.live.get(device)
            values = dict(live.values) if live is not None else {}
            try:
                ok = parse(spec.telemetry).evaluate({k: _plain(v) for k, v in values.items()})
            except ExprEvalError:
                ok = None
            if ok is False:
                return _failed("telemetry", *(Evidence(k, live.seq if live else None,
                                                       live.ts_ms if live else None, _plain(v))
                                              for k, v in values.items()))
        if now_ms - accepted.ts_ms < spec.window_ms or cycles < spec.min_cycles:
            return Verdict(Health.PENDING, None, tuple(proof))
        if spec.step is not None and not any(e.kind is EntryKind.STEP and
                                             e.body.get("step") == spec.step for e in after):
            return _failed("step", *proof)
        return Verdict(Health.HEALTHY, None, (*proof, Evidence("cycles", value=cycles)))

    @staticmethod
    def _first_failure(after: list[Entry], contract_id: str) -> Verdict | None:
        for e in after:
            name = e.body.get("event")
            if e.kind is EntryKind.TRIP:
                return _failed("guard_trip", Evidence(str(name), e.seq, e.ts_ms, e.body.get("guard")))
            if e.kind is EntryKind.ADAPTER_FAULT:
                return _failed("adapter_fault", Evidence("adapter_fault", e.seq, e.ts_ms))
            if e.kind is EntryKind.EVENT and name in _FAILING_EVENTS:
                return _failed(str(name), Evidence(str(name), e.seq, e.ts_ms,
                                                   {k: v for k, v in e.body.items()
                                                    if isinstance(v, (str, int, float))}))
        return None


def _plain(v: Any) -> Any:
    """A telemetry value as the expression language takes it: [value, quality, ...] -> value."""
    return v[0] if isinstance(v, (list, tuple)) and v else v
