"""What the uplink (agent/uplink.py) sends next: journal rows from a seq, built into a batch
(agent/batching.py), signed by the journal key if the agent has one, its holes journaled.

Rules (issue 8: a hole never wedges sync):
- Rows that are not entries (they do not decode) are noted with why and read past; the batch
  declares them as gaps, with the reason journaled as JOURNAL_HOLE.
- A batch that cannot be built (our own data) never crash-loops the uplink: the rows that do not
  encode alone are left out as holes too, and the rest goes.
- Each hole is journaled once per uplink, however often the batch declaring it is resent. What is
  remembered for that stays bounded (MAX_HOLES_REMEMBERED).
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from agent import batching
from agent.journal_signing import JournalSigner
from agent.journal_thread import AsyncJournal
from contracts.chain_rows import Row
from contracts.journal_events import AgentEvent, agent_event_body, item
from contracts.journal_wire import JournalRows

log = logging.getLogger("fieldpact.agent.uplink")

MAX_HOLES_REMEMBERED = 10_000
"""Holes already journaled (and unreadable rows noted) kept in memory; past this the sets are
cleared — memory stays bounded, and a hole may then be journaled once more."""


class Batches:
    """The journal's next batch for `device`, from `journal`, signed by `signer` (if any)."""

    def __init__(self, device: str, journal: AsyncJournal, signer: JournalSigner | None,
                 clock: Callable[[], int]) -> None:
        self.device, self.journal, self.signer, self._clock = device, journal, signer, clock
        self._unreadable: dict[int, str] = {}  # seq -> why its row cannot be sent
        self._holes_told: set[tuple[int, int]] = set()

    async def next(self, from_seq: int, limit: int) -> tuple[bytes, int] | None:
        """The encoded batch from `from_seq` (at most `limit` rows) and its last seq; None when
        there is nothing to send yet (a hole at the very end is declared once an entry follows
        it)."""
        entries = await self._read_from(max(from_seq, await self.journal.low_water()), limit)
        if not entries:
            return None
        return await self._encode(from_seq, entries), entries[-1].seq

    async def _read_from(self, start: int, limit: int) -> list[Row]:
        """Up to `limit` stored rows from `start`; rows that are not entries are noted and read
        past."""
        while True:
            entries, bad = await self.journal.read_rows(start, limit)
            self._unreadable.update(bad)
            if entries or not bad:
                return entries
            start = bad[-1][0] + 1

    async def _encode(self, from_seq: int, entries: list[Row]) -> bytes:
        try:
            batch = await self._signed(batching.build(self.device, from_seq, entries))
            payload = batch.to_bytes()
        except Exception as exc:  # noqa: BLE001 - our own data must never crash-loop the uplink
            log.error("journal_batch_unbuildable from_seq=%s error=%s", from_seq, exc)
            entries, bad = batching.encodable(self.device, entries)
            self._unreadable.update(bad)
            if not entries:
                raise
            batch = await self._signed(batching.build(self.device, from_seq, entries))
            payload = batch.to_bytes()
        await self._journal_holes(batch.gaps)
        return payload

    async def _signed(self, batch: JournalRows) -> JournalRows:
        """The batch signed by the agent's journal key (agent/journal_signing.py), if it has one."""
        return batch if self.signer is None else await self.signer.sign_async(self.journal, batch)

    async def _journal_holes(self, gaps: tuple[tuple[int, int], ...]) -> None:
        """Each hole is journaled once per uplink (the batch declaring it is resent freely)."""
        for first, last in gaps:
            if (first, last) in self._holes_told:
                continue
            why = self._unreadable.get(first, "rows missing from the journal")
            log.error("journal_hole from_seq=%s to_seq=%s reason=%s", first, last, why)
            await self.journal.append(*item(agent_event_body(
                AgentEvent.JOURNAL_HOLE, from_seq=first, to_seq=last, reason=why), self._clock()))
            self._holes_told.add((first, last))
        if len(self._holes_told) + len(self._unreadable) > MAX_HOLES_REMEMBERED:
            self._holes_told.clear()
            self._unreadable.clear()
