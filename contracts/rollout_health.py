"""Health from proof: what a deployment asks of a device, and the verdict its own journal gives — pure.

A device counts as healthy for a pushed contract only on evidence in its own signed journal
(fixed interface I3), judged by `judge` over the decoded records the hub ingested from it:
- `accepted`   a CONTRACT `accepted` entry with the pushed content hash (a CONTRACT `refused` or a
               `stored_contract_refused` REFUSAL with that hash fails the gate `refused`);
- `cycles`     at least `min_cycles` scan cycles of that contract run inside the window (the rule
               for counting them is contracts/rollout_cycles.py's); another version of the contract
               booting inside the window fails it too (evidence `replaced`);
- `step`       the named step entered inside the window;
- no `guard_trip`, `safe_unconfirmed`, `second_writer`, `adapter_fault`, `model_divergence` or
               `rollout_fallback` of that contract inside the window (the first one in seq order
               fails its gate; a `rollout_fallback` — the agent fell back to its known-good
               contract by itself, interface I2 — fails as `rollout_fallback` whatever caused it);
- `telemetry`  the expression (contracts.expr) true over the point values the journal shows at the
               window's end, and over the live telemetry when it is newer than that; the values
               are the device's: the contract's own first, then those its other contracts
               journaled since the accept and before the window's end (a device running several
               contracts is judged on one condition over all its points);
- `commissioning` for a canary asked for one, a passing commissioning report of that contract.
The window runs from the contract's first BOOT on the device for `window_ms` of the device's own
clock (as the agent's fallback rule measures it), and is proven passed only by an ingested entry
stamped at or after its end — the journal is gapless and ingested in seq order, so nothing before
that entry is still to come — and, on the hub's clock, not before the push plus the window.
PENDING until then (its gate names what is awaited); FAILED at the first failing gate, with its
evidence (journal seqs, times and values); HEALTHY with the evidence that proved it. A GAP entry
(entries dropped before the hub had them) before the proof keeps it PENDING: what the dropped
entries said cannot be proven, so such a device never counts as healthy for this push.

Scan cycles are counted from the journal by the rule in contracts/rollout_cycles.py; the gates'
checks (which occurrence fails which gate, the telemetry condition, the commissioning report) are
contracts/rollout_gates.py's; the spec and verdict types contracts/rollout_spec.py's.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.commission_report import CommissionReport
from contracts.expr import names_in_order
from contracts.journal_events import (AgentEvent, BootBody, ContractBody, ContractChange, GapBody,
                                      HubGapBody, InputBody, KeyframeBody, RefusalBody)
from contracts.rollout_cycles import Run
from contracts.rollout_gates import (bad_gate, commissioning_verdict, condition, detail, entered,
                                     failed, gap_range, parsed)
from contracts.rollout_spec import (DEFAULT_WINDOW_S, MAX_WINDOW_S, Evidence, Gate, Health,
                                    HealthSpec, JournalRecord, TelemetryView, Verdict, parse_health)
from contracts.types import EpochMs

__all__ = ["DEFAULT_WINDOW_S", "MAX_WINDOW_S", "ROLLOUT_FALLBACK", "Evidence", "Gate", "Health",
           "HealthProof", "HealthSpec", "JournalRecord", "TelemetryView", "Verdict", "judge",
           "parse_health"]

ROLLOUT_FALLBACK = AgentEvent.ROLLOUT_FALLBACK
"""The agent's event (interface I2): it fell back to its known-good contract by itself."""

