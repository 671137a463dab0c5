"""Which contracts an agent runs side by side, and how they affect each other — the rules, pure
but for `save_running`.

Rules (several contracts per agent):
- One segment per contract id (agent/segment.py); a new version of a running contract replaces
  its segment at its valid_from, a new contract id starts a segment of its own.
- Single writer (invariant 2): a contract whose write points overlap those of a contract with a
  live segment is refused, journaled as CONTRACT refused `write_conflict` with the contract ids and
  point names (contracts/conflicts.py), and never runs. A segment whose contract ended
  (completed, expired, aborted, failed) keeps asserting its safe state until a contract that
  needs its points retires it; the others are not touched.
- A trip (the engine entering SAFE) puts that contract's outputs in its safe state and leaves
  the others running, unless its `interlock:` names them: each named one still live gets an
  INTERLOCK command at its next cycle (journaled in its own segment, so replay stays exact), and
  trips with reason `interlock` (cleared like any trip, by an operator's resume).
- Hub commands go to the contract they name; one naming none (an older hub) goes to every
  contract, but a WRITE goes to the contract owning the point.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

from agent.journal_thread import AsyncJournal
from agent.segment import RUNNING_NAME, ActiveContract, Segment
from contracts.codec import canonical_dumps
from contracts.conflicts import describe, label, write_conflicts
from contracts.engine_state import LIVE, TERMINAL
from contracts.errors import ContractRefused, Refusal
from contracts.inputs import Command, CommandKind
from contracts.journal_events import ContractBody, ContractChange, Item, item
from contracts.schema import Contract
from contracts.types import EpochMs

log = logging.getLogger("fieldpact.agent.scan")


def live_contracts(segments: Mapping[str, Segment], but: str | None = None) -> list[Contract]:
    """The contracts of the segments that have not ended (they own their write points)."""
    return [s.active.contract for k, s in sorted(segments.items())
            if k != but and s.state.mode not in TERMINAL]


def check(contract: Contract, segments: Mapping[str, Segment]) -> None:
    """Raises ContractRefused (write_conflict, naming both contracts and the points) when
    `contract`'s write points overlap a live segment's."""
    found = write_conflicts(contract, live_contracts(segments, but=contract.contract))
    if found:
        raise ContractRefused(Refusal.WRITE_CONFLICT, describe(contract, found))


def conflict(active: ActiveContract, segments: Mapping[str, Segment],
             now_ms: EpochMs) -> Item | None:
    """The journal item refusing `active` for a write conflict, or None when it may run."""
    c = active.contract
    try:
        check(c, segments)
    except ContractRefused as exc:
        log.warning("contract_refused contract=%s refusal=%s detail=%s", label(c),
                    exc.refusal.value, exc.detail)
        return item(ContractBody(event=ContractChange.REFUSED, contract=c.contract,
                                 version=c.version, hash=active.hash, refusal=exc.refusal,
                                 detail=exc.detail), now_ms)
    return None


def retired_by(active: ActiveContract, segments: Mapping[str, Segment]) -> list[str]:
    """Ended segments whose write points `active` needs: they stop asserting their safe state."""
    c = active.contract
    return [k for k, s in sorted(segments.items()) if k != c.contract
            and s.state.mode in TERMINAL and write_conflicts(c, [s.active.contract])]


def interlocked(seg: Segment, segments: Mapping[str, Segment]) -> list[Segment]:
    """The live segments `seg`'s contract trips with it (its `interlock:` list)."""
    return [segments[cid] for cid in seg.active.contract.interlock
            if cid in segments and segments[cid].state.mode in LIVE]


def interlock_command(source: str, now_ms: EpochMs) -> Command:
    """What an interlocked contract is told: contract `source` tripped at `now_ms`."""
    return Command(kind=CommandKind.INTERLOCK, id=f"interlock:{source}:{now_ms}", point=source)


def route(segments: Mapping[str, Segment], cmd: Command, contract: str | None) -> list[Segment]:
    """The segments a hub command goes to (see the rules above)."""
    if contract is not None:
        return [segments[contract]] if contract in segments else []
    ordered = [segments[k] for k in sorted(segments)]
    if cmd.kind is CommandKind.WRITE:
        owners = [s for s in ordered if cmd.point in s.actuator.points]
        return owners or ordered[:1]  # none owns it: one engine refuses it, journaled
    return ordered


async def save_running(journal: AsyncJournal, segments: Mapping[str, Segment],
                       now_ms: EpochMs) -> None:
    """Remember which contract ids have a segment, so a restart resumes every one of them."""
    seq, _ = await journal.head()
    await journal.save_checkpoint(RUNNING_NAME, canonical_dumps(sorted(segments)), seq, now_ms)
