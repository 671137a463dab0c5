"""bench.sync's journal: a tank-fill agent's hash-chained entries, their JournalBatch messages,
and the device process that publishes them as an agent does.

Rules: entries are chained from GENESIS, seq 1 up; batches hold BATCH entries in the wire form
--wire names (2: rows, what agents send; 1: entry maps, what older agents send); the sender runs in
ANOTHER process, publishes at QoS 1, and resends from the hub's ack after ACK_TIMEOUT_S without
progress (MQTT QoS is not trusted for delivery: DESIGN invariant 5).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiomqtt

from agent.config import DEFAULT_ACK_TIMEOUT_S as ACK_TIMEOUT_S
from bench.sync_hub import BATCH, DEVICE, SITE, host_port, where
from contracts.chain import GENESIS, Entry, EntryKind, make_entry
from contracts.chain_rows import row_of
from contracts.journal_wire import ROWS_VERSION, JournalRows
from contracts.topics import Channel, topic
from contracts.wire import Ack, JournalBatch
from hub.app import HubRuntime
from transport.mqtt import SOCKET_OPTIONS
from tests.waiting import eventually

def _body(i: int, level: float) -> tuple[EntryKind, dict[str, Any]]:
    """A tank-fill agent's mix: level changes, a keyframe a minute, pump writes now and then."""
    if i % 60 == 0:
        return EntryKind.KEYFRAME, {
            "values": {"level": [level, "good", None], "high_level": [False, "good", None]},
            "outputs": {"pump_speed": 1200, "valve_open": True}, "mode": "running", "step": "fill"}
    if i % 97 == 0:
        return EntryKind.OUTPUT, {"writes": {"pump_speed": 1200}}
    return EntryKind.INPUT, {"values": {"level": [level, "good", None]}}


def make_journal(n: int, t0_ms: int, period_ms: int) -> list[Entry]:
    """`n` chained entries from seq 1, one per `period_ms` from `t0_ms`."""
    entries, prev = [], GENESIS
    for i in range(n):
        kind, body = _body(i, round(1.0 + 3.0 * i / max(1, n), 4))
        e = make_entry(prev, i + 1, t0_ms + i * period_ms, kind, body)
        entries.append(e)
        prev = e.hash
    return entries


WIRE = [ROWS_VERSION]
"""The journal batch form the bench sends (--wire): 2, rows, what agents send; 1, entry maps,
what older agents send and the hub still takes."""


def batches(device: str, entries: list[Entry]) -> list[bytes]:
    if WIRE[0] == 1:
        return [JournalBatch(device=device, from_seq=c[0].seq, to_seq=c[-1].seq,
                             prev_hash=c[0].prev_hash,
                             entries=tuple(e.to_mapping() for e in c)).to_bytes()
                for k in range(0, len(entries), BATCH) for c in [entries[k:k + BATCH]]]
    return [JournalRows(device=device, from_seq=c[0].seq, to_seq=c[-1].seq,
                        prev_hash=c[0].prev_hash, rows=tuple(row_of(e) for e in c)).to_bytes()
            for k in range(0, len(entries), BATCH) for c in [entries[k:k + BATCH]]]


@contextlib.asynccontextmanager
async def journal_sender(hub: HubRuntime, password: str, msgs: list[bytes], last_seq: int,
                         tmp: Path) -> AsyncIterator[Callable[[float], Awaitable[int]]]:
    """A device process that will publish `msgs` (as an agent does, from ANOTHER process: in
    the hub's, its MQTT client would compete with the hub for the interpreter lock). Yields
    `go(timeout_s)`: start sending, return once the hub's store has acked `last_seq`, with the
    number of batches the sender resent after a stalled ack."""
    assert hub.mqtt_url is not None
    path = tmp / "msgs.pickle"
    path.write_bytes(pickle.dumps(msgs))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.sync", "--journal-sender", hub.mqtt_url, "--msgs-file",
        str(path), "--last-seq", str(last_seq), env={**os.environ, "BENCH_MQTT_PASSWORD": password},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        async with asyncio.timeout(60):
            if (await proc.stdout.readline()).strip() != b"ready":
                raise RuntimeError("journal sender did not start")

        async def go(timeout_s: float) -> int:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()
            await eventually(lambda: hub.store.devices.get(DEVICE).acked_seq >= last_seq, timeout_s,
                             "the journal acked", detail=lambda: where(hub), every_s=0.002)
            async with asyncio.timeout(30):
                return int(json.loads(await proc.stdout.readline()))

        yield go
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def run_journal_sender(url: str, msgs_file: Path, last_seq: int) -> None:
    """The sender process: publish every batch, resend from the ack after ACK_TIMEOUT_S without
    progress (as the agent does), print the resends once the ack reaches `last_seq`."""
    msgs: list[bytes] = pickle.loads(msgs_file.read_bytes())
    host, port = host_port(url)
    jtopic, resends, acked = topic(SITE, DEVICE, Channel.JOURNAL), 0, 0
    async with aiomqtt.Client(host, port, identifier=f"fp-agent-{DEVICE}/bench-sender", username=DEVICE,
                              password=os.environ["BENCH_MQTT_PASSWORD"],
                              max_queued_outgoing_messages=0,
                              socket_options=SOCKET_OPTIONS) as client:
        atopic = topic(SITE, DEVICE, Channel.ACK)
        await client.subscribe(atopic, qos=1)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        for m in msgs:
            await client.publish(jtopic, m, qos=1)
        while acked < last_seq:
            try:
                async with asyncio.timeout(ACK_TIMEOUT_S):
                    message = await anext(aiter(client.messages))
                if str(message.topic) == atopic:  # anything else (a retained birth) is not ours
                    acked = max(acked, Ack.from_bytes(bytes(message.payload)).seq)
            except TimeoutError:  # no ack in time: resend from it
                for m in msgs[acked // BATCH:]:
                    await client.publish(jtopic, m, qos=1)
                    resends += 1
    print(json.dumps(resends), flush=True)
