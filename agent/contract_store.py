"""The agent's contract store: verify, remember, and hand contracts to the scan loop.

Every accepted contract is kept (by content hash) in the journal database's checkpoint table, with
the highest accepted version per contract id (rollback protection, invariant 6), so a restart knows
the last known-good contract without the hub. Every acceptance and refusal is journaled with its
reason; an accepted contract's entry carries the signed bytes, so the journal alone can be replayed.

Verification (decode, validate, check the signature) runs in a worker thread, never on the event
loop that runs the scan: a large contract once stalled the scan for 19 s (`scan_overrun`) on
receipt and again at the next start. The scan keeps its period while a contract is verified.

Rollout fallback (agent/fallback.py): the store hands out a stored contract by hash
(`known_good`, re-verified, not subject to the older-version refusal: it is a contract this device
accepted before), and `fell_back` records that the agent fell back from a contract: that one is no
longer the latest of its id (a restart does not offer it again) and a re-delivery of it is refused
(`fell_back`), so only a new version can replace the known-good contract.
"""
from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.journal_thread import AsyncJournal
from agent.segment import (
    CHECKPOINT_NAME, RUNNING_NAME, ActiveContract, Resume, checkpoint_name, decode_checkpoint,
)
from contracts.journal_events import (
    AgentEvent, ContractBody, ContractChange, agent_event_body, item,
)
from contracts.codec import canonical_dumps, content_hash, loads
from contracts.engine import EngineState
from contracts.errors import ContractRefused, Refusal
from contracts.schema import Contract
from contracts.signing import verify_contract
from contracts.types import EpochMs

log = logging.getLogger("fieldpact.agent.contracts")

_VERSIONS = "contract:versions"
_LATEST = "contract:latest"  # the latest accepted contract, as a one-contract agent kept it
_LATEST_BY_ID = "contract:latest_by_id"  # {contract id: hash of its latest accepted version}
_FELL_BACK = "contract:fell_back"  # [hash, ...] of the contracts the agent fell back from


@dataclass(frozen=True, kw_only=True)
class Restored:
    """What a restart finds: the contracts to resume (with their engine states), by contract id,
    and the ones accepted but not started yet."""

    resumes: tuple[Resume, ...] = ()
    pendings: tuple[ActiveContract, ...] = ()

    @property
    def resume(self) -> Resume | None:
        return self.resumes[0] if self.resumes else None

    @property
    def pending(self) -> ActiveContract | None:
        return self.pendings[0] if self.pendings else None


