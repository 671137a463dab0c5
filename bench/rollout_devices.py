"""bench.rollout's devices: a simulator that answers every push as 1,000 agents would, in the
hub's store, as the hub's sync side records an agent's answer (the MQTT path is bench/sync.py's).

Rules: a pushed contract is answered ANSWER_MS after the simulator sees it (it looks every
POLL_S): accepted and started, then the device's journal — a CONTRACT entry accepting the pushed
content hash, a BOOT entry whose period grid the health gate counts cycles on — and from then an
INPUT entry on that grid once a second (a level reading, as a tank at 1 Hz journals), stored in one
batch a second. Entries carry a gapless seq per device; their hashes are placeholders (the store
is written directly, not through ingest).
"""
from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from bench._common import now_ms
from contracts.codec import canonical_dumps
from contracts.engine_state import EngineState, Mode
from contracts.journal_bodies import BootBody, ContractBody, InputBody
from contracts.journal_events import encode
from contracts.journal_occurrences import ContractChange
from hub.publisher import MemoryPublisher
from hub.states import ContractEvent, ContractStatus
from hub.store import HubStore, JournalRow

ANSWER_MS = 200
"""From a push to the device's answer in the store: a round trip and an accept on a LAN."""
POLL_S = 0.05
"""The device simulator looks for new pushes this often."""


class Devices:
    """Answers pushes as 1,000 agents would, in the store, as the sync side records them."""

    def __init__(self, store: HubStore, publisher: MemoryPublisher) -> None:
        self.store, self.publisher = store, publisher
        self.seq: dict[str, int] = defaultdict(int)
        self.boots: dict[str, tuple[str, int]] = {}  # device -> (contract, t0_ms) it runs
        self.answered = 0
        self._seen = 0
        self._due: list[tuple[float, str]] = []
        self._journaled = time.monotonic()

    async def run(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            now = time.monotonic()
            if now >= self._journaled + 1:
                self._journaled = now
                self._readings()
            if len(self.publisher.contracts) > self._seen:
                self._seen = len(self.publisher.contracts)
                pushed = self.store.contracts.find(status=ContractStatus.PUSHED)
                known = {cid for _, cid in self._due}
                self._due += [(now + ANSWER_MS / 1000, r.id) for r in pushed if r.id not in known]
            ready = [cid for t, cid in self._due if t <= now]
            self._due = [(t, cid) for t, cid in self._due if t > now]
            if ready:
                self._answer(ready)

    def _answer(self, ids: list[str]) -> None:
        t = now_ms()
        rows = []
        for cid in ids:
            rec = self.store.contracts.get(cid)
            if rec.status is not ContractStatus.PUSHED:
                continue
            for event in (ContractEvent.ACCEPT, ContractEvent.START):
                self.store.contracts.apply_event(cid, event, t)
            self.store.devices.update(rec.device, contract=rec.contract, version=rec.version,
                                      last_seen_ms=t)
            rows += self._journal(rec.device, rec.contract, rec.version, rec.content_hash, t)
            self.boots[rec.device] = (rec.contract, t)
            self.answered += 1
        self.store.journal.insert(rows)

    def _readings(self) -> None:
        """Each running device's reading of this second, stamped on its scan grid."""
        t = now_ms()
        rows = []
        for device, (contract, t0) in self.boots.items():
            body = InputBody(values={"level": (2.0, "good", None)}, contract=contract)
            rows.append(self._row(device, t0 + (t - t0) // 100 * 100, body))
        self.store.journal.insert(rows)

    def _row(self, device: str, ts_ms: int, body: Any) -> JournalRow:
        self.seq[device] += 1
        return JournalRow(device=device, seq=self.seq[device], ts_ms=ts_ms, kind=body.KIND.value,
                          body=canonical_dumps(encode(body)), prev_hash=b"\x00" * 32,
                          hash=self.seq[device].to_bytes(32, "big"))

    def _journal(self, device: str, contract: str, version: int, digest: str,
                 t: int) -> list[JournalRow]:
        bodies = (ContractBody(event=ContractChange.ACCEPTED, contract=contract, version=version,
                               hash=digest),
                  BootBody(boot_id=f"{device:0>32}"[-32:], t0_ms=t, period_ms=100,
                           contract=contract, version=version, hash=digest,
                           state=EngineState(mode=Mode.RUNNING), resumed=False))
        return [self._row(device, t, body) for body in bodies]

