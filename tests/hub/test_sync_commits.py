"""When the sync side's worker commits: rounds without acks share one commit (one fsync), a round
that holds an ack commits at its end. A real store; the worker fed through its own inbox."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from contracts.topics import Channel, topic
from contracts.wire import Telemetry
from hub import sync as sync_package
from hub.app import HubRuntime
from hub.store import HubStore, NotFound
from hub.sync import HubSync
from hub.sync import dispatcher
from tests.hub.sync_helpers import SITE, batch, birth, chain, hub_config
from tests.waiting import eventually
from transport.mqtt import MqttLink

ST, JN, TM = (topic(SITE, "d1", c) for c in (Channel.STATUS, Channel.JOURNAL, Channel.TELEMETRY))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubRuntime]:
    runtime = HubRuntime(hub_config(tmp_path))
    yield runtime
    runtime.close()


class Counted(HubSync):
    """HubSync counting its commits and the acks it hands to the (never connected) link."""

    commits = 0
    acks: list[int]

    def commit_now(self) -> None:
        self.commits += self.store.in_batch
        super().commit_now()

    async def _publish_ack(self, site: str, device: str, seq: int) -> None:
        self.acks.append(seq)


@pytest.fixture
async def worker(hub: HubRuntime) -> AsyncIterator[Counted]:
    dead = MqttLink("mqtt://127.0.0.1:9", client_id="never-connected")
    sync = Counted(hub.store, hub.offline, dead, silence_timeout_ms=30_000, registry=hub.registry)
    sync.acks = []
    task = asyncio.create_task(sync._worker())
    yield sync
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def telemetry(ts_ms: int) -> bytes:
    return Telemetry(ts_ms=ts_ms, values=(("level", 1.5),), mode="idle", step=None,
                     seq=0).to_bytes()


async def test_messages_without_acks_share_one_commit_and_it_comes_within_the_linger(
        hub: HubRuntime, worker: Counted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "COMMIT_LINGER_S", 0.5)
    with HubStore.open(tmp_path / "hub.db") as other:  # another connection, as the API's
        def committed_state() -> str | None:
            try:
                return other.devices.get("d1").state.value
            except NotFound:
                return None

        await worker._enqueue(ST, birth("d1", 0))
        await eventually(lambda: committed_state() is not None, 10, "the birth committed")
        commits = worker.commits
        for k in range(10):  # ten messages arriving within the linger, one after the other
            await worker._enqueue(TM, telemetry(1_790_000_000_000 + k))
            await asyncio.sleep(0.01)
        await eventually(lambda: committed_state() == "live", 10, "the telemetry's state committed")
        await eventually(lambda: worker._inbox.empty() and not worker.store.in_batch, 10,
                         "all ten handled and committed")
    assert worker.commits - commits <= 2 < 10


async def test_a_round_holding_an_ack_commits_at_its_end_whatever_the_linger(
        hub: HubRuntime, worker: Counted, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatcher, "COMMIT_LINGER_S", 3600.0)
    await worker._enqueue(ST, birth("d1", 5))
    await worker._enqueue(JN, batch("d1", chain(5)))
    await eventually(lambda: worker.acks == [5], 10, "the journal's ack published")
    assert not worker.store.in_batch and sync_package.COMMIT_LINGER_S < 1
