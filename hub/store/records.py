"""The hub store's records: one frozen dataclass per row kind, as the repositories return them."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from contracts.types import EpochMs
from hub.states import ContractStatus, DeviceState


@dataclass(frozen=True, kw_only=True)
class DeviceRecord:
    id: str
    site: str
    state: DeviceState
    state_since_ms: EpochMs
    labels: Mapping[str, str] = field(default_factory=dict)
    last_seen_ms: EpochMs | None = None
    boot_id: str | None = None
    contract: str | None = None
    version: int | None = None
    last_seq: int = 0
    acked_seq: int = 0
    last_hash: bytes | None = None
    projection: Any = None  # decoded CBOR, written by the sync side
    drift: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class ContractRecord:
    id: str  # "contract@version"
    contract: str
    version: int
    device: str
    site: str
    status: ContractStatus
    document: Mapping[str, Any]
    signed: bytes
    content_hash: str
    created_ms: EpochMs
    updated_ms: EpochMs
    reason: str | None = None
    lineage: str | None = None  # hub/lineage.py; None = its own id


def contract_id(contract: str, version: int) -> str:
    """The store's id for a contract version: "tank-fill@3"."""
    return f"{contract}@{version}"


@dataclass(frozen=True, kw_only=True)
class TransitionRecord:
    subject: str  # device id or contract id
    from_state: str | None
    to_state: str
    event: str
    ts_ms: EpochMs
    reason: str | None = None


@dataclass(frozen=True, kw_only=True)
class Changed:
    """Result of applying an event: the state before and after, and whether a row was written."""

    before: str
    after: str
    written: bool


@dataclass(frozen=True, kw_only=True)
class JournalRow:
    device: str
    seq: int
    ts_ms: EpochMs
    kind: str
    body: bytes
    prev_hash: bytes
    hash: bytes


@dataclass(frozen=True, kw_only=True)
class ReconciliationRecord:
    device: str
    contract: str | None
    version: int | None
    ts_ms: EpochMs
    report: Mapping[str, Any]
    divergent: bool
    action: str
    id: int | None = None


@dataclass(frozen=True, kw_only=True)
class ReconcileRequest:
    id: int
    contract: str
    device: str
    actor: str
    ts_ms: EpochMs
    done_ms: EpochMs | None = None


@dataclass(frozen=True, kw_only=True)
class Alarm:
    """One alarm: raised at `ts_ms` (first), raised again `count` times while active (last at
    `last_ms`), acknowledged by `acked_by` at `acked_ms`, cleared at `cleared_ms`."""

    id: int
    ts_ms: EpochMs
    device: str
    kind: str
    detail: str
    cleared_ms: EpochMs | None = None
    count: int = 1
    last_ms: EpochMs | None = None
    acked_ms: EpochMs | None = None
    acked_by: str | None = None

    @property
    def active(self) -> bool:
        return self.cleared_ms is None
