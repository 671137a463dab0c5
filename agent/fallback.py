"""The agent's rollout fallback: watch each contract on probation, fall back by itself (I2).

The rules are in agent/fallback_rules.py; this module carries them out:
- `WatchedJournal` is the agent's journal with watchers called after each commit, so the fallback
  sees a cause entry (and its seq) the moment it is journaled, whatever wrote it.
- `Fallback.observe` (on the event loop, after a commit) opens a window at a contract's first BOOT
  and judges every entry of that contract; a cause marks the window FALLING and wakes `run`.
- `run` (a task of the agent's TaskGroup) persists the windows and carries out each fallback:
  journal `rollout_fallback` (tagged with the tripped contract), record it in the contract store
  (the known-good becomes the latest of its id; the tripped one is refused if re-sent), then start
  the known-good contract latched in SAFE in place of the tripped one (ScanLoop.replace), between
  two cycles. Nothing here waits on the network.
- Restart-safe: the windows are a journal checkpoint (`rollout:windows`), so a restart neither
  reopens a window nor forgets a decision. `restore` runs before the scan starts: a contract that
  was falling back (or fell back and had not been replaced yet) resumes as its known-good instead,
  `rollout_fallback` journaled once; a cause journaled just before a crash, before its window was
  saved, is found again in the journal's tail.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from agent import fallback_rules as rules
from agent.fallback_rules import Status, Window
from agent.journal_thread import AsyncJournal
from agent.segment import ActiveContract, Resume
from contracts.chain import Entry, EntryKind
from contracts.codec import canonical_dumps, loads
from contracts.journal_events import (
    CONTRACT_TAG, AgentEvent, Item, agent_event_body, item, tag_items,
)
from contracts.types import EpochMs

if TYPE_CHECKING:
    from agent.contract_store import ContractStore, Restored
    from agent.scan import CycleReport, ScanLoop

log = logging.getLogger("fieldpact.agent.fallback")

WINDOWS = "rollout:windows"
"""The journal checkpoint holding every probation window, by the contract's content hash."""

TAIL_ENTRIES = 5_000
"""How far back a restart looks for a cause journaled just before a crash (its window not saved
yet): the crash followed the cause within milliseconds, far fewer entries than this."""

Watcher = Callable[[Sequence[Entry]], None]


