"""MQTT payloads between agent and hub: frozen dataclasses that check themselves when built.

Rules of this module:
- Every payload is a codec envelope `{kind, v, body}`; `from_bytes` refuses another kind, another
  version, a missing or unknown field, or a field of the wrong type, with an EncodingError naming
  the message and the field. A version bump is the only way to change a body (STYLE 3).
- Ordered pairs (labels, telemetry values) travel as CBOR arrays of `[name, value]`, not maps, so
  the order the sender chose survives canonical encoding (which sorts map keys).
- Journal entries are opaque mappings here (contracts.chain owns their shape); a batch only checks
  that its seq range and its entry count agree.
- Input is bounded before it is decoded: each message kind has a largest payload (MAX_BYTES, the
  table in the README), integers have documented ranges (seq <= MAX_SEQ, times <= MAX_EPOCH_MS,
  versions <= MAX_VERSION), and errors quote at most ~80 characters of a value (limits.quote).
- The envelope says nothing about delivery: QoS is not trusted (invariant 5); `seq` + `Ack` are.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from contracts.chain import HASH_SIZE
from contracts.codec import decode_message
from contracts.inputs import Command, CommandKind
from contracts.limits import MAX_EPOCH_MS, MAX_SEQ, MAX_VERSION
from contracts.journal_sig import SIG_BYTES, SignedHead, normal_gaps
from contracts.types import EpochMs
from contracts.wire_fields import (WIRE_VERSION, Message, as_pairs, bad, check_int,
                                   check_names, check_pairs, check_str, check_text, is_value,
                                   sized)
from contracts.wire_telemetry import (MAX_FAULT_WORDS, MAX_TELEMETRY_FAULTS, SAFE_STATES,
                                      Telemetry)

__all__ = ["MAX_BOOT_ID", "MAX_BIRTH_CONTRACTS", "MAX_FAULT_WORDS", "MAX_TELEMETRY_FAULTS",
           "SAFE_STATES", "WIRE_VERSION", "Ack", "Birth", "CommandMessage", "ContractResult",
           "HubBirth", "JournalBatch", "Message", "Telemetry", "check_batch_count",
           "check_batch_head", "check_sig"]

MAX_BOOT_ID = 64
"""A boot id is a uuid4 hex (32 characters); anything far longer is not one of ours."""


# --------------------------------------------------------------------------------------------
# Messages


MAX_BIRTH_CONTRACTS = 64
"""Contracts a birth may list: an agent runs a handful side by side; the bound keeps a birth small."""


@dataclass(frozen=True, kw_only=True)
class Birth(Message):
    """Retained on `…/status` at connect: who the agent is and where its journal stands."""

    KIND: ClassVar[str] = "birth"
    MAX_BYTES: ClassVar[int] = 16 * 1024  # ids, a few labels: a real birth is ~200 bytes
    device: str
    site: str
    boot_id: str
    contract: str | None
    version: int | None
    last_seq: int
    labels: tuple[tuple[str, str], ...] = ()
    contracts: tuple[tuple[str, int], ...] = ()
    """Every contract the agent runs, (id, version): an agent runs several side by side;
    `contract`/`version` name the first. Absent from older agents (then: just that one)."""

    def __post_init__(self) -> None:
        k = self.KIND
        check_str(k, "device", self.device)
        check_str(k, "site", self.site)
        check_str(k, "boot_id", self.boot_id)
        check_str(k, "contract", self.contract, optional=True)
        check_int(k, "version", self.version, minimum=1, optional=True, maximum=MAX_VERSION)
        if (self.contract is None) != (self.version is None):
            raise bad(k, "version", "must be given exactly when contract is", self.version)
        check_int(k, "last_seq", self.last_seq)
        check_pairs(k, "labels", self.labels, lambda v: isinstance(v, str))
        check_pairs(k, "contracts", self.contracts, lambda v: isinstance(v, int)
               and not isinstance(v, bool) and 1 <= v <= MAX_VERSION)
        if len(self.contracts) > MAX_BIRTH_CONTRACTS:
            raise bad(k, "contracts", f"must list at most {MAX_BIRTH_CONTRACTS}",
                       self.contracts[:MAX_BIRTH_CONTRACTS])

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "labels": as_pairs(body.get("labels", ())),  # optional: absent = ()
                "contracts": as_pairs(body.get("contracts", ()))}


@dataclass(frozen=True, kw_only=True)
class JournalBatch(Message):
    """A run of journal entries `from_seq..to_seq`, chained from `prev_hash` (contracts.chain).

    `gaps` declares seq ranges `(first, last)` inside `from_seq..to_seq` that the agent's journal
    no longer holds (a row deleted or unreadable): every seq of the range is either an entry or in
    exactly one gap, so the hub never waits for what will not come, and a signature over the batch
    (interface 6) covers the gaps too. `dropped_through` is the older form of a leading gap
    (retention dropped everything up to it), still accepted from older agents."""

    KIND: ClassVar[str] = "journal"
    MAX_BYTES: ClassVar[int] = 4 * 1024 * 1024
    """500 entries of ~300 bytes, plus an accepted contract's signed bytes (<= 1 MiB) in one."""
    device: str
    from_seq: int
    to_seq: int
    prev_hash: bytes
    entries: tuple[Mapping[str, Any], ...]
    dropped_through: int = 0
    gaps: tuple[tuple[int, int], ...] = ()
    sig: bytes | None = None
    """The agent's Ed25519 signature over the batch's chain head (contracts.journal_sig)."""

    def __post_init__(self) -> None:
        k = self.KIND
        check_batch_head(k, self.device, self.from_seq, self.to_seq, self.dropped_through,
                         self.sig, self.prev_hash)
        if not isinstance(self.entries, tuple) or not all(isinstance(e, Mapping) for e in self.entries):
            raise bad(k, "entries", "must be a sequence of entry mappings", self.entries)
        check_batch_count(k, self.from_seq, self.to_seq, self.gaps, len(self.entries), "entries")

    def _body(self) -> dict[str, Any]:
        body = {**super()._body(), "entries": [dict(e) for e in self.entries],
                "gaps": [list(g) for g in self.gaps]}
        if not self.gaps:
            del body["gaps"]  # byte-identical to batches from before gaps existed
        if body["sig"] is None:
            del body["sig"]  # likewise for an unsigned batch
        return body

    def signed_head(self) -> SignedHead:
        """What `sig` covers: device, seq range, the hash of the last entry (the chain head; for
        an empty batch, `prev_hash`) and every gap range the batch declares (`dropped_through`,
        and the explicit `gaps`)."""
        last = self.entries[-1].get("hash") if self.entries else self.prev_hash
        head = last if isinstance(last, bytes) else b""
        return SignedHead(device=self.device, from_seq=self.from_seq, to_seq=self.to_seq,
                          head_hash=head,
                          gaps=normal_gaps(self.dropped_through, self.from_seq, self.gaps))

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        entries = body["entries"]
        out = {**body, "entries": tuple(entries) if isinstance(entries, list) else entries}
        if "gaps" in body:
            out["gaps"] = as_pairs(body["gaps"])
        return out


