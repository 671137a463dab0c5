"""Meaning → transition: what a device's message or the passing of time makes the hub do — pure.

Each function takes what the hub knows (records, cursors, the time) and returns a decision; the
handlers (hub/sync/presence.py, journal.py, background.py) only look things up and apply it.
- Telemetry (`telemetry_plan`): whether its contract claim must be checked, whether the device's
  reported contract is recorded, which contract it starts (first `running` seen), and whether the
  device takes TELEMETRY (skipped where that is a self-loop: hub/states.is_self_loop).
- A birth the broker replays (`replayed`): the retained copy of one already handled is not news.
- Catching up (`caught_up`): a device in `reconciling` is caught up once it has spoken since it
  entered (a target exists) and the hub's cursor reaches the head it reported then.
- Silence and stalls (`silent`, `stalled`): a device watched for silence that has not been heard
  for the timeout; a live device whose telemetry reports journal beyond the hub's cursor while
  the cursor has not moved for the timeout (a trip may sit in the part the hub lacks).
- Refusals repeated (`RefusalLog`): the same refused claim is logged and alarmed once a minute.
"""
from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass

from contracts.engine_state import Mode
from contracts.types import EpochMs
from contracts.wire import Birth, Telemetry
from hub.states import SHOWN_OFFLINE, WATCHED_FOR_SILENCE, DeviceEvent, DeviceState, is_self_loop
from hub.store import DeviceRecord, contract_id

CLAIM_REPEAT_MS = 60_000
"""A refused claim repeated by the same device (its telemetry, every second) is logged and alarmed
again at most once a minute: every alarm is a durable write, and the first one says it all."""

MAX_REFUSALS_TRACKED = 4096


def reported_cid(contract: str | None, version: int | None) -> str | None:
    """The contract id a message reports, if it names one."""
    return contract_id(contract, version) if contract and version else None


@dataclass(frozen=True, kw_only=True)
class TelemetryPlan:
    check_claim: bool            # a contract not yet seen from this device: check it first
    record_contract: bool        # store the reported contract/version on the device
    start: str | None            # contract id to move to ACTIVE (START)
    event: DeviceEvent | None    # TELEMETRY, unless it is a self-loop in the device's state


def telemetry_plan(t: Telemetry, rec: DeviceRecord, started: Container[str], *,
                   fault: bool, running: Container[tuple[str | None, int | None]] = ()
                   ) -> TelemetryPlan:
    """What one telemetry message changes. `started`: contract ids already started by telemetry;
    `fault`: the device may change no contract (hub/claims.may_change_contracts); `running`: the
    (contract, version) pairs the device's birth listed (an agent runs several, one telemetry
    each): telemetry of one of them does not replace the device's own contract."""
    cid = reported_cid(t.contract, t.version)
    other = (t.contract, t.version) != (rec.contract, rec.version) \
        and (t.contract, t.version) not in running
    start = cid if cid is not None and t.mode == Mode.RUNNING and not fault else None
    return TelemetryPlan(
        check_claim=other or cid not in started,
        record_contract=other and not fault,
        start=start if start not in started else None,
        event=None if is_self_loop(rec.state, DeviceEvent.TELEMETRY) else DeviceEvent.TELEMETRY)


def replayed(rec: DeviceRecord | None, birth: Birth) -> bool:
    """The broker's retained copy of a birth already handled (delivered again each time the hub
    subscribes). In an offline state the retained status was `offline`, so it is a new one."""
    if rec is None or rec.state in SHOWN_OFFLINE:
        return False
    return (rec.boot_id, rec.last_seq) == (birth.boot_id, birth.last_seq)


def caught_up(state: DeviceState, target: int | None, cursor_seq: int) -> bool:
    """A device in `reconciling` that spoke since (target: the head it reported) is caught up."""
    return state is DeviceState.RECONCILING and target is not None and cursor_seq >= target


def silent(state: DeviceState, seen_ms: EpochMs, now: EpochMs, timeout_ms: int) -> bool:
    """A device expected to speak that has not been heard for longer than the timeout."""
    return state in WATCHED_FOR_SILENCE and now - seen_ms > timeout_ms


def stalled(head: int, cursor_seq: int, advanced_ms: EpochMs, now: EpochMs,
            timeout_ms: int) -> bool:
    """A device's journal (head from telemetry) beyond the hub's cursor, which has not moved for
    longer than the timeout."""
    return head > cursor_seq and now - advanced_ms > timeout_ms


class RefusalLog:
    """When each refusal (device, alarm, detail) was last reported; bounded: past
    MAX_REFUSALS_TRACKED keys it starts over (a refusal is then reported once more)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str | None, str], EpochMs] = {}

    def __len__(self) -> int:
        return len(self._last)

    def due(self, key: tuple[str, str | None, str], now: EpochMs) -> bool:
        """Whether to report this refusal now (and remember that it was)."""
        if now - self._last.get(key, -CLAIM_REPEAT_MS) < CLAIM_REPEAT_MS:
            return False
        if len(self._last) >= MAX_REFUSALS_TRACKED:
            self._last.clear()
        self._last[key] = now
        return True