class WatchedJournal(AsyncJournal):
    """The agent's journal; each watcher sees the entries of every append once committed. A
    watcher's failure is logged, never raised into the writer (the scan loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watchers: list[Watcher] = []

    async def append_many(self, items: Sequence[tuple[EntryKind, Any, int]]) -> list[Entry]:
        entries = await super().append_many(items)
        self._tell(entries)
        return entries

    async def append(self, kind: EntryKind, body: Any, ts_ms: int) -> Entry:
        entry = await super().append(kind, body, ts_ms)
        self._tell([entry])
        return entry

    def _tell(self, entries: Sequence[Entry]) -> None:
        for watch in self.watchers:
            try:
                watch(entries)
            except Exception:  # noqa: BLE001 - a watcher bug must not stop the scan loop
                log.exception("journal_watcher_failed")


class Fallback:
    """Every contract's probation window on this agent, and the fallbacks they call for."""

    def __init__(self, journal: WatchedJournal, scan: ScanLoop,
                 clock_ms: Callable[[], EpochMs]) -> None:
        self.journal, self.scan, self._clock_ms = journal, scan, clock_ms
        self.store: ContractStore | None = None
        self.windows: dict[str, Window] = {}  # by content hash
        self._open: dict[str, str] = {}  # contract id -> hash of its open window
        self._last_unconfirmed: dict[str, int] = {}  # contract id -> seq of its safe_unconfirmed
        self._installing: set[str] = set()  # known-good hashes being started by a fallback
        self._wake = asyncio.Event()
        self._dirty = False
        journal.watchers.append(self.observe)

    # -- watching (synchronous, after each commit) -------------------------------------------
    def observe(self, entries: Sequence[Entry]) -> None:
        for e in entries:
            if e.kind is EntryKind.BOOT:
                self._boot(e)
                continue
            tag = e.body.get(CONTRACT_TAG)
            if e.body.get("event") == AgentEvent.SAFE_UNCONFIRMED.value and isinstance(tag, str):
                self._last_unconfirmed[tag] = e.seq
            digest = self._open.get(tag) if isinstance(tag, str) else None
            if digest is not None:
                self._update(digest, rules.judge(self.windows[digest], e.kind, e.body, e.seq,
                                                 e.ts_ms))

    def on_cycle(self, report: CycleReport) -> None:
        """A safe state still unconfirmed a scan after it was demanded is a cause too; the
        keeper journals it only when its set of points changes, so it is judged per cycle."""
        key = report.contract
        if key is None:
            return
        digest, seg = self._open.get(key), self.scan.segments.get(key)
        if digest is None or seg is None or seg.active.hash != digest:
            return
        keeper = seg.actuator.keeper
        if keeper.active and keeper.unconfirmed and keeper.attempts >= 2:
            body = {"event": AgentEvent.SAFE_UNCONFIRMED.value, "attempts": keeper.attempts,
                    CONTRACT_TAG: key}
            self._update(digest, rules.judge(self.windows[digest], EntryKind.EVENT, body,
                                             self._last_unconfirmed.get(key, 0), report.now_ms))

    def _boot(self, e: Entry) -> None:
        digest = e.body.get("hash")
        if not isinstance(digest, str) or self.store is None:
            return
        cid = e.body.get("contract")
        before = self._open.get(cid) if isinstance(cid, str) else None
        if before is not None and before != digest:  # another version took over: not on trial
            self._update(before, replace(self.windows[before], status=Status.CLOSED))
        active = self.store.known.get(digest)
        if active is None:
            return
        w = self.windows.get(digest)
        if w is None:
            w = rules.open_window(active.contract, e.ts_ms, closed=digest in self._installing)
            if w is None:
                return
            self._update(digest, w)
        if w.status is Status.OPEN:
            self._open[active.contract.contract] = digest

    def _update(self, digest: str, w: Window | None) -> None:
        if w is None:
            return
        self.windows[digest] = w
        if w.status is not Status.OPEN and self._open.get(w.contract) == digest:
            del self._open[w.contract]
        if w.status is Status.FALLING:
            log.warning("rollout_fallback_due contract=%s cause=%s cause_seq=%s known_good=%s",
                        w.label, w.cause, w.cause_seq, w.known_good[:12])
        self._dirty = True
        self._wake.set()

    # -- acting (the task) ----------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: save the windows when they change, carry out each fallback due."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            for digest, w in list(self.windows.items()):
                if w.status is Status.FALLING:
                    await self._fall_back_live(digest, w)
            await self._save()

    async def _fall_back_live(self, digest: str, w: Window) -> None:
        seg = self.scan.segments.get(w.contract)
        if seg is None or seg.active.hash != digest:  # replaced meanwhile: nothing to fall from
            self._update(digest, replace(w, status=Status.CLOSED))
            return
        known_good = await self._known_good(digest, w)
        if known_good is None:
            return
        await self.journal.append_many(self._event(w, known_good))
        await self._record(seg.active, w, known_good)
        self._installing.add(known_good.hash)
        started = await self.scan.replace(known_good, rules.fallback_state(known_good.contract))
        if not started:  # refused (write conflict, journaled): the tripped one keeps its state
            log.error("rollout_fallback_refused contract=%s", rules.label(known_good.contract))
        log.warning("rollout_fallback contract=%s fallback=%s cause=%s cause_seq=%s started=%s",
                    w.label, rules.label(known_good.contract), w.cause, w.cause_seq, started)

    async def _known_good(self, digest: str, w: Window) -> ActiveContract | None:
        """The stored known-good contract, or None (journaled `rollout_fallback_failed`: the
        tripped contract stays as it is, in its own safe state if it tripped)."""
        assert self.store is not None
        found = await self.store.known_good(w.known_good, self._clock_ms())
        reason = None
        if found is None:
            reason = "the known-good contract is not stored here, or no longer passes its checks"
        elif found.contract.contract != w.contract:
            reason = f"the known-good contract is {found.contract.contract}, not {w.contract}"
        if reason is None:
            return found
        self._update(digest, replace(w, status=Status.CLOSED))
        await self.journal.append_many(tag_items([item(agent_event_body(
            AgentEvent.ROLLOUT_FALLBACK_FAILED, deployment=w.deployment, known_good=w.known_good,
            cause=w.cause, cause_seq=w.cause_seq, reason=reason), self._clock_ms())], w.contract))
        log.error("rollout_fallback_failed contract=%s known_good=%s reason=%s", w.label,
                  w.known_good[:12], reason)
        return None

    def _event(self, w: Window, known_good: ActiveContract) -> list[Item]:
        body = agent_event_body(AgentEvent.ROLLOUT_FALLBACK,
                                **rules.fallback_fields(w, rules.label(known_good.contract)))
        return tag_items([item(body, self._clock_ms())], w.contract)

    async def _record(self, tripped: ActiveContract, w: Window, known_good: ActiveContract) -> None:
        """Journaled: the store and the windows say so before the known-good starts."""
        assert self.store is not None
        await self.store.fell_back(tripped, known_good, self._clock_ms())
        self._update(tripped.hash, replace(w, status=Status.FELL_BACK))
        kg = self.windows.get(known_good.hash)
        if kg is not None and kg.status is Status.OPEN:
            self._update(known_good.hash, replace(kg, status=Status.CLOSED))
        await self._save()

    async def _save(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        blob = canonical_dumps({h: w.to_mapping() for h, w in sorted(self.windows.items())})
        seq, _ = await self.journal.head()
        await self.journal.save_checkpoint(WINDOWS, blob, seq, self._clock_ms())

    # -- restart ----------------------------------------------------------------------------
    async def restore(self, store: ContractStore, restored: Restored) -> Restored:
        """Before the scan starts: the windows back, and each contract that was falling back
        (or had a cause journaled but not yet saved) resumed as its known-good instead."""
        from agent.contract_store import Restored as Out
        self.store = store
        found = await self.journal.load_checkpoint(WINDOWS)
        self.windows = {h: Window.from_mapping(m) for h, m in loads(found[0]).items()} \
            if found else {}
        await self._causes_in_tail({a.hash for a, _ in restored.resumes})
        resumes: list[Resume] = []
        for active, state in restored.resumes:
            resumes.append(await self._restore_one(active, state))
        # Neither a contract fallen back from, nor the known-good now resumed in its place (the
        # store names it the latest of its id), may start again as a pending contract.
        skip = {h for h, w in self.windows.items() if w.status in (Status.FALLING, Status.FELL_BACK)}
        skip |= {a.hash for a, _ in resumes}
        pendings = tuple(p for p in restored.pendings if p.hash not in skip)
        for active, _ in resumes:
            w = self.windows.get(active.hash)
            if w is not None and w.status is Status.OPEN:
                self._open[w.contract] = active.hash
        await self._save()
        return Out(resumes=tuple(resumes), pendings=pendings)

    async def _restore_one(self, active: ActiveContract, state: Any) -> Resume:
        w = self.windows.get(active.hash)
        if w is None or w.status not in (Status.FALLING, Status.FELL_BACK):
            return (active, state)
        known_good = await self._known_good(active.hash, w)
        if known_good is None:
            return (active, state)
        if w.status is Status.FALLING and not await self._journaled(w):
            await self.journal.append_many(self._event(w, known_good))
        await self._record(active, w, known_good)
        self._installing.add(known_good.hash)
        log.warning("rollout_fallback_resumed contract=%s fallback=%s", w.label,
                    rules.label(known_good.contract))
        return (known_good, rules.fallback_state(known_good.contract))

    async def _causes_in_tail(self, resumed: set[str]) -> None:
        """A cause journaled just before a crash by a contract being resumed, its window not
        saved as FALLING yet."""
        by_id = {w.contract: h for h, w in self.windows.items()
                 if w.status is Status.OPEN and h in resumed}
        if not by_id:
            return
        head, _ = await self.journal.head()
        entries = await self.journal.read(max(1, head - TAIL_ENTRIES + 1), TAIL_ENTRIES)
        for e in entries:
            tag = e.body.get(CONTRACT_TAG)
            digest = by_id.get(tag) if isinstance(tag, str) else None
            if digest is not None and self.windows[digest].status is Status.OPEN:
                self._update(digest, rules.judge(self.windows[digest], e.kind, e.body, e.seq,
                                                 e.ts_ms))

    async def _journaled(self, w: Window) -> bool:
        """Whether `rollout_fallback` for this cause is in the journal already."""
        start = w.cause_seq or 1
        entries = await self.journal.read(start, TAIL_ENTRIES)
        return any(e.body.get("event") == AgentEvent.ROLLOUT_FALLBACK.value
                   and e.body.get(CONTRACT_TAG) == w.contract
                   and e.body.get("cause_seq") == w.cause_seq for e in entries)
