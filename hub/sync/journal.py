"""A device's journal batches: ingest, store, ack, then apply what the new entries mean.

  journal    ingest idempotently (hub/ingest.py), store, then ack the highest contiguous seq —
             the ack is published only after the entries are committed (durable before acked).
             A broken chain is an alarm and moves the device to FAULT; nothing after it is stored.
             A declared gap is stored as a gap row and alarmed; sync carries on after it.
The new entries' outcomes (hub/sync/outcomes.py: the contract a BOOT names, alarms, completed /
failed / tripped / resumed / resume refused / fell back to the known-good contract: hub/fallback.py)
are applied in seq order. Alarms and contract
transitions are facts whatever the device state; the planner is asked only for a live device
(after an outage the reconciliation judges the same entries instead, so they are not handled
twice). A failed contract is `runtime`; a trip is `trip`, whose default policy holds the latch.
"""
from __future__ import annotations

import logging
from typing import Any

from contracts.chain_rows import Row, entry_of
from contracts.errors import EncodingError
from contracts.journal_events import tag_of
from contracts.limits import quote
from contracts.schema_parse import parse_contract
from contracts.topics import TopicParts
from hub.alarms import AlarmKind
from hub.audit import AuditAction, AuditEntry, Outcome, log_entry
from hub.claims import batch_claim, may_change_contracts
from hub.policy import FailureCategory
from hub.ingest import DeviceIngest, gap_row
from hub.states import ContractEvent, DeviceEvent, DeviceState
from hub.store import NotFound, contract_id
from hub.sync.batches import Batches
from hub.sync.messages import Journal
from hub.errors import PeerFault, RemoteProtocolError
from hub.fallback import plan_fallback
from hub.sync.outcomes import (READ, BootNamed, Diverged, EntryAlarms, FellBack, Finished, Resumed,
                               ResumeRefused, Tripped, outcomes)

log = logging.getLogger("fieldpact.hub.sync")


