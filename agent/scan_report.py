"""What the scan loop (agent/scan.py) keeps and reports besides the journal: the hub's
connectivity as the engine sees it, one report per cycle, and the loop's running statistics.

Rules: plain mutable records, no I/O. `Connectivity` changes only on flips (so a segment journals
it rarely: `Segment.conn_seen`); a standalone agent always looks online to its engines. A cycle's
report says "healthy" when the loop kept its deadline (the cycle took no longer than its period),
never about the device: a device fault is the contract's safe state's business, and restarting
the agent cannot fix it. Lateness is kept for the last LATENESS_KEPT cycles, overall and per
contract, so memory stays bounded on an agent that runs for months.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from contracts.engine import StepResult
from contracts.inputs import Reading
from contracts.types import EpochMs

LATENESS_KEPT = 100_000
"""Cycles whose lateness is kept: at 100 ms, the last ~3 hours, for a few MB at most."""


@dataclass
class Connectivity:
    """Hub reachability as the engine sees it. Changed only on flips, so it journals rarely."""

    standalone: bool
    online: bool = False
    last_contact_ms: EpochMs | None = None
    flips: int = 0  # each segment journals the flips it has not seen (Segment.conn_seen)

    def set_online(self, online: bool, contact_ms: EpochMs) -> None:
        if online != self.online:
            self.online, self.last_contact_ms = online, contact_ms
            self.flips += 1

    def inputs_view(self) -> tuple[bool, EpochMs | None]:
        if self.standalone:
            return True, None
        return self.online, (None if self.online else self.last_contact_ms)


@dataclass
class CycleReport:
    now_ms: EpochMs
    late_ms: float
    duration_ms: float
    result: StepResult
    view: dict[str, Reading]
    healthy: bool
    contract: str | None = None  # the contract id of the segment that ran the cycle


@dataclass
class ScanStats:
    cycles: int = 0
    overruns: int = 0
    skipped: int = 0
    lateness_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENESS_KEPT))
    by_contract: dict[str, deque[float]] = field(default_factory=dict)  # lateness per contract

    def account(self, report: CycleReport, period_ms: int) -> None:
        """Count `report`'s cycle; it is unhealthy if it took longer than its period."""
        self.cycles += 1
        self.lateness_ms.append(report.late_ms)
        if report.contract is not None:
            self.by_contract.setdefault(report.contract, deque(maxlen=LATENESS_KEPT)).append(
                report.late_ms)
        if report.duration_ms > period_ms:
            report.healthy = False

    def overran(self, skipped: int) -> None:
        """Count an overrun that skipped `skipped` cycles."""
        self.overruns += 1
        self.skipped += skipped
