"""Store batches, acks and restarts: the sync side's I/O around its handlers.

Batches (keeping up with 1,000 devices at 1 Hz): the link only queues messages (bounded inbox,
so a slow store pushes back on the broker's TCP stream); a worker takes every message waiting, up
to MAX_BATCH, handles them in one store batch and commits once. Acks are held until that commit
and then published together; anything else that leaves the hub (a contract push, a command)
commits the batch first (`commit_now`, the publisher's hook). A store error fails the whole batch:
it is rolled back, nothing in it is acked, the in-memory cursors are reloaded from the store (the
agents resend from their last ack), and it is logged and counted (`write_errors`), not swallowed.

Restarts (issue 8). At start every device the hub showed live or was catching up takes HUB_RESTART
(→ reconciling): nothing in memory survived, the values shown are stale. On every connect of its
link — after the link has re-subscribed — the hub re-publishes each known device's ack, then its
retained birth `fp/v1/_hub/status` (HubBirth, a new boot id per process; last will `offline`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3

from contracts.topics import HUB_STATUS
from contracts.wire import HubBirth
from hub.alarms import AlarmKind
from hub.states import DeviceEvent
from hub.store import StoreError
from hub.sync.core import SyncCore
from hub.sync.outbound import ack_for, ack_topic
from transport.mqtt import LinkDown

log = logging.getLogger("fieldpact.hub.sync")

MAX_BATCH = 64
"""Messages taken from the inbox per round; telemetry (no rows) makes up most rounds."""

MAX_BATCH_ENTRIES = 5_000
"""Journal entries per commit at most: ~10 agent batches, tens of ms of work, so under a backlog
acks still flow steadily (an agent resends when its ack stalls; bench/sync.py after 2 s)."""

ALARMED_ON_FAILURE = 10
"""Devices alarmed (hub_error) when a batch fails; the log line counts all of them."""


class Batches(SyncCore):
    def _begin(self) -> None:
        """Open a batch; if the store cannot (locked past its busy timeout, failing), say so and
        go on without one: each write then commits alone or fails on its own."""
        try:
            self.store.begin_batch()
        except sqlite3.Error as exc:
            self._batch_failed(exc)

    async def commit(self) -> None:
        """Commit the open batch, then publish the acks it held (durable before acked)."""
        try:
            self.commit_now()
        except StoreError:
            return  # logged and counted by _batch_failed; the agents resend from their ack
        await asyncio.gather(*(self._publish_ack(site, device, seq)
                               for (site, device), seq in self._acks.take().items()))

    def commit_now(self) -> None:
        """Commit the open batch (the publisher's hook: before a push or command goes out).
        Raises StoreError after handling the failure (_batch_failed)."""
        try:
            self.store.commit_batch()
        except StoreError as exc:
            self._batch_failed(exc)
            raise
        self._acks.committed()  # commit() publishes them
        self._uncommitted = 0
        self._touched.clear()

    def _batch_failed(self, exc: Exception) -> None:
        """A store write failed: undo the batch and forget what it held in memory."""
        self.store.rollback_batch()
        devices = sorted(self._touched | self._acks.devices())
        self._acks.rolled_back()
        self._touched.clear()
        self._uncommitted = 0
        self._ingest.clear()  # cursors reload from the store: the committed acked_seq
        self.offline.forget_folds()
        self._started.clear()
        self.write_errors += 1
        self.last_write_error = f"{type(exc).__name__}: {exc}"[:300]
        log.error("hub_store_write_failed error=%r unacked_devices=%d", self.last_write_error,
                  len(devices))
        for device in [d for d in devices if self._known(d)][:ALARMED_ON_FAILURE]:
            try:
                self._alarm(device, AlarmKind.HUB_ERROR, f"store write failed, batch not acked: "
                                                         f"{self.last_write_error}"[:300])
            except (sqlite3.Error, StoreError):
                log.error("hub_alarm_failed device=%s kind=hub_error", device)

    async def _ack(self, site: str, device: str, seq: int) -> None:
        if seq <= 0:
            return
        if self.store.in_batch:  # held until the batch commits (durable before acked)
            self._acks.hold(site, device, seq)
            return
        await self._publish_ack(site, device, seq)

    async def _publish_ack(self, site: str, device: str, seq: int) -> None:
        ack = ack_for(seq)
        if ack is None:
            return
        try:
            await self.link.publish(ack_topic(site, device), ack.to_bytes())
        except LinkDown:
            pass  # the agent resends from its last ack; the next batch acks again

    # -- restarts -------------------------------------------------------------------------
    def announce_restart(self) -> None:
        """This process is a new hub: every device shown live or being caught up takes
        HUB_RESTART (interface 7). Called by `run()` before the link starts."""
        for d in self.store.devices.find():
            self._event(d.id, DeviceEvent.HUB_RESTART, f"hub boot {self.boot_id[:8]}")

    async def _on_link_up(self) -> None:
        """Subscribed again (MqttLink subscribes before calling this): acks first, so an agent
        rewinds to the hub's real cursor when the birth arrives, then the birth."""
        with contextlib.suppress(StoreError):  # re-acked from the store: commit what it holds
            self.commit_now()
        for d in self.store.devices.find():  # LinkDown ends this session; the next connect redoes it
            ack = ack_for(d.acked_seq)
            if ack is not None:
                await self.link.publish(ack_topic(d.site, d.id), ack.to_bytes())
        birth = HubBirth(boot=self.boot_id, ts_ms=self.clock())
        await self.link.publish(HUB_STATUS, birth.to_bytes(), qos=1, retain=True)
        log.info("hub_birth boot=%s devices_acked=%d", self.boot_id, len(self.store.devices.find()))