class HealthProof:
    """What one device's journal has proven so far about one pushed contract: fed its records
    once each, in seq order (`feed` skips a seq it has seen), asked for a verdict at any time.
    The hub keeps one per judged push, so each judgement reads only the entries new since."""

    def __init__(self, *, contract: str, content_hash: str, spec: HealthSpec) -> None:
        self.contract, self.hash, self.spec = contract, content_hash, spec
        self.last_seq = -1
        self.accepted: Evidence | None = None
        self.refused: Evidence | None = None
        self.runs: list[Run] = []
        self.active = False                  # the latest BOOT of the contract is of this hash
        self.latest_boot: str | None = None  # whose run an untagged entry belongs to
        self.window_end: EpochMs | None = None
        self.proof: Evidence | None = None   # the first entry at or after the window's end
        self.ended: Evidence | None = None   # another version took over inside the window
        self.replaced_by: str | None = None
        self.step: Evidence | None = None
        self.bad: tuple[Gate, Evidence] | None = None
        self.fallback: tuple[Evidence, int | None] | None = None
        self.causes: dict[int, Evidence] = {}
        self.own = _Values()  # each point's latest journaled value in the window
        self.others = _Values()  # the same, journaled by the device's other contracts
        self.gap: Evidence | None = None

    def feed(self, records: Iterable[JournalRecord]) -> None:
        for seq, ts_ms, body in records:
            if seq > self.last_seq:
                self.last_seq = seq
                self._one(seq, ts_ms, body)

    def _one(self, seq: int, ts: EpochMs, body: Any) -> None:
        if isinstance(body, ContractBody | RefusalBody) and self._contract_word(seq, ts, body):
            return
        if self.accepted is None:
            return  # nothing before the accept is about this push
        if isinstance(body, BootBody):
            self._boot(seq, ts, body)
            return
        if isinstance(body, GapBody | HubGapBody) and self.proof is None:
            self.gap = Evidence(what="journal_gap", seq=seq, ts_ms=ts, value=list(gap_range(body)))
        tag = getattr(body, "contract", None)
        owner = tag if tag is not None else self.latest_boot
        if owner == self.contract and getattr(body, "event", None) == ROLLOUT_FALLBACK:
            self._fallback(seq, ts, body)
        if owner == self.contract and self.active:
            self._ours(seq, ts, body)
        elif isinstance(body, InputBody | KeyframeBody) and (
                self.window_end is None or ts < self.window_end):
            self.others.note(seq, ts, body)
        if self.proof is None and self.window_end is not None and ts >= self.window_end:
            self.proof = Evidence(what="window", seq=seq, ts_ms=ts, value=self.window_end)

    def _contract_word(self, seq: int, ts: EpochMs, body: ContractBody | RefusalBody) -> bool:
        """A CONTRACT entry, or a stored contract refused: True when it says nothing else."""
        if isinstance(body, RefusalBody):
            if body.event == AgentEvent.STORED_CONTRACT_REFUSED and body.get("hash") == self.hash:
                self.refused = Evidence(what=str(body.event), seq=seq, ts_ms=ts,
                                        value=body.get("refusal"))
            return self.accepted is None
        if body.hash == self.hash and body.event is ContractChange.ACCEPTED and self.accepted is None:
            self.accepted = Evidence(what="accepted", seq=seq, ts_ms=ts, value=self.hash)
        elif body.hash == self.hash and body.event is ContractChange.REFUSED:
            self.refused = Evidence(what="refused", seq=seq, ts_ms=ts,
                                    value=body.refusal.value if body.refusal else body.detail)
        return True

    def _boot(self, seq: int, ts: EpochMs, body: BootBody) -> None:
        self.latest_boot = body.contract
        if body.contract != self.contract:
            return
        if body.hash == self.hash:
            boot = Evidence(what="boot", seq=seq, ts_ms=ts, value=f"{body.contract}@{body.version}")
            self.runs.append(Run(boot=boot, t0_ms=body.t0_ms, period_ms=max(1, body.period_ms)))
            if self.window_end is None:  # the window counts from the contract's first boot
                self.window_end = body.t0_ms + self.spec.window_ms
            self.active = True
        elif self.active:
            self.active, self.replaced_by = False, body.hash
            if self.proof is None:
                self.ended = Evidence(what="replaced", seq=seq, ts_ms=ts,
                                      value=f"{body.contract}@{body.version}")

    def _ours(self, seq: int, ts: EpochMs, body: Any) -> None:
        self.runs[-1].note(ts, body)
        assert self.window_end is not None
        if ts >= self.window_end:
            return  # after the window: only its cycles count (above)
        if isinstance(body, InputBody | KeyframeBody):
            self.own.note(seq, ts, body)
        if self.step is None and self.spec.step is not None and entered(body, self.spec.step):
            self.step = Evidence(what="step", seq=seq, ts_ms=ts, value=self.spec.step)
        gate = bad_gate(body)
        if gate is not None:
            ev = Evidence(what=str(getattr(body, "event", None) or "adapter_fault"), seq=seq,
                          ts_ms=ts, value=detail(body))
            self.causes.setdefault(seq, ev)
            if self.bad is None:
                self.bad = (gate, ev)

    def _fallback(self, seq: int, ts: EpochMs, body: Any) -> None:
        known = body.get("known_good")
        if known == self.hash or not (self.active or self.replaced_by == known):
            return  # another version's fallback (to this one, or after this one's run)
        value = {k: body.get(k) for k in ("deployment", "known_good", "fallback", "cause",
                                          "cause_seq")}
        cause = body.get("cause_seq")
        if self.fallback is None:
            self.fallback = (Evidence(what=ROLLOUT_FALLBACK, seq=seq, ts_ms=ts, value=value),
                             cause if isinstance(cause, int) else None)

    def cycles(self) -> int:
        """Cycles of the contract proven run inside the window (all its runs together)."""
        if self.window_end is None:
            return 0
        return sum(r.cycles_before(self.window_end) for r in self.runs)

    def verdict(self, *, pushed_ms: EpochMs, now_ms: EpochMs, telemetry: TelemetryView | None = None,
                commissioning: CommissionReport | None = None,
                needs_commissioning: bool = False) -> Verdict:
        """The verdict now (see the module's rules); `commissioning` is read only when
        `needs_commissioning`."""
        if self.refused is not None:
            return failed(Gate.REFUSED, self.refused)
        if self.accepted is None:
            return Verdict(health=Health.PENDING, gate=Gate.ACCEPTED, evidence=())
        if not self.runs:
            return Verdict(health=Health.PENDING, gate=Gate.CYCLES, evidence=(self.accepted,))
        if self.fallback is not None:
            fell, cause = self.fallback
            return failed(Gate.ROLLOUT_FALLBACK, fell,
                           *([self.causes[cause]] if cause in self.causes else []))
        if self.bad is not None:
            return failed(*self.bad)
        cycles = Evidence(what="cycles", seq=None, ts_ms=None, value=self.cycles())
        if self.ended is not None:
            return failed(Gate.CYCLES, self.ended, cycles)
        base = (self.accepted, self.runs[0].boot, cycles)
        if self.proof is None or now_ms < pushed_ms + self.spec.window_ms or self.gap is not None:
            return Verdict(health=Health.PENDING, gate=self._awaited(cycles.value),
                           evidence=(*base, self._window_evidence()))
        if cycles.value < self.spec.min_cycles:
            return failed(Gate.CYCLES, cycles, self.proof)
        if self.spec.step is not None and self.step is None:
            return failed(Gate.STEP, Evidence(what="step", value=self.spec.step), self.proof)
        shown = self._telemetry(telemetry)
        if shown is not None and shown.health is Health.FAILED:
            return shown
        found = (*base, *([self.step] if self.step else []), self.proof,
                 *(shown.evidence if shown else ()))
        if needs_commissioning:
            return commissioning_verdict(commissioning, found)
        return Verdict(health=Health.HEALTHY, gate=None, evidence=found)

    def _awaited(self, cycles: int) -> Gate | None:
        if cycles < self.spec.min_cycles:
            return Gate.CYCLES
        if self.spec.step is not None and self.step is None:
            return Gate.STEP
        return None

    def _window_evidence(self) -> Evidence:
        if self.gap is not None:
            return self.gap  # the hub cannot prove what the dropped entries said
        return Evidence(what="window", seq=None, ts_ms=self.window_end, value="not yet proven")

    def _telemetry(self, live: TelemetryView | None) -> Verdict | None:
        """The telemetry gate over the journal's values at the window's end, then over the live
        values if newer (a regression since); None when the spec has no telemetry condition."""
        if self.spec.telemetry is None:
            return None
        expr = parsed(self.spec.telemetry)
        names = names_in_order(expr)
        good = {**self.others.good, **self.own.good}  # the device's values, its contract's first
        journaled = tuple(self.own.view.get(n) or self.others.view.get(n) or Evidence(what=n)
                          for n in names)
        verdict = condition(expr, good, journaled)
        assert self.proof is not None
        if verdict.health is Health.FAILED or live is None or live.ts_ms <= (self.proof.ts_ms or 0):
            return verdict
        values = {**good, **{k: v for k, v in live.values.items()
                             if isinstance(v, bool | int | float)}}
        shown = tuple(Evidence(what=n, ts_ms=live.ts_ms, value=values.get(n)) for n in names)
        return condition(expr, values, shown)


