"""HealthJudge: a pushed contract's health gate, judged from the device's own ingested journal.

Rules (fixed interface I3; the gates and the window are contracts/rollout_health.py's):
- Evidence comes from the device's words only: its journal entries in the hub store (from the
  CONTRACT entry that accepted — or refused — the pushed content hash onward), the live values of
  its latest telemetry for the `telemetry` condition, and, for a canary whose spec asks for it,
  its latest commissioning report of that contract version received after the push. The hub's own
  record adds one thing: a push the device refused on its result topic is `refused`.
- The accept is found through the store's index of BOOT and CONTRACT rows (hub/store/journal.py
  `reports`), so a long journal is not scanned; then each judgement folds only the entries stored
  since the last one into the push's `HealthProof` (one per (device, contract, hash, push, spec),
  the oldest dropped past MAX_PROOFS). Judging is idempotent: the same store gives the same verdict.
- A body that does not decode is passed by (the sync side alarms it where it ingests it).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contracts.chain_rows import Row, entry_of
from contracts.commission_report import CommissionReport
from contracts.errors import EncodingError
from contracts.journal_events import ContractBody, decode_entry
from contracts.rollout_health import (Evidence, Gate, Health, HealthProof, HealthSpec,
                                      JournalRecord, TelemetryView, Verdict)
from contracts.types import EpochMs
from hub.live import LiveValues
from hub.states import ContractStatus
from hub.store import HubStore, NotFound

log = logging.getLogger("fieldpact.hub.health")

MAX_PROOFS = 10_000
"""Pushes judged at once (a wave over a large fleet); an evicted one is refolded when asked."""

LiveSource = Mapping[str, LiveValues] | Callable[[], Mapping[str, LiveValues]]
"""The hub's live values by device (HubSync.live), or a function giving them (the API side's
HubService.live is replaced when the MQTT side starts: pass `lambda: service.live`)."""


@dataclass
class _Judged:
    proof: HealthProof
    scanned: int = 0         # the reports (BOOT/CONTRACT rows) searched up to, for the accept
    start: int | None = None  # the seq of the CONTRACT entry about the pushed hash


class HealthJudge:
    """Judges pushes for a deployment (hub/rollout*.py). One per store connection (thread)."""

    def __init__(self, store: HubStore, live: LiveSource) -> None:
        self.store, self._live = store, live
        self._judged: OrderedDict[tuple[Any, ...], _Judged] = OrderedDict()

    def judge(self, device: str, contract_id: str, content_hash: str, pushed_ms: EpochMs,
              spec: HealthSpec, now_ms: EpochMs, *, canary: bool) -> Verdict:
        """The verdict on `contract_id` ("name@version") with `content_hash` pushed to `device`
        at `pushed_ms` (hub clock). PENDING until the window has passed with proof; FAILED at the
        first failing gate with its evidence. Raises nothing for a device's bad input."""
        name, version = _split(contract_id)
        refused = self._refused_by_result(contract_id, content_hash)
        if refused is not None:
            return refused
        judged = self._entry((device, contract_id, content_hash, pushed_ms, spec), name,
                             content_hash, spec)
        if judged.start is None:
            self._find_start(device, judged)
        if judged.start is not None:
            after = max(judged.start, judged.proof.last_seq + 1)
            judged.proof.feed(_records(self.store.journal.stored(device, after)))
        needs = canary and spec.commissioning
        return judged.proof.verdict(
            pushed_ms=pushed_ms, now_ms=now_ms, telemetry=self._telemetry(device),
            commissioning=self._commissioning(device, name, version, pushed_ms) if needs else None,
            needs_commissioning=needs)

    def forget(self, device: str) -> None:
        """Drop what is kept of `device`'s pushes (its deployment is over)."""
        for key in [k for k in self._judged if k[0] == device]:
            del self._judged[key]

    def _entry(self, key: tuple[Any, ...], name: str, content_hash: str,
               spec: HealthSpec) -> _Judged:
        judged = self._judged.get(key)
        if judged is None:
            judged = self._judged[key] = _Judged(
                proof=HealthProof(contract=name, content_hash=content_hash, spec=spec))
            while len(self._judged) > MAX_PROOFS:
                self._judged.popitem(last=False)
        self._judged.move_to_end(key)
        return judged

    def _find_start(self, device: str, judged: _Judged) -> None:
        for row in self.store.journal.reports(device, judged.scanned):
            judged.scanned = row.seq + 1
            body = _decoded(row)
            if isinstance(body, ContractBody) and body.hash == judged.proof.hash:
                judged.start = row.seq
                return

    def _refused_by_result(self, contract_id: str, content_hash: str) -> Verdict | None:
        """The device refused the push on its result topic (the hub's record says so)."""
        try:
            record = self.store.contracts.get(contract_id)
        except NotFound:
            return None
        if record.status is not ContractStatus.REFUSED or record.content_hash != content_hash:
            return None
        return Verdict(health=Health.FAILED, gate=Gate.REFUSED, evidence=(
            Evidence(what="contract_status", ts_ms=record.updated_ms, value=record.reason),))

    def _telemetry(self, device: str) -> TelemetryView | None:
        live = (self._live() if callable(self._live) else self._live).get(device)
        return None if live is None else TelemetryView(values=dict(live.values), ts_ms=live.ts_ms)

    def _commissioning(self, device: str, name: str, version: int,
                       pushed_ms: EpochMs) -> CommissionReport | None:
        """The latest answered report, if it came after the push and is of this contract version."""
        rec = self.store.commissioning.latest_answered(device)
        if rec is None or rec.report is None or (rec.received_ms or 0) < pushed_ms:
            return None
        try:
            report = CommissionReport.from_mapping(rec.report)
        except EncodingError as exc:
            log.info("health_report_skipped device=%s why=%s", device, str(exc)[:80])
            return None
        return report if (report.contract, report.version) == (name, version) else None


def _split(contract_id: str) -> tuple[str, int]:
    name, _, version = contract_id.rpartition("@")
    if not name or not version.isdigit():
        raise ValueError(f"contract id must be name@version, got {contract_id[:80]!r}")
    return name, int(version)


def _decoded(row: Row) -> Any:
    try:
        return decode_entry(entry_of(row))
    except EncodingError:  # BodyError, or a body that is not a CBOR map
        return None


def _records(rows: list[Row]) -> list[JournalRecord]:
    return [(row.seq, row.ts_ms, body) for row in rows if (body := _decoded(row)) is not None]
