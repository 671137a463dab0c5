"""What the API shows of devices, contracts, journal rows and reconciliations — pure: records and
the time in, JSON out.

Rules (DESIGN invariant 8; fixed interfaces 1 and 7):
- Values are the device's truth: telemetry's `values` (good reads and the read-back of write
  points). Where the engine commands something else (`commanded`), both are shown.
- Every value carries its age: now minus when it was last read good (`read_ms`), falling back to
  the telemetry message's time.
- Nothing older than the silence timeout is `live`, and only a LIVE device's values can be: after
  a hub restart the stored values are `last_known`, with no confidence, until the device speaks.
- A projection (device offline) is shown as such, with its confidence.
"""
from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from contracts import codec
from contracts.engine_state import Mode
from contracts.errors import EncodingError
from hub.config import DEFAULT_SILENCE_TIMEOUT_S
from hub.live import LiveValues, is_projection
from hub.states import ContractStatus, DeviceState
from hub.store import ContractRecord, DeviceRecord, JournalRow, ReconciliationRecord

DEFAULT_SILENCE_MS = int(DEFAULT_SILENCE_TIMEOUT_S * 1000)


def plain(v: Any) -> Any:
    """Decoded CBOR to JSON-able values: bytes become hex, tuples lists."""
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, Mapping):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    return v


def with_live(d: DeviceRecord, live: Mapping[str, LiveValues]) -> DeviceRecord:
    """`d` with the sync side's in-memory live values, which are fresher than the stored ones
    (flushed every couple of seconds). A projection (outage not yet reconciled) is kept."""
    entry = live.get(d.id)
    if entry is None or is_projection(d.projection):
        return d
    return replace(d, projection=entry.shown())


def _age(now: int, ts: Any) -> int | None:
    return now - ts if isinstance(ts, int) else None


def point_views(blob: Mapping[str, Any], now: int, silence_ms: int,
                live: bool) -> list[dict[str, Any]]:
    """One row per value: read-back, commanded (when it differs), age, whether it is live, and
    the point's read fault in words while it fails (a failing point with no good read yet has
    a row with no value)."""
    values, commanded = blob.get("values", {}), blob.get("commanded") or {}
    read_ms, ts = blob.get("read_ms") or {}, blob.get("ts_ms")
    faults = blob.get("faults") or {}
    rows = []
    for name in sorted(set(values) | set(commanded) | set(faults)):
        read = read_ms.get(name, ts)
        age = _age(now, read)
        row: dict[str, Any] = {"name": name, "value": plain(values.get(name)), "read_ms": read,
                               "age_ms": age,
                               "live": live and age is not None and age <= silence_ms}
        if name in commanded and commanded[name] != values.get(name):
            row["commanded"] = plain(commanded[name])
        if name in faults:
            row["fault"] = str(faults[name])
        rows.append(row)
    return rows


def values_view(d: DeviceRecord, now: int, silence_ms: int) -> dict[str, Any] | None:
    """Live values (or the last known ones), or the projection with its age and confidence."""
    blob = d.projection
    if not isinstance(blob, Mapping):
        return None
    age = _age(now, blob.get("ts_ms"))
    if d.state is DeviceState.PROJECTED:
        return {"source": "projection", "values": plain(blob.get("values", {})), "age_ms": age,
                "confidence": blob.get("confidence"), "step": blob.get("step"),
                "mode": blob.get("mode"), "points": []}
    live = d.state is DeviceState.LIVE and age is not None and age <= silence_ms
    return {"source": "live" if live else "last_known", "values": plain(blob.get("values", {})),
            "age_ms": age, "confidence": 1.0 if live else None, "step": blob.get("step"),
            "mode": blob.get("mode"), "safe": blob.get("safe"), "trip": blob.get("trip"),
            "points": point_views(blob, now, silence_ms, live)}


def engine_view(c: ContractRecord, d: DeviceRecord | None, now: int) -> dict[str, Any] | None:
    """The device's engine mode for contract `c`, when the device reports it runs `c`: an
    operator sees `safe` and the trip cause beside a status the journal has not updated yet."""
    if d is None or (d.contract, d.version) != (c.contract, c.version):
        return None
    blob = d.projection if isinstance(d.projection, Mapping) else {}
    return {"mode": blob.get("mode"), "step": blob.get("step"), "trip": blob.get("trip"),
            "safe": blob.get("safe"), "source": blob.get("source"),
            "age_ms": _age(now, blob.get("ts_ms"))}


