"""What leaves the hub's MQTT side: publishes from any event loop, and acks held until commit.

Rules:
- Durable before acked (invariant 4): an ack for journal entries is held until the store batch
  holding them commits (`HeldAcks.hold` → `committed` → `take`), and dropped if it rolls back
  (the agent resends from its last ack). Only the newest seq per device is kept: an ack is a
  cursor, not a message per batch.
- Nothing else leaves the hub before what it depends on is committed: MqttPublisher runs its
  `before_publish` hook (the sync side's commit) on the link's loop first.
- A publish from another loop (the API's thread) is handed to the link's loop and bounded in time.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable

from contracts.inputs import Command
from contracts.topics import Channel, topic
from contracts.wire import Ack, CommandMessage
from transport.mqtt import LinkDown, MqttLink

Device = tuple[str, str]
"""(site, device): where an ack is published."""


class HeldAcks:
    """Acks waiting for their batch to commit, then waiting to be published."""

    def __init__(self) -> None:
        self._held: dict[Device, int] = {}
        self._ready: dict[Device, int] = {}

    def hold(self, site: str, device: str, seq: int) -> None:
        self._held[(site, device)] = seq

    def devices(self) -> set[str]:
        """Devices with an ack held in the open batch."""
        return {device for _, device in self._held}

    def committed(self) -> None:
        """The open batch committed: its acks may now be published."""
        self._ready.update(self._held)
        self._held.clear()

    def rolled_back(self) -> None:
        """The open batch was undone: nothing it held is acked."""
        self._held.clear()

    def take(self) -> dict[Device, int]:
        """The committed acks not yet published (each is handed out once)."""
        ready, self._ready = self._ready, {}
        return ready


def ack_for(seq: int) -> Ack | None:
    """The ack for a device's cursor; none before its first entry (seq 0 acks nothing)."""
    return Ack(seq=seq) if seq > 0 else None


def ack_topic(site: str, device: str) -> str:
    return topic(site, device, Channel.ACK)


CROSS_THREAD_TIMEOUT_S = 10.0
"""Bound on a publish handed to the MQTT side's loop from another one (the API's): the link's own
confirmation wait (5 s) plus time for a busy loop to pick the call up."""


class MqttPublisher:
    """hub.publisher.Publisher over the hub's MqttLink, usable from any event loop: on the link's
    own loop it publishes directly; from another loop (the API's thread) it hands the publish to
    the link's loop and waits at most CROSS_THREAD_TIMEOUT_S. Raises LinkDown when the MQTT side
    is not running, does not answer in time, or the broker does not confirm. `before_publish`
    (the sync side's commit) runs on the link's loop first, so nothing leaves the hub before what
    it depends on is committed."""

    def __init__(self, link: MqttLink | None = None, *,
                 loop: asyncio.AbstractEventLoop | None = None,
                 before_publish: Callable[[], None] | None = None) -> None:
        self._target = (link, loop)  # one attribute: replaced whole, read whole, from any thread
        self._why, self.before_publish = "not running", before_publish

    @property
    def link(self) -> MqttLink | None:
        return self._target[0]

    def attach(self, link: MqttLink | None, loop: asyncio.AbstractEventLoop | None = None,
               why: str = "not running") -> None:
        """Point at the MQTT side's link and loop; with None, every publish raises LinkDown
        saying `why`."""
        self._target, self._why = (link, loop), why

    async def push_contract(self, site: str, device: str, signed: bytes) -> None:
        await self._publish(topic(site, device, Channel.CONTRACT), signed)

    async def request_commissioning(self, site: str, device: str, payload: bytes) -> None:
        await self._publish(topic(site, device, Channel.COMMISSION), payload)

    async def send_command(self, site: str, device: str, command: Command,
                           contract: str | None = None) -> None:
        """`command` for `contract` (its id) on the device (an agent runs several contracts)."""
        await self._publish(topic(site, device, Channel.CMD),
                            CommandMessage(command=command, contract=contract).to_bytes())

    async def _publish(self, name: str, payload: bytes) -> None:
        link, loop = self._target
        if link is None:
            raise LinkDown(f"the hub's MQTT side is {self._why}")
        if loop is None or loop is asyncio.get_running_loop():
            await self._here(link, name, payload)
            return
        coro = self._here(link, name, payload)
        try:
            future = asyncio.run_coroutine_threadsafe(coro, loop)
        except RuntimeError as exc:  # that loop is closed: the MQTT side stopped
            coro.close()
            raise LinkDown(f"publish {name}: the hub's MQTT side is not running") from exc
        try:
            async with asyncio.timeout(CROSS_THREAD_TIMEOUT_S):
                await asyncio.wrap_future(future)
        except TimeoutError:
            future.cancel()
            raise LinkDown(f"publish {name}: the hub's MQTT side did not answer within "
                           f"{CROSS_THREAD_TIMEOUT_S:g} s") from None

    async def _here(self, link: MqttLink, name: str, payload: bytes) -> None:
        if self.before_publish is not None:
            self.before_publish()
        await link.publish(name, payload, qos=1)
