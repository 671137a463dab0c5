"""Claims bound to the topic: pure decisions on what a device's message may change (invariant 10).

Theory. The broker binds each device login to its own topics (`fp/v1/{site}/{device}/…`), so the
topic's site and device are the sender's identity. Everything *inside* a payload is a claim made
by that sender and is checked against the topic and against what the hub itself knows before it
changes anything:
- a contract id (contract/result, telemetry, birth) must name a contract the hub issued *to this
  device* (the contract record's device is the topic's device);
- a device or site named in a payload (birth, journal batch) must be the topic's;
- a journal batch's entries must carry the seqs its range claims, and its signature must verify
  under the device's enrolled key (contracts.journal_sig) — or, with no key enrolled, it may be
  unsigned unless the hub requires signed journals;
- a device in FAULT (its chain broke) changes no contract state, whatever it says.
A refused message changes nothing; the handler logs it (bounded) and raises the verdict's alarm.
Each check is a function of the message and the hub's records: tested alone (tests/hub/
test_claims.py), called by one line in hub/sync/ (presence.py, journal.py).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from contracts.journal_sig import verify_head
from contracts.limits import quote
from contracts.wire import Birth, JournalBatch
from hub.states import DeviceState
from hub.store import ContractRecord

CLAIM_MISMATCH = "claim_mismatch"
FORGED_BATCH = "forged_batch"
UNKNOWN_DEVICE = "unknown_device"
"""Alarm kinds (fixed interface 3); hub/alarms.py's AlarmKind has the same strings."""

@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Accept, or refuse with the alarm kind to raise (None: refuse without an alarm) and why."""

    ok: bool
    alarm: str | None = None
    detail: str = ""


ACCEPT = Verdict(ok=True)


def _refuse(alarm: str | None, detail: str) -> Verdict:
    return Verdict(ok=False, alarm=alarm, detail=detail[:300])


def contract_claim(device: str, cid: str, record: ContractRecord | None) -> Verdict:
    """A message on `device`'s topic names contract `cid`; `record` is the hub's record of it
    (None: the hub has none). Accept only a contract the hub issued to this device."""
    if record is None:
        return _refuse(CLAIM_MISMATCH,
                       f"names contract {quote(cid, bare=True)}, which the hub never issued")
    if record.device != device:
        return _refuse(CLAIM_MISMATCH, f"names contract {quote(cid, bare=True)}, which the hub "
                                       "issued to another device")
    return ACCEPT


def may_change_contracts(state: DeviceState) -> Verdict:
    """A device whose journal chain broke is in FAULT: nothing it says moves a contract."""
    if state is DeviceState.FAULT:
        return _refuse(None, "device is in fault: contract state is not changed by it")
    return ACCEPT


def birth_claim(site: str, device: str, birth: Birth) -> Verdict:
    """A birth must name the topic's own site and device."""
    if (birth.site, birth.device) != (site, device):
        return _refuse(CLAIM_MISMATCH, f"birth claims {quote(birth.site, bare=True)}/"
                                       f"{quote(birth.device, bare=True)}")
    return ACCEPT


def batch_claim(device: str, batch: JournalBatch, key: Ed25519PublicKey | None, *,
                require_signed: bool) -> Verdict:
    """A journal batch on `device`'s topic: its device, its entries' seqs and its signature."""
    if batch.device != device:
        return _refuse(CLAIM_MISMATCH,
                       f"journal batch claims device {quote(batch.device, bare=True)}")
    seqs = _seq_claims(batch)
    if seqs is not None:
        return _refuse(CLAIM_MISMATCH, seqs)
    return signature_claim(batch, key, require_signed=require_signed)


def _seq_claims(batch: JournalBatch) -> str | None:
    """The entries must hold exactly the seqs of the batch's range outside its declared gaps."""
    expected = iter(expected_seqs(batch))
    for offset, entry in enumerate(batch.entries):
        seq = entry.get("seq") if isinstance(entry, Mapping) else None
        want = next(expected, None)
        if seq != want:
            return (f"entry {offset} claims seq {quote(seq, bare=True)}, the batch range "
                    f"{batch.from_seq}..{batch.to_seq} says {want}")
    return None


def expected_seqs(batch: JournalBatch) -> Iterator[int]:
    """The seqs of from_seq..to_seq not inside one of the batch's gaps, ascending."""
    gaps = sorted(getattr(batch, "gaps", ()) or ())
    seq = batch.from_seq
    for lo, hi in gaps:
        yield from range(seq, lo)
        seq = max(seq, hi + 1)
    yield from range(seq, batch.to_seq + 1)


def signature_claim(batch: JournalBatch, key: Ed25519PublicKey | None, *,
                    require_signed: bool) -> Verdict:
    """Fixed interface 6: with a key enrolled, the batch must carry a signature that verifies over
    its signed head; with none, an unsigned batch passes unless signed journals are required."""
    if key is None:
        if require_signed:
            return _refuse(FORGED_BATCH, "no journal key is enrolled for this device and the hub "
                                         "requires signed journals")
        return ACCEPT
    if batch.sig is None:
        return _refuse(FORGED_BATCH, f"unsigned journal batch {batch.from_seq}..{batch.to_seq}")
    if not verify_head(batch.signed_head(), batch.sig, key):
        return _refuse(FORGED_BATCH, f"journal batch {batch.from_seq}..{batch.to_seq}: signature "
                                     "does not verify over its chain head")
    return ACCEPT