def check_sig(k: str, sig: Any) -> None:
    """A batch signature is absent or exactly SIG_BYTES bytes (Ed25519)."""
    if sig is not None and (not isinstance(sig, bytes) or len(sig) != SIG_BYTES):
        raise bad(k, "sig", f"must be {SIG_BYTES} bytes (Ed25519) or absent", type(sig).__name__)


def check_batch_head(k: str, device: Any, from_seq: Any, to_seq: Any, dropped_through: Any,
                     sig: Any, prev_hash: Any) -> None:
    """The fields every journal batch form shares (JournalBatch here, the rows form in
    contracts/journal_wire.py): device, seq range, dropped_through, signature, prev_hash."""
    check_str(k, "device", device)
    check_int(k, "from_seq", from_seq, minimum=1)
    check_int(k, "to_seq", to_seq)
    check_int(k, "dropped_through", dropped_through)
    check_sig(k, sig)
    if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
        raise bad(k, "prev_hash", f"must be {HASH_SIZE} bytes", prev_hash)


def check_batch_count(k: str, from_seq: int, to_seq: int, gaps: Any, count: int, noun: str) -> None:
    """Every seq of from_seq..to_seq is one of the batch's `count` entries or in one gap."""
    missing = _check_gaps(k, gaps, from_seq, to_seq)
    if (count or gaps) and to_seq - from_seq + 1 != count + missing:
        raise bad(k, "to_seq", f"must be from_seq {from_seq} + {count} {noun} + {missing} seqs "
                                f"in gaps - 1", to_seq)


def _check_gaps(k: str, gaps: Any, first: int, last: int) -> int:
    """Gaps must be ordered, disjoint, non-adjacent (int, int) ranges within first..last; returns
    how many seqs they cover. Non-adjacent bounds their count by the entries between them."""
    ok = isinstance(gaps, tuple) and all(
        isinstance(g, tuple) and len(g) == 2 and all(type(x) is int for x in g) for g in gaps)
    if not ok:
        raise bad(k, "gaps", "must be a sequence of (first, last) seq pairs", str(gaps)[:80])
    floor = first
    for lo, hi in gaps:
        if not floor <= lo <= hi <= last:
            raise bad(k, "gaps", f"range {lo}..{hi} must be ordered, apart and inside "
                                  f"{first}..{last}", (lo, hi))
        floor = hi + 2
    return sum(hi - lo + 1 for lo, hi in gaps)


