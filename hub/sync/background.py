"""What the sync side does as time passes, once a tick (TICK_S), in one store batch.

- silence: a device watched for silence, not heard for the timeout, takes SILENCE (projected);
- stalls: a live device whose journal stopped catching up takes JOURNAL_STALLED (reconciling);
- projections: a projected device's stored projection is refreshed to the sample in force now;
- operators' reconcile requests and the planner's deferred retries are carried out;
- live values are flushed to the store every FLUSH_S (one transaction for every device).
The decisions are hub/sync/decisions.py's; this module reads the clock and applies them.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import Any

from hub.alarms import AlarmKind
from hub.live import is_projection, seen_ms
from hub.states import DeviceEvent, DeviceState
from hub.store import NotFound, StoreError
from hub.sync.batches import Batches
from hub.sync.core import store_projection
from hub.sync.decisions import silent, stalled
from transport.cancel import raise_if_cancelled

log = logging.getLogger("fieldpact.hub.sync")

FLUSH_S = 2.0
"""Live values are flushed to SQLite in one transaction every 2 s: 1,000 devices at 1 Hz would
otherwise cost 1,000 fsyncs a second."""

TICK_S = 1.0


class Background(Batches):
    async def _ticker(self) -> None:
        next_flush = time.monotonic()
        while True:
            raise_if_cancelled()
            await asyncio.sleep(TICK_S)
            async with self._lock:
                self._begin()
                try:
                    self._check_presence()
                    self._refresh_projections()
                    await self._reconcile_requests()
                    await self.offline.retry_pending()
                    if time.monotonic() >= next_flush:
                        self.flush_live()
                        next_flush = time.monotonic() + FLUSH_S
                except (sqlite3.Error, StoreError) as exc:
                    self._batch_failed(exc)
            await self.commit()

    async def _reconcile_requests(self) -> None:
        """Operators' POST /api/contracts/{id}/reconcile, oldest first; each is finished once
        handled, whether or not the journal held a run to compare (then an alarm says so)."""
        for req in self.store.reconciliations.open_requests():
            try:
                record = self.store.contracts.get(req.contract)
                done = await self.offline.reconcile_contract(record, req.actor)
                if done is None:
                    self._alarm(req.device, AlarmKind.RECONCILE_EMPTY,
                                f"{req.contract}: no run of this contract in the journal yet")
            except NotFound:
                log.warning("reconcile_request_unknown contract=%s", req.contract)
            self.store.reconciliations.finish_request(req.id, self.clock())

    def _check_presence(self) -> None:
        """Silence, then for a device still live its journal's stall, from one narrow read of
        every device (no projection blobs: 1,000 devices are read once a second)."""
        now, timeout, live_state = self.clock(), self.silence_timeout_ms, DeviceState.LIVE
        for device, state, last_seen, acked, last_hash in self.store.devices.presence_rows():
            live = self.live.get(device)
            seen = seen_ms(live, last_seen)
            if silent(state, seen, now, timeout):
                self._event(device, DeviceEvent.SILENCE, f"silent for {(now - seen) // 1000} s")
            elif state is live_state:
                self._check_stall(device, live.seq if live else 0, acked, last_hash, now)

    def _check_stall(self, device: str, head: int, acked: int, last_hash: bytes | None,
                     now: int) -> None:
        """A live device whose telemetry reports journal beyond what the hub holds, while the
        hub's cursor has not moved for the silence timeout, is not shown live: a trip may sit in
        the part of the journal the hub does not have."""
        since = self._advanced_ms.setdefault(device, now)
        ing = self._ingest.get(device)  # the cursor as SyncCore._cursor has it
        cursor = ing.cursor.seq if ing is not None else acked if acked and last_hash else 0
        if stalled(head, cursor, since, now, self.silence_timeout_ms):
            self._event(device, DeviceEvent.JOURNAL_STALLED, f"journal at {cursor}, device at {head}")

    def _refresh_projections(self) -> None:
        for d in self.store.devices.find(DeviceState.PROJECTED):
            if is_projection(d.projection):
                store_projection(self.store, self.offline, d.id, dict(d.projection), self.clock())

    def flush_live(self) -> None:
        """Persist the latest live values of devices that sent telemetry since the last flush."""
        records = {d.id: d for d in self.store.devices.find()}  # one read, not one per device
        updates: dict[str, dict[str, Any]] = {}
        for device in sorted(self._dirty & records.keys()):
            if is_projection(records[device].projection):
                continue  # an outage not yet reconciled: the projection is evidence, keep it
            live = self.live[device]
            updates[device] = {"last_seen_ms": live.ts_ms, "projection": live.shown()}
        self.store.devices.update_many(updates)
        self._dirty.clear()
