"""bench.sync phase 1, journal ingest: a pre-built journal through the broker into the hub's
store, against SQLite's own batched insert rate, then the in-process path alone.

Rules: timed from the first publish to acked_seq == E in the store; the floor (one executemany,
one transaction, the hub's pragmas) is measured in the same run, interleaved, so both see the same
load; the hub's MQTT thread CPU is read from /proc meanwhile.
"""
from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path

from bench._common import figure
from bench.sync_hub import (
    BATCH, DEVICE, POLL_S, SITE, birth, device_client, hub_config, known, now_ms, thread_cpu_s,
)
from bench.sync_journal import WIRE, batches, journal_sender, make_journal
from contracts.chain import Entry, encode_body
from contracts.journal_wire import decode_journal
from hub.app import HubRuntime
from hub.ingest import Cursor, DeviceIngest
from hub.store import HubStore
from hub.sync import MAX_BATCH_ENTRIES
from tests.waiting import eventually

INGEST_TARGET_PER_S = 100_000.0
"""A site of 100 agents resending a day's backlog each must catch up in minutes, not hours."""
INGEST_FLOOR_SHARE = 0.20
"""...and ingest must not waste the disk: at least 20 % of SQLite's own batched insert rate,
measured in the same run (the same host, the same load)."""


async def bench_ingest(n: int, repeats: int) -> None:
    print(f"1. journal ingest through the broker: {n:,} entries in batches of {BATCH} (wire "
          f"v{WIRE[0]}), device {DEVICE} over aiomqtt, QoS 1; {repeats} run(s)", flush=True)
    started = time.perf_counter()
    entries = make_journal(n, now_ms() - n * 100, 100)
    msgs = batches(DEVICE, entries)
    figure("pre-built (make_entry + encode, not timed)", f"{time.perf_counter() - started:.1f} s, "
           f"{sum(map(len, msgs)) / n:.0f} B/entry on the wire")
    rates, floors, cpus = [], [], []
    for _ in range(repeats):  # interleaved, so both see the same load
        rate, cpu_s = await _ingest_once(msgs, n)
        rates.append(rate)
        cpus.append(cpu_s / n * 1e6)
        floors.append(sqlite_floor(entries))
    med, floor = sorted(rates)[len(rates) // 2], sorted(floors)[len(floors) // 2]
    figure("SQLite batched insert floor, median", f"{floor:,.0f} rows/s "
           f"(runs: {', '.join(f'{r:,.0f}' for r in floors)})")
    figure("through broker into SQLite, median", f"{med:,.0f} entries/s "
           f"(runs: {', '.join(f'{r:,.0f}' for r in rates)})",
           f">= {INGEST_TARGET_PER_S:,.0f}/s", med >= INGEST_TARGET_PER_S)
    figure("  as a share of the floor", f"{100 * med / floor:.1f} %",
           f">= {100 * INGEST_FLOOR_SHARE:.0f} %", med >= INGEST_FLOOR_SHARE * floor)
    figure("  hub MQTT thread CPU, median", f"{sorted(cpus)[len(cpus) // 2]:.1f} us/entry "
           f"(runs: {', '.join(f'{c:.1f}' for c in cpus)}; a loaded host stretches the wall "
           "time, much less this)")
    _ingest_in_process(msgs, n)


def sqlite_floor(entries: list[Entry]) -> float:
    """Rows/s of one executemany of ready tuples into the hub's journal table, one transaction,
    the hub's pragmas (WAL, synchronous=FULL): what SQLite itself costs, with no decoding."""
    rows = [(DEVICE, e.seq, e.ts_ms, e.kind.value, encode_body(e.body), e.prev_hash, e.hash)
            for e in entries]
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp, \
            HubStore.open(Path(tmp) / "hub.db") as store:
        start = time.perf_counter()
        store.begin_batch()
        store.db.conn.executemany("INSERT OR IGNORE INTO journal VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        store.commit_batch()
        return len(rows) / (time.perf_counter() - start)


async def _ingest_once(msgs: list[bytes], n: int) -> tuple[float, float]:
    """(entries/s, CPU seconds the hub's MQTT thread spent meanwhile)."""
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        hub = HubRuntime(hub_config(Path(tmp), password))
        try:
            async with hub.running(), device_client(hub, password) as client:
                await birth(client, 0)
                await eventually(lambda: known(hub), 10, "the birth", every_s=POLL_S)
                async with journal_sender(hub, password, msgs, n, Path(tmp)) as go:
                    start, cpu = time.perf_counter(), thread_cpu_s("hub-mqtt")
                    resends = await go(120)
                    elapsed, cpu = time.perf_counter() - start, thread_cpu_s("hub-mqtt") - cpu
        finally:
            hub.close()
    if resends:
        figure("  batches resent after a stalled ack", str(resends))
    return n / elapsed, cpu


def _ingest_in_process(msgs: list[bytes], n: int) -> None:
    """Decode (either wire form, as rows) → DeviceIngest.add (chain verification over the body
    bytes) → insert, committed every MAX_BATCH_ENTRIES as the hub's sync side does."""
    t = dict.fromkeys(("decode", "ingest", "insert+commit"), 0.0)
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp, \
            HubStore.open(Path(tmp) / "hub.db") as store:
        store.devices.ensure(DEVICE, SITE, now_ms(), {})
        ing, uncommitted = DeviceIngest(Cursor()), 0
        for i, m in enumerate(msgs):
            t0 = time.perf_counter()
            rows = decode_journal(m).rows
            t1 = time.perf_counter()
            result = ing.add(rows)
            t2 = time.perf_counter()
            store.begin_batch()
            store.journal.insert_rows(DEVICE, result.store)
            store.devices.update(DEVICE, acked_seq=result.cursor.seq, last_hash=result.cursor.hash)
            uncommitted += len(result.store)
            if uncommitted >= MAX_BATCH_ENTRIES or i == len(msgs) - 1:
                store.commit_batch()
                uncommitted = 0
            t3 = time.perf_counter()
            for k, dt in zip(t, (t1 - t0, t2 - t1, t3 - t2)):
                t[k] += dt
    total = sum(t.values())
    figure("in-process path alone", f"{n / total:,.0f} entries/s")
    figure("  where the time goes (us/entry)",
           ", ".join(f"{k} {v / n * 1e6:.1f}" for k, v in t.items()))