class JournalSync(Batches):
    async def _on_journal(self, parts: TopicParts, msg: Journal) -> None:
        device, batch = parts.device, msg.batch
        if not self._admitted(parts.site, device, parts.channel.value):
            return
        if self._refused(device, parts.channel.value, batch_claim(
                device, batch, self.registry.journal_key(device),
                require_signed=self.registry.require_signed_journals)):
            return  # nothing stored, no ack: a genuine agent resends from the last ack
        if batch.sig is None:
            self._unsigned(device)
        rec = self.store.devices.get(device)
        ing = self._ingest.setdefault(device, DeviceIngest(self._cursor(rec),
                                                           budget=self._pending_budget))
        result = ing.add(batch.rows, batch.dropped_through,
                         batch.gaps, nbytes=msg.nbytes)
        if result.store:
            self.store.journal.insert_rows(device, result.store)
            self._uncommitted += len(result.store)
            self.offline.fold(device, result.store)
            self.entries_ingested += len(result.store)
        if result.gaps:
            self.store.journal.insert([gap_row(device, g) for g in result.gaps])
        if result.cursor.seq > rec.acked_seq:
            self._advanced_ms[device] = self.clock()
        self.store.devices.update(device, acked_seq=result.cursor.seq, last_hash=result.cursor.hash,
                                 last_seen_ms=self.clock())
        self._heard(device, batch.to_seq)
        for g in result.gaps:
            self._alarm(device, AlarmKind.JOURNAL_GAP, f"seq {g.from_seq}..{g.to_seq} will never "
                        f"reach the hub: {g.reason}; sync continues after it")
        if result.broken is not None:
            self._alarm(device, AlarmKind.CHAIN_BREAK,
                        f"seq {result.broken.seq}: {result.broken.reason}")
            self._event(device, DeviceEvent.CHAIN_BROKEN, result.broken.reason)
        await self._contract_events(device, result.store)
        await self._ack(parts.site, device, result.cursor.seq)
        await self._maybe_caught_up(device)

    async def _contract_events(self, device: str, entries: list[Row]) -> None:
        """Apply the outcomes of a device's newly stored entries, in seq order."""
        state = self.store.devices.get(device).state
        if not may_change_contracts(state).ok:
            return  # a device in FAULT changes no contract state
        live = state is DeviceState.LIVE
        tags = _tags(entries)  # several contracts per agent: whose entry
        for o in outcomes(entries):
            self._entry_of = tags.get(o.seq)
            if isinstance(o, BootNamed):
                self._boot_contract(device, o)
            elif isinstance(o, EntryAlarms):
                self._entry_alarms(device, o)
            elif isinstance(o, Finished):
                failed = self._finish_contract(device, o)
                if failed is not None and live:
                    await self._plan(failed, FailureCategory.RUNTIME, f"contract failed: {o.reason}")
            elif isinstance(o, Tripped):
                await self._on_trip(device, o, plan=live)
            elif isinstance(o, Resumed):
                self._on_resumed(device, o)
            elif isinstance(o, ResumeRefused):
                self._on_resume_refused(device, o)
            elif isinstance(o, Diverged):
                if live:
                    await self._on_model_divergence(device, o)
            elif isinstance(o, FellBack):
                self._on_fallback(device, o)
            else:
                self._peer_fault(RemoteProtocolError(PeerFault.UNREADABLE, device,
                                                     f"journal seq {o.seq}: {o.error}"))

    def _entry_alarms(self, device: str, o: EntryAlarms) -> None:
        for kind in o.clear:
            if self.store.alarms.clear_kind(device, kind, self.clock()):
                log.info("alarm_cleared device=%s kind=%s by=%s", device, kind, o.event)
        if o.raise_ is not None:
            self._alarm(device, o.raise_, o.detail)

    async def _on_trip(self, device: str, o: Tripped, *, plan: bool) -> None:
        cid = self._current_cid(device)
        self._healthy_since.pop(device, None)  # settle time counts from after the trip
        if cid is None:
            return
        self._contract_event(device, cid, ContractEvent.TRIP, f"trip: {o.cause}")
        if plan:
            await self._plan(cid, FailureCategory.TRIP, f"guard trip: {o.cause}")

    async def _on_model_divergence(self, device: str, o: Diverged) -> None:
        """The process does not follow the contract's model: the `model` policy decides (default
        hold); the alarm was raised from the same entry (hub/alarms.py)."""
        cid = self._current_cid(device)
        if cid is not None:
            await self._plan(cid, FailureCategory.MODEL, f"model_divergence: {o.detail}")

    def _on_fallback(self, device: str, o: FellBack) -> None:
        """The agent fell back to its known-good contract by itself (hub/fallback.py decides)."""
        plan = plan_fallback(device, o.contract, o.fields, self.store.contracts.find(device=device))
        if plan.tripped is not None:
            self._contract_event(device, plan.tripped, ContractEvent.FAIL, plan.reason)
        if plan.known_good is not None:
            self._contract_event(device, plan.known_good, ContractEvent.REINSTATE, plan.reason)
        elif plan.problem is not None:
            self._alarm(device, AlarmKind.CLAIM_MISMATCH, plan.problem)
        entry = AuditEntry(ts_ms=self.clock(), actor=f"agent:{device}", action=AuditAction.FALLBACK,
                           outcome=Outcome.REFUSED if plan.problem else Outcome.OK,
                           device=device, contract=plan.tripped, reason=plan.reason,
                           detail=plan.detail(o.fields, o.seq))
        self.store.audit.add(entry)
        log_entry(entry)

    def _on_resumed(self, device: str, o: Resumed) -> None:
        cid = self._current_cid(device)
        if cid is None:
            return
        if self._contract_event(device, cid, ContractEvent.RESUME, f"journal: resumed ({o.reason})"):
            self._audit_agent(cid, device, Outcome.OK, "the agent resumed the contract",
                              command=o.command, seq=o.seq)

    def _on_resume_refused(self, device: str, o: ResumeRefused) -> None:
        self._audit_agent(self._current_cid(device), device, Outcome.REFUSED,
                          f"the agent refused the resume: {o.cause}", command=o.command,
                          cause=o.cause, seq=o.seq)

    def _audit_agent(self, cid: str | None, device: str, outcome: Outcome, reason: str,
                     **detail: Any) -> None:
        entry = AuditEntry(ts_ms=self.clock(), actor=f"agent:{device}", action=AuditAction.RESUME,
                           outcome=outcome, device=device, contract=cid, reason=reason,
                           detail=detail)
        self.store.audit.add(entry)
        log_entry(entry)

    def _boot_contract(self, device: str, o: BootNamed) -> None:
        """A BOOT entry names the contract that follows; kept only if the hub issued it to this
        device (else the device's later entries change no contract: claim_mismatch)."""
        if self._claim(device, o.contract, o.version).ok:
            self._journal_cid[device] = contract_id(o.contract, o.version)
        else:
            self._journal_cid[device] = None
            self._alarm(device, AlarmKind.CLAIM_MISMATCH,
                        f"journal BOOT names {quote(o.contract, bare=True)}@{o.version}, "
                        f"not issued to {device}")
        self._journal_cid[f"{device}\0{o.contract}"] = self._journal_cid[device]

    def _current_cid(self, device: str) -> str | None:
        """The contract the device runs, if the hub issued it to this device: the one its
        journal's latest BOOT entry names (the entries being handled belong to it; only a claim
        that passed is kept there), else what its birth/telemetry reported."""
        tagged = f"{device}\0{self._entry_of}" if self._entry_of is not None else None
        if tagged is not None and tagged in self._journal_cid:  # the BOOT of the entry's contract
            return self._journal_cid[tagged]
        if device in self._journal_cid:
            return self._journal_cid[device]
        rec = self.store.devices.get(device)
        if not self._claim(device, rec.contract, rec.version).ok:
            return None
        return contract_id(rec.contract, rec.version) if rec.contract and rec.version else None

    def _finish_contract(self, device: str, o: Finished) -> str | None:
        """Move the device's contract to COMPLETED/FAILED; the contract id if it failed."""
        cid = self._current_cid(device)
        if cid is None:
            return None
        written = self._contract_event(device, cid, o.event, f"journal: {o.why}")
        return cid if written and o.event is ContractEvent.FAIL else None

    async def _plan(self, cid: str, category: FailureCategory, reason: str) -> None:
        try:
            record = self.store.contracts.get(cid)
        except NotFound:  # a contract the hub never issued (the agent's initial file)
            log.warning("plan_skipped contract=%s reason=unknown to the hub", cid)
            return
        contract = parse_contract(record.document)
        steps = [s.name for s in contract.steps]
        live = self.live.get(record.device)
        step = steps.index(live.step) if live is not None and live.step in steps else None
        await self.offline.apply_policy(contract, record, category, reason, step)


def _tags(rows: list[Row]) -> dict[int, str | None]:
    """The contract tag of each row an outcome can come from (the READ kinds: only those bodies
    are decoded at ingest); a body that does not decode is outcomes' Unreadable."""
    tags: dict[int, str | None] = {}
    for r in rows:
        if r.kind in READ:
            try:
                tags[r.seq] = tag_of(entry_of(r))
            except EncodingError:
                continue
    return tags