def shown_status(c: ContractRecord, engine: Mapping[str, Any] | None) -> str:
    """The status to show: the lifecycle's, but `tripped` while the device reports safe mode for
    an active contract (the journal's trip entry may not have arrived yet)."""
    if engine is not None and engine.get("mode") == Mode.SAFE and c.status is ContractStatus.ACTIVE:
        return ContractStatus.TRIPPED.value
    return c.status.value


# ---- records as the API shows them --------------------------------------------------------------

def device_view(d: DeviceRecord, now: int, *, detail: bool = False,
                silence_ms: int = DEFAULT_SILENCE_MS,
                alarms: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": d.id, "site": d.site, "labels": dict(d.labels), "state": d.state.value,
        "state_since_ms": d.state_since_ms, "last_seen_ms": d.last_seen_ms,
        "contract": d.contract, "version": d.version, "last_seq": d.last_seq,
        "acked_seq": d.acked_seq}
    if alarms is not None:
        view["alarms"] = alarms
    if detail:
        seen_age = now - d.last_seen_ms if d.last_seen_ms is not None else None
        view |= {"boot_id": d.boot_id, "values": values_view(d, now, silence_ms),
                 "last_seen_age_ms": seen_age,
                 "drift": dict(d.drift) if d.drift is not None else None}
    return view


def contracts_view(live: Mapping[str, LiveValues], now: int, silence_ms: int,
                   device: DeviceRecord | None = None) -> list[dict[str, Any]]:
    """Each contract the device runs, from its own telemetry (an agent runs several side by
    side): id, version, mode, step, safe state, trip, and its points (read-back beside commanded,
    a failing read's fault in words). While the `device` is projected (offline), each contract's
    projection instead: its step, mode, values and confidence."""
    if device is not None and device.state is DeviceState.PROJECTED and is_projection(
            device.projection):
        return _projected_contracts(device.projection, now)
    out = []
    for cid, lv in sorted(live.items()):
        fresh = now - lv.received_ms <= silence_ms
        out.append({"contract": cid or None, "version": lv.version, "source": "live",
                    "mode": lv.mode, "step": lv.step, "safe": lv.safe,
                    "trip": lv.trip, "ts_ms": lv.ts_ms, "live": fresh,
                    "values": point_views(lv.shown(), now, silence_ms, fresh)})
    return out


def _projected_contracts(blob: Mapping[str, Any], now: int) -> list[dict[str, Any]]:
    each = blob.get("contracts")
    if not isinstance(each, Mapping):  # a projection stored before per-contract projection
        cid = str(blob.get("inputs", {}).get("contract_id", ""))
        each = {cid.rpartition("@")[0] or cid: blob}
    out = []
    for name, sub in sorted(each.items()):
        cid = str(sub.get("inputs", {}).get("contract_id", ""))
        version = cid.rpartition("@")[2]
        out.append({"contract": name, "version": int(version) if version.isdigit() else None,
                    "source": "projection", "mode": sub.get("mode"), "step": sub.get("step"),
                    "safe": None, "trip": None, "ts_ms": sub.get("ts_ms"), "live": False,
                    "confidence": sub.get("confidence"),
                    "values": point_views({"values": sub.get("values") or {},
                                           "ts_ms": sub.get("ts_ms")}, now, 0, False)})
    return out


def contract_view(c: ContractRecord, *, detail: bool = False,
                  engine: dict[str, Any] | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": c.id, "contract": c.contract, "version": c.version, "device": c.device,
        "site": c.site, "status": shown_status(c, engine), "lifecycle": c.status.value,
        "engine": engine, "lineage": c.lineage or c.id, "content_hash": c.content_hash,
        "created_ms": c.created_ms, "updated_ms": c.updated_ms, "reason": c.reason}
    if detail:
        view |= {"document": c.document, "signed": base64.b64encode(c.signed).decode()}
    return view


def journal_view(r: JournalRow) -> dict[str, Any]:
    try:
        body = plain(codec.loads(r.body))
    except EncodingError:
        body = {"raw_b64": base64.b64encode(r.body).decode()}
    return {"seq": r.seq, "ts_ms": r.ts_ms, "kind": r.kind, "body": body,
            "prev_hash": r.prev_hash.hex(), "hash": r.hash.hex()}


def reconciliation_view(r: ReconciliationRecord) -> dict[str, Any]:
    return {"id": r.id, "device": r.device, "contract": r.contract, "version": r.version,
            "ts_ms": r.ts_ms, "report": r.report, "divergent": r.divergent, "action": r.action}
