"""What each device reports it runs, read from its own journal: never from what the hub pushed.

Rules:
- Three sources, all the device's own words: its birth and telemetry name the contract and version
  it runs (the sync side keeps them on the device row, only for contracts the hub issued to it);
  its journal's BOOT and CONTRACT entries add the content hash it verified and the contracts it
  refused. The journal is hash-chained and, with a journal key, signed (hub/claims.py).
- `ReportedContracts.refresh()` reads only entries stored since its last call, through the partial
  index `journal_reports` (BOOT and CONTRACT rows only: a handful per device, however long the
  journal), so a drift evaluation costs one small query, not a journal scan.
- An agent runs several contracts side by side, each with its own BOOT: the version of each
  contract (by name) it reported last is kept apart (`running`), so drift judges each desired
  contract against what the device says of that contract, not of the one its device row names.
- A body that does not decode is skipped (the sync side alarms bad input where it ingests it).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from contracts.chain import EntryKind
from contracts.codec import loads
from contracts.errors import ContractError
from contracts.journal_events import BodyError, BootBody, ContractBody, ContractChange, decode
from contracts.types import EpochMs
from hub.store import HubStore

log = logging.getLogger("fieldpact.hub.reports")

_QUERY = ("SELECT rowid, device, ts_ms, kind, body FROM journal INDEXED BY journal_reports "
          "WHERE kind IN ('boot', 'contract') AND rowid > ? ORDER BY rowid LIMIT ?")
_PAGE = 2_000
"""Rows read per query; a first refresh over a long history reads pages until it is current."""


@dataclass(frozen=True, kw_only=True)
class Reported:
    """A contract version the device said it runs (BOOT) or accepted (CONTRACT), with its hash."""

    contract: str
    version: int
    hash: str
    ts_ms: EpochMs


@dataclass(frozen=True, kw_only=True)
class Refused:
    contract: str
    version: int | None
    refusal: str
    ts_ms: EpochMs


class ReportedContracts:
    """Per device: the hash it last reported for each contract version, and its last refusal of
    each contract. One per store connection (the API side's)."""

    def __init__(self, store: HubStore) -> None:
        self.store = store
        self._after = 0
        self.hashes: dict[tuple[str, str, int], Reported] = {}
        self.latest: dict[tuple[str, str], Reported] = {}
        """(device, contract name) -> the version it reported last (a fallback to an older
        known-good version is later in the journal, so it is the one)."""
        self.refusals: dict[tuple[str, str], Refused] = {}

    def refresh(self) -> None:
        while True:
            rows = list(self.store.db.query(_QUERY, [self._after, _PAGE]))
            for row in rows:
                self._note(row["device"], row["ts_ms"], row["kind"], bytes(row["body"]))
                self._after = row["rowid"]
            if len(rows) < _PAGE:
                return

    def hash_of(self, device: str, contract: str, version: int) -> str | None:
        found = self.hashes.get((device, contract, version))
        return found.hash if found else None

    def running(self, device: str, contract: str) -> Reported | None:
        """The version of `contract` (a name) the device last said it runs or accepted."""
        return self.latest.get((device, contract))

    def refusal(self, device: str, contract: str) -> Refused | None:
        return self.refusals.get((device, contract))

    def _note(self, device: str, ts_ms: EpochMs, kind: str, body: bytes) -> None:
        try:
            record = decode(kind, _as_map(loads(body)))
        except (BodyError, ContractError, ValueError) as exc:
            log.info("report_skipped device=%s kind=%s why=%s", device, kind, str(exc)[:80])
            return
        if isinstance(record, BootBody):
            self._ran(device, record.contract, record.version, record.hash, ts_ms)
        elif isinstance(record, ContractBody) and record.contract is not None:
            if record.event is ContractChange.REFUSED:
                self.refusals[(device, record.contract)] = Refused(
                    contract=record.contract, version=record.version,
                    refusal=str(record.refusal.value if record.refusal else "refused"), ts_ms=ts_ms)
            elif record.event is ContractChange.ACCEPTED and record.version and record.hash:
                self._ran(device, record.contract, record.version, record.hash, ts_ms)
                self.refusals.pop((device, record.contract), None)

    def _ran(self, device: str, contract: str, version: int, digest: str, ts_ms: EpochMs) -> None:
        self.hashes[(device, contract, version)] = self.latest[(device, contract)] = Reported(
            contract=contract, version=version, hash=digest, ts_ms=ts_ms)


def _as_map(value: object) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ValueError("body is not a map")
    return value


KINDS = (EntryKind.BOOT, EntryKind.CONTRACT)
"""The entry kinds read here; the index's WHERE clause names their values."""
