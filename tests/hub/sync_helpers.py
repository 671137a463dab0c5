"""What the hub's MQTT-side tests share: configs, a running hub, a device-side client, chained
(and forged) journals, polls of the store."""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiomqtt

from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.topics import Channel, topic
from contracts.wire import Ack, Birth, JournalBatch
from hub.app import HubRuntime
from hub.auth import AuthConfig
from hub.acl.passwords import hash_password
from hub.config import BrokerConfig, BrokerMode, DeviceCredential, HubConfig
from hub.states import ContractStatus
from hub.store import HubStore, NotFound
from tests.waiting import eventually

SITE = "s1"
PASSWORDS = {"d1": "d1-secret", "d2": "d2-secret"}


def hub_config(tmp_path: Path, *, listen_port: int = 0, external: str | None = None,
               hub_user: tuple[str, str] | None = None, silence_s: float = 30.0) -> HubConfig:
    broker = (BrokerConfig(mode=BrokerMode.EXTERNAL, url=external, username=hub_user[0],
                           password=hub_user[1]) if external and hub_user
              else BrokerConfig(listen_port=listen_port))
    return HubConfig(db_path=tmp_path / "hub.db", key_path=tmp_path / "keys" / "hub.key",
                     broker=broker, auth=AuthConfig(tokens=()),
                     devices=tuple(DeviceCredential(id=d, site=SITE, password_hash=hash_password(p))
                                   for d, p in PASSWORDS.items()),
                     silence_timeout_ms=int(silence_s * 1000))


def chain(n: int, *, start_ms: int | None = None) -> list[Entry]:
    """A valid journal of n entries, as an agent would write them."""
    ts = start_ms or time.time_ns() // 1_000_000
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        e = make_entry(prev, seq, ts + seq * 100, EntryKind.INPUT,
                       {"values": {"level": [1.0 + seq / 1000, "good", None]}})
        out.append(e)
        prev = e.hash
    return out


def batch(device: str, entries: Sequence[Entry], gaps: tuple[tuple[int, int], ...] = ()) -> bytes:
    """`entries` as one journal batch; `gaps`: seq ranges inside it the journal no longer holds
    (declared, the entries left out)."""
    return JournalBatch(device=device, from_seq=entries[0].seq, to_seq=entries[-1].seq,
                        prev_hash=entries[0].prev_hash, gaps=gaps,
                        entries=tuple(e.to_mapping() for e in entries)).to_bytes()


def birth(device: str, last_seq: int) -> bytes:
    return Birth(device=device, site=SITE, boot_id="b" * 32, contract=None, version=None,
                 last_seq=last_seq).to_bytes()


@contextlib.asynccontextmanager
async def device_client(host: str, port: int, device: str) -> AsyncIterator[aiomqtt.Client]:
    async with aiomqtt.Client(host, port, identifier=f"fp-agent-{device}/test", username=device,
                              password=PASSWORDS[device]) as client:
        await client.subscribe(topic(SITE, device, Channel.ACK), qos=1)
        yield client
        await client.unsubscribe(topic(SITE, device, Channel.ACK))  # no acks in flight at exit


async def wait_ack(client: aiomqtt.Client, seq: int, timeout_s: float = 10) -> int:
    """Read acks until one reaches `seq`; returns the highest seen."""
    best = 0
    async with asyncio.timeout(timeout_s):
        async for message in client.messages:
            best = max(best, Ack.from_bytes(bytes(message.payload)).seq)  # type: ignore[arg-type]
            if best >= seq:
                return best
    return best


async def publish(client: aiomqtt.Client, device: str, channel: Channel, payload: bytes,
                  **kw: Any) -> None:
    await client.publish(topic(SITE, device, channel), payload, qos=1, **kw)


def acked(hub: Any, device: str) -> int:
    """The hub's acked seq for `device`; 0 until the hub has registered it (its birth may still
    be in flight when the agent already counts itself online)."""
    try:
        return int(hub.store.devices.get(device).acked_seq)
    except NotFound:
        return 0


@contextlib.asynccontextmanager
async def running_hub(tmp_path: Path, **config: Any) -> AsyncIterator[HubRuntime]:
    """A HubRuntime on `hub_config(tmp_path, **config)` with its embedded broker, running for the
    block; closed after it."""
    hub = HubRuntime(hub_config(tmp_path, **config))
    try:
        async with hub.running():
            assert hub.broker is not None
            yield hub
    finally:
        hub.close()


@contextlib.asynccontextmanager
async def born_device(hub: HubRuntime, device: str, last_seq: int) -> AsyncIterator[aiomqtt.Client]:
    """`device`'s MQTT client on the hub's broker, once its retained birth (`last_seq`) has
    registered it with the hub."""
    assert hub.broker is not None
    async with device_client("127.0.0.1", hub.broker.port, device) as client:
        await publish(client, device, Channel.STATUS, birth(device, last_seq), retain=True)
        await eventually(lambda: _registered(hub, device), 5, f"{device} registered on its birth")
        yield client


def _registered(hub: HubRuntime, device: str) -> bool:
    try:
        hub.store.devices.get(device)
    except NotFound:
        return False
    return True


def tampered(entries: Sequence[Entry], index: int) -> list[Entry]:
    """`entries` with entry `index`'s body changed and its hashes kept: the chain breaks there."""
    out = list(entries)
    out[index] = dataclasses.replace(out[index], body={"values": {"level": [9.9, "good", None]}})
    return out


def contract_status(store: HubStore, cid: str) -> ContractStatus | None:
    """Contract `cid`'s status; None until the hub has stored it. Only NotFound means "not yet":
    any other store error fails the test that polls this, instead of running it into a timeout."""
    try:
        return store.contracts.get(cid).status
    except NotFound:
        return None