@dataclass(frozen=True, kw_only=True)
class Ack(Message):
    """Hub to agent: every entry up to `seq` is stored and its chain verified."""

    KIND: ClassVar[str] = "ack"
    MAX_BYTES: ClassVar[int] = 256  # one integer
    seq: int

    def __post_init__(self) -> None:
        check_int(self.KIND, "seq", self.seq)


@dataclass(frozen=True, kw_only=True)
class ContractResult(Message):
    """Agent to hub on `…/contract/result`: accepted, or refused with a Refusal value and detail."""

    KIND: ClassVar[str] = "contract_result"
    MAX_BYTES: ClassVar[int] = 16 * 1024  # ids and a refusal detail
    contract: str
    version: int
    accepted: bool
    refusal: str | None
    detail: str

    def __post_init__(self) -> None:
        k = self.KIND
        check_str(k, "contract", self.contract)
        check_int(k, "version", self.version, minimum=1, maximum=MAX_VERSION)
        if not isinstance(self.accepted, bool):
            raise bad(k, "accepted", "must be true or false", self.accepted)
        check_str(k, "refusal", self.refusal, optional=True)
        check_text(k, "detail", self.detail)
        if self.accepted != (self.refusal is None):
            raise bad(k, "refusal", "must be given exactly when the contract is refused",
                       self.refusal)


@dataclass(frozen=True, kw_only=True)
class CommandMessage(Message):
    """Hub to agent on `…/cmd`: one engine command (contracts.inputs.Command)."""

    KIND: ClassVar[str] = "command"
    MAX_BYTES: ClassVar[int] = 4 * 1024  # one command
    command: Command
    contract: str | None = None
    """The contract id the command is for (an agent runs several); absent from older hubs: then
    the agent gives it to every contract it runs (a WRITE to the one owning the point)."""

    def __post_init__(self) -> None:
        if not isinstance(self.command, Command):
            raise bad(self.KIND, "command", "must be a Command", self.command)
        check_str(self.KIND, "contract", self.contract, optional=True)

    def _body(self) -> dict[str, Any]:
        c = self.command
        body = {"kind": c.kind.value, "id": c.id, "point": c.point, "value": c.value}
        if self.contract is not None:
            body["contract"] = self.contract
        return body

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check a command. Raises EncodingError naming the field at fault."""
        body = decode_message(sized(cls, data), cls.KIND, cls.VERSION)
        check_names(cls.KIND, body, {"kind", "id", "point", "value", "contract"},
                     required={"kind", "id", "point", "value"})
        return cls(command=_command(cls.KIND, body), contract=body.get("contract"))


def _command(k: str, body: dict[str, Any]) -> Command:
    try:
        kind = CommandKind(body["kind"])
    except ValueError:
        raise bad(k, "kind", f"must be one of {', '.join(CommandKind)}", body["kind"]) from None
    if kind is CommandKind.INTERLOCK:  # only an agent's own contracts trip each other
        raise bad(k, "kind", "is the agent's own, never sent by a hub", body["kind"])
    check_str(k, "id", body["id"])
    check_str(k, "point", body["point"], optional=True)
    if body["value"] is not None and not is_value(body["value"]):
        raise bad(k, "value", "must be a number, true/false or null", body["value"])
    return Command(kind=kind, id=body["id"], point=body["point"], value=body["value"])


@dataclass(frozen=True, kw_only=True)
class HubBirth(Message):
    """Hub to everyone, retained on `fp/v1/_hub/status` at every connect of the hub: which hub
    process (`boot`, new per start) is up since `ts_ms`. A new boot, or a new birth of the same
    boot (the hub reconnected and re-subscribed), tells agents to resend from the hub's ack."""

    KIND: ClassVar[str] = "hub_birth"
    boot: str
    ts_ms: EpochMs

    def __post_init__(self) -> None:
        check_str(self.KIND, "boot", self.boot)
        if len(self.boot) > MAX_BOOT_ID:
            raise bad(self.KIND, "boot", f"must be at most {MAX_BOOT_ID} characters",
                       self.boot[:MAX_BOOT_ID])
        check_int(self.KIND, "ts_ms", self.ts_ms)
