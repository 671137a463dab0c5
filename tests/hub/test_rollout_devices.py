"""The rollout tests' fake devices end when `online()` ends, even when Python 3.11's
`asyncio.wait_for` lost their cancellation inside a publish (CPython gh-86296): before they
honoured it, the device went on publishing and the teardown hung until pytest-timeout."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import aiomqtt
import pytest

from tests.conftest import BrokerEndpoint
from tests.hub.rollout_devices import STOP_S, FakeAgent, online
from tests.waiting import eventually


async def test_online_ends_a_device_whose_publish_lost_the_cancellation(
        amqtt_broker: BrokerEndpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    real = aiomqtt.Client.publish
    hold = asyncio.Event()  # from now on a publish waits, then swallows its cancellation
    inside = asyncio.Event()  # a device is in such a publish

    async def losing(self: aiomqtt.Client, *args: Any, **kwargs: Any) -> None:
        if not hold.is_set():
            await real(self, *args, **kwargs)
            return
        inside.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:  # as 3.11's wait_for does when the PUBACK came in the
            return                      # same loop iteration as the cancellation

    monkeypatch.setattr(aiomqtt.Client, "publish", losing)
    device = FakeAgent(device="d1", password=amqtt_broker.users["d1"].password)
    async with asyncio.timeout(STOP_S + 10):
        async with online([device], amqtt_broker.port):
            hold.set()
            await eventually(inside.is_set, 5, "the device's telemetry publish to be held")
            left = time.monotonic()
        assert time.monotonic() - left < 2  # its loop saw the cancellation request and ended
