"""What the hostile-claims defences cost: journal batch signing (agent) and checking (hub), and the
memory a flood of out-of-order batches can make the hub hold.

    .venv/bin/python -m bench.hostile

Targets: the hub's signature check must stay under 10% of the ingest budget (100,000 entries/s,
bench/sync.py) with 500-entry batches, i.e. under 500 us a batch; the agent's signing must cost
under 1 ms a batch; 105 MiB of out-of-order batches (issue 9: 365 MB held) must leave the hub
holding at most the per-device cap (8 MiB counted).
"""
from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agent.journal import SqliteJournal
from agent.journal_signing import JournalSigner
from bench._common import figure, rss_mb
from contracts.chain import EntryKind, Entry, make_entry
from contracts.journal_wire import decode_journal
from contracts.wire import JournalBatch
from hub.claims import batch_claim
from hub.ingest import MAX_PENDING_BYTES, Cursor, DeviceIngest, PendingBudget

BATCH = 500
ROUNDS = 400
T0 = 1_795_500_000_000


def _entries(first: int, n: int, prev: bytes) -> list[Entry]:
    out = []
    for seq in range(first, first + n):
        e = make_entry(prev, seq, T0 + seq * 10, EntryKind.INPUT,
                       {"values": {"level": [1.0 + seq / 1e6, "good", None]}, "pad": "x" * 100})
        out.append(e)
        prev = e.hash
    return out


def _batch(entries: list[Entry]) -> JournalBatch:
    return JournalBatch(device="d1", from_seq=entries[0].seq, to_seq=entries[-1].seq,
                        prev_hash=entries[0].prev_hash,
                        entries=tuple(e.to_mapping() for e in entries))


def signatures() -> None:
    key = Ed25519PrivateKey.generate()
    with tempfile.TemporaryDirectory() as tmp, SqliteJournal(Path(tmp) / "j.db") as journal:
        journal.append_many([(EntryKind.INPUT, {"n": s}, T0 + s * 10) for s in range(1, BATCH + 1)])
        batch = _batch(journal.read(1, BATCH))
        signer = JournalSigner(key, "d1")
        start = time.perf_counter()
        for _ in range(ROUNDS):
            signed = signer.sign(journal, batch)
        sign_us = (time.perf_counter() - start) / ROUNDS * 1e6
    start = time.perf_counter()
    for _ in range(ROUNDS):
        batch_claim("d1", signed, key.public_key(), require_signed=False)
    check_us = (time.perf_counter() - start) / ROUNDS * 1e6
    figure("agent: sign a 500-entry batch (+ seal check)", f"{sign_us:.0f} us", "< 1000 us",
           sign_us < 1000)
    figure("hub: check a 500-entry batch's claims+sig", f"{check_us:.0f} us", "< 500 us",
           check_us < 500)


def out_of_order_flood() -> None:
    logging.getLogger("fieldpact.hub.ingest").setLevel(logging.ERROR)
    ingest = DeviceIngest(Cursor(), budget=PendingBudget())
    before, wire, seq, prev = rss_mb()[0], 0, 1001, b"\x01" * 32  # 1..1000 never arrive
    while wire < 105 * 1024 * 1024:
        entries = _entries(seq, BATCH, prev)
        data = _batch(entries).to_bytes()
        wire, seq, prev = wire + len(data), seq + BATCH, entries[-1].hash
        ingest.add(decode_journal(data).rows, nbytes=len(data))
    figure("out-of-order batches sent", f"{wire / 2**20:.0f} MiB")
    figure("held by the hub (counted wire bytes)", f"{ingest.pending_bytes / 2**20:.1f} MiB",
           f"<= {MAX_PENDING_BYTES / 2**20:.0f} MiB", ingest.pending_bytes <= MAX_PENDING_BYTES)
    figure("peak RSS growth while flooded", f"{rss_mb()[0] - before:.0f} MB (issue 9: 365 MB)")


def main() -> None:
    print("hostile-claims: journal signatures and out-of-order byte caps")
    signatures()
    out_of_order_flood()


if __name__ == "__main__":
    main()