class _Values:
    """Each point's latest journaled value (evidence, and the good ones as values)."""

    __slots__ = ("view", "good")

    def __init__(self) -> None:
        self.view: dict[str, Evidence] = {}
        self.good: dict[str, Any] = {}

    def note(self, seq: int, ts: EpochMs, body: InputBody | KeyframeBody) -> None:
        """`body`'s values as each point's latest (a point read BAD leaves `good`)."""
        for name, wire in body.values.items():
            ok = len(wire) == 3 and wire[1] == "good"
            self.view[name] = Evidence(what=name, seq=seq, ts_ms=ts, value=wire[0] if ok else None)
            if ok:
                self.good[name] = wire[0]
            else:
                self.good.pop(name, None)


def judge(records: Iterable[JournalRecord], *, contract: str, content_hash: str, spec: HealthSpec,
          pushed_ms: EpochMs, now_ms: EpochMs, telemetry: TelemetryView | None = None,
          commissioning: CommissionReport | None = None, canary: bool = False) -> Verdict:
    """The verdict on `contract` (its template id: the journal's tag) with `content_hash`, pushed
    at `pushed_ms` (hub clock), from the device's decoded records (seq order, those after the
    push; earlier ones are passed by). `commissioning`: the latest report of that contract
    version, read only when `canary and spec.commissioning`. Raises nothing for any records."""
    proof = HealthProof(contract=contract, content_hash=content_hash, spec=spec)
    proof.feed(records)
    needs = canary and spec.commissioning
    return proof.verdict(pushed_ms=pushed_ms, now_ms=now_ms, telemetry=telemetry,
                         commissioning=commissioning if needs else None, needs_commissioning=needs)
