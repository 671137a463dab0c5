"""HubSync: the thin dispatcher of the hub's MQTT side.

Per message, four steps, each a pure function tested alone but for the store it consults:
  message → meaning      hub/sync/messages.py (topic and payload decoded; unreadable = the peer's)
  meaning → transition   hub/sync/decisions.py, outcomes.py (what it changes), hub/states.py
                         (the tables; whose fault an illegal event is)
  transition → ack       hub/sync/outbound.py (acks held until the batch commits)
The handlers that apply them live beside: presence.py (status, telemetry, contract results),
journal.py (journal batches), background.py (silence, stalls, projections, flushes), batches.py
(store batches, acks, restarts), core.py (shared state, state machine events, claims, alarms).

What never leaves the dispatcher: a RemoteProtocolError (a device's message out of order,
unreadable, or naming a record the hub does not hold) is logged and counted
(`remote_errors`; fieldpact_hub_remote_protocol_errors) and the hub carries on. A store error
fails the batch (batches.py). Anything else is a bug of ours: logged with its traceback and
alarmed (hub_error) for the device whose message hit it — one device's message never stops the
hub's MQTT side. A LocalProtocolError from the hub's own timers (background.py) raises.
"""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable

from contracts.errors import EncodingError
from contracts.types import EpochMs
from contracts.topics import HUB_PROBE, HUB_STATUS, TopicParts, hub_filters
from contracts.wire import Birth, ContractResult, Telemetry
from contracts.commission_wire import CommissionReply
from hub.alarms import AlarmKind
from hub.commissioning import take_reply
from hub.errors import PeerFault, RemoteProtocolError
from hub.offline import OfflineManager
from hub.registry import DeviceRegistry
from hub.store import Duplicate, HubStore, NotFound, StoreError
from hub.sync.background import Background
from hub.sync.batches import MAX_BATCH, MAX_BATCH_ENTRIES
from hub.sync.core import wall_ms
from hub.sync.journal import JournalSync
from hub.sync.messages import OFFLINE_PAYLOAD, Journal, Meaning, Offline, meaning, route
from hub.sync.presence import Presence
from transport.cancel import raise_if_cancelled
from transport.mqtt import MqttLink, Probe, Will

log = logging.getLogger("fieldpact.hub.sync")

PROBE_S = 2.0
"""The hub proves its subscriptions every 2 s, so a broker that silently forgot them is found
within 6 s (MqttLink PROBE_MISSES): inside the 10 s convergence target, for 0.5 msg/s."""


class HubSync(Presence, JournalSync, Background):
    """The MQTT side: one link, one inbox, one worker handling messages in store batches, one
    ticker. Run in its own thread with its own event loop and store connection (hub/app.py)."""

    def __init__(self, store: HubStore, offline: OfflineManager, link: MqttLink, *,
                 silence_timeout_ms: int, clock: Callable[[], EpochMs] = wall_ms,
                 registry: DeviceRegistry | None = None) -> None:
        super().__init__(store, offline, link, silence_timeout_ms=silence_timeout_ms, clock=clock,
                         registry=registry)
        self.link.will = Will(topic=HUB_STATUS, payload=OFFLINE_PAYLOAD, qos=1, retain=True)
        self.link.on_connect = self._on_link_up
        self.link.probe = Probe(topic=HUB_PROBE, every_s=PROBE_S)

    @staticmethod
    def subscriptions() -> list[tuple[str, int]]:
        return [(f, 1) for f in hub_filters()]

    async def run(self) -> None:
        self.announce_restart()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.link.run(self._enqueue), name="hub-mqtt")
            tg.create_task(self._worker(), name="hub-sync-worker")
            tg.create_task(self._ticker(), name="hub-sync-ticker")

    async def _enqueue(self, topic_name: str, payload: bytes) -> None:
        await self._inbox.put((topic_name, payload))

    async def _worker(self) -> None:
        """Every message waiting (up to MAX_BATCH) in one store batch, then commit and ack."""
        while True:
            raise_if_cancelled()
            batch = [await self._inbox.get()]
            while len(batch) < MAX_BATCH and not self._inbox.empty():
                batch.append(self._inbox.get_nowait())
            for topic_name, payload in batch:
                self._begin()
                await self.on_message(topic_name, payload)
                if self._uncommitted >= MAX_BATCH_ENTRIES:
                    await self.commit()
            await self.commit()

    async def on_message(self, topic_name: str, payload: bytes) -> None:
        """Handle one message; never raises but for cancellation (see the module's rules)."""
        parts = route(topic_name)
        if parts is None:
            return
        if self.store.in_batch:
            self._touched.add(parts.device)
        try:
            async with self._lock:
                await self._handle(parts, meaning(parts.channel, payload))
        except RemoteProtocolError as exc:
            self._peer_fault(RemoteProtocolError(exc.fault, parts.device, exc.detail))
        except (NotFound, Duplicate) as exc:
            self._peer_fault(RemoteProtocolError(PeerFault.UNKNOWN_RECORD, parts.device,
                                                 f"{topic_name}: {exc}"))
        except (sqlite3.Error, StoreError) as exc:
            self._batch_failed(exc)
        except (EncodingError, ValueError) as exc:
            self._peer_fault(RemoteProtocolError(PeerFault.UNREADABLE, parts.device,
                                                 f"{topic_name}: {exc}"))
        except Exception as exc:  # one device's message must never stop the hub's MQTT side
            log.exception("hub_handler_failed topic=%s", topic_name)
            if self._known(parts.device):
                self._alarm(parts.device, AlarmKind.HUB_ERROR, f"{type(exc).__name__}: {exc}"[:300])
        # A burst of queued messages is otherwise handled without ever suspending (queue gets
        # return at once), starving the loop's other tasks.
        await asyncio.sleep(0)
        raise_if_cancelled()

    async def _handle(self, parts: TopicParts, m: Meaning) -> None:
        if isinstance(m, Birth | Offline):
            await self._on_status(parts, m)
        elif isinstance(m, Journal):
            await self._on_journal(parts, m)
        elif isinstance(m, Telemetry):
            await self._on_telemetry(parts, m)
        elif isinstance(m, ContractResult):
            await self._on_result(parts, m)
        elif isinstance(m, CommissionReply) and self._admitted(parts.site, parts.device,
                                                               parts.channel.value):
            take_reply(self.store, parts.device, m, self.clock())