class ContractStore:
    def __init__(self, journal: AsyncJournal, pubkey: Ed25519PublicKey, device: str, *,
                 check: Callable[[Contract], None] | None = None) -> None:
        """`check` raises ContractRefused for a contract this agent cannot run (an endpoint it
        does not have); it is journaled and reported like any refusal."""
        self._journal, self._pubkey, self._device = journal, pubkey, device
        self._check = check or (lambda _c: None)
        self._versions: dict[str, int] = {}
        self._hashes: dict[str, str] = {}
        self._latest: dict[str, str] = {}  # contract id -> hash of the latest one accepted
        self._fell_back: set[str] = set()  # hashes the agent fell back from: refused if re-sent
        self.known: dict[str, ActiveContract] = {}  # by hash: every contract verified since start

    async def _load_blob(self, name: str) -> bytes | None:
        found = await self._journal.load_checkpoint(name)
        return found[0] if found else None

    async def _load_contract(self, digest: str, now_ms: EpochMs) -> ActiveContract | None:
        signed = await self._load_blob(f"contract:{digest}")
        if signed is None:
            return None
        c = await asyncio.to_thread(verify_contract, signed, self._pubkey, now_ms=now_ms,
                                    device=self._device, allow_future=True)
        self._check(c)
        active = ActiveContract(contract=c, signed=signed, hash=digest)
        self.known[digest] = active
        return active

    async def restore(self, now_ms: EpochMs) -> Restored:
        """Re-verify what was stored (a tampered store is refused like a tampered message): every
        contract that had a segment comes back with its engine state, then the latest accepted
        version of each contract id that is not the one resumed. An agent's store from before
        several contracts per agent (one `engine` checkpoint, one latest) reads the same way."""
        blob = await self._load_blob(_VERSIONS)
        known = loads(blob) if blob else {"versions": {}, "hashes": {}}
        self._versions, self._hashes = dict(known["versions"]), dict(known["hashes"])
        fell_back = await self._load_blob(_FELL_BACK)
        self._fell_back = set(loads(fell_back)) if fell_back else set()
        resumes = []
        for name in await self._engine_checkpoints():
            ckpt = await self._load_blob(name)
            if ckpt is None:
                continue
            digest, state = decode_checkpoint(ckpt)
            active = await self._safe_load(digest, now_ms)
            if active is not None:
                resumes.append((active, state))
        resumed = {a.hash for a, _ in resumes}
        pendings = []
        for digest in await self._latest_hashes():
            if digest not in resumed:
                found = await self._safe_load(digest, now_ms)
                if found is not None:
                    pendings.append(found)
        for a in [*pendings, *(a for a, _ in resumes)]:
            self._latest.setdefault(a.contract.contract, a.hash)  # a store from before by-id
        return Restored(resumes=tuple(resumes), pendings=tuple(pendings))

    async def _engine_checkpoints(self) -> list[str]:
        running = await self._load_blob(RUNNING_NAME)
        if running is None:
            return [CHECKPOINT_NAME]
        return [checkpoint_name(cid) for cid in loads(running)]

    async def _latest_hashes(self) -> list[str]:
        by_id = await self._load_blob(_LATEST_BY_ID)
        if by_id is not None:
            self._latest = dict(loads(by_id))
            return [digest for _, digest in sorted(self._latest.items())]
        latest = await self._load_blob(_LATEST)
        return [latest.decode()] if latest is not None else []

    async def _safe_load(self, digest: str, now_ms: EpochMs) -> ActiveContract | None:
        try:
            return await self._load_contract(digest, now_ms)
        except ContractRefused as exc:
            await self._journal.append(*item(agent_event_body(
                AgentEvent.STORED_CONTRACT_REFUSED, hash=digest, refusal=exc.refusal.value,
                detail=exc.detail), now_ms))
            log.warning("stored_contract_refused hash=%s refusal=%s", digest, exc.refusal.value)
            return None

    async def receive(self, signed: bytes, now_ms: EpochMs) -> ActiveContract:
        """Verify and store a contract. Raises ContractRefused (already journaled)."""
        try:
            c = await asyncio.to_thread(functools.partial(
                verify_contract, signed, self._pubkey, now_ms=now_ms, device=self._device,
                accepted=dict(self._versions), accepted_hashes=dict(self._hashes),
                allow_future=True))
            self._check(c)
            digest = await asyncio.to_thread(content_hash, c)
            if digest in self._fell_back:
                raise ContractRefused(Refusal.FELL_BACK, f"{c.contract}@{c.version} (hash "
                                      f"{digest[:12]}) tripped within its health window and this "
                                      "device fell back from it; send a new version")
        except ContractRefused as exc:
            await self._journal.append(*item(ContractBody(
                event=ContractChange.REFUSED, refusal=exc.refusal, detail=exc.detail), now_ms))
            log.warning("contract_refused refusal=%s detail=%s", exc.refusal.value, exc.detail)
            raise
        if c.version >= self._versions.get(c.contract, 0):
            self._versions[c.contract], self._hashes[c.contract] = c.version, digest
        seq, _ = await self._journal.head()
        await self._journal.save_checkpoint(f"contract:{digest}", signed, seq, now_ms)
        known = {"versions": self._versions, "hashes": self._hashes}
        await self._journal.save_checkpoint(_VERSIONS, canonical_dumps(known), seq, now_ms)
        self._latest[c.contract] = digest
        await self._journal.save_checkpoint(_LATEST_BY_ID, canonical_dumps(self._latest), seq, now_ms)
        await self._journal.append(*item(ContractBody(
            event=ContractChange.ACCEPTED, contract=c.contract, version=c.version, hash=digest,
            signed=signed), now_ms))
        log.info("contract_accepted contract=%s version=%s hash=%s", c.contract, c.version, digest[:12])
        active = ActiveContract(contract=c, signed=signed, hash=digest)
        self.known[digest] = active
        return active

    async def known_good(self, digest: str, now_ms: EpochMs) -> ActiveContract | None:
        """The stored contract with hash `digest`, re-verified (signature, device, validity; no
        version check), or None when it is not stored or no longer passes (journaled)."""
        return await self._safe_load(digest, now_ms)

    async def fell_back(self, tripped: ActiveContract, known_good: ActiveContract,
                        now_ms: EpochMs) -> None:
        """Record a fallback from `tripped` to `known_good` (idempotent): the known-good becomes
        the latest of its contract id, the tripped one is refused if it comes again."""
        self._fell_back.add(tripped.hash)
        if tripped.contract.contract != known_good.contract.contract:
            self._latest.pop(tripped.contract.contract, None)
        self._latest[known_good.contract.contract] = known_good.hash
        seq, _ = await self._journal.head()
        await self._journal.save_checkpoint(_FELL_BACK, canonical_dumps(sorted(self._fell_back)),
                                            seq, now_ms)
        await self._journal.save_checkpoint(_LATEST_BY_ID, canonical_dumps(self._latest), seq, now_ms)
