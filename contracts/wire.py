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
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar, Self

from contracts.chain import HASH_SIZE
from contracts.codec import decode_message, encode_message
from contracts.errors import EncodingError
from contracts.inputs import Command, CommandKind
from contracts.limits import MAX_EPOCH_MS, MAX_SEQ, MAX_VERSION, quote
from contracts.journal_sig import SIG_BYTES, SignedHead, normal_gaps
from contracts.types import EpochMs, Value

WIRE_VERSION = 1
"""Body format version of every message below; bump per message when its body changes."""

MAX_BOOT_ID = 64
"""A boot id is a uuid4 hex (32 characters); anything far longer is not one of ours."""


class _Message:
    """Shared envelope handling: subclasses are dataclasses named by KIND and VERSION."""

    KIND: ClassVar[str]
    VERSION: ClassVar[int] = WIRE_VERSION
    MAX_BYTES: ClassVar[int] = 64 * 1024
    """Largest payload accepted for this kind, checked before decoding (overridden per kind)."""

    def to_bytes(self) -> bytes:
        """Canonical CBOR envelope of this message."""
        return encode_message(self.KIND, self.VERSION, self._body())

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check a message. Raises EncodingError naming the field at fault."""
        return cls.from_body(decode_message(_sized(cls, data), cls.KIND, cls.VERSION))

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Self:
        """Check a decoded envelope body (of this KIND and VERSION). Raises EncodingError."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        # Fields with defaults were added later within the same wire version: absent = default.
        required = {f.name for f in fields(cls)  # type: ignore[arg-type]
                    if f.default is MISSING and f.default_factory is MISSING}
        _check_names(cls.KIND, body, names, required)
        return cls(**cls._from_body(body))

    def _body(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # type: ignore[arg-type]

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        return body


# --------------------------------------------------------------------------------------------
# Field checks: each raises EncodingError naming the message and the field.


def _bad(kind: str, name: str, why: str, value: Any) -> EncodingError:
    return EncodingError(f"wire message {kind!r} field {quote(name)}: {why}, got {quote(value)}")


def _sized(cls: type[_Message], data: bytes) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)) and len(data) > cls.MAX_BYTES:
        raise EncodingError(f"wire message {cls.KIND!r}: {len(data)} bytes is larger than "
                            f"{cls.MAX_BYTES} for this kind")
    return data


def _check_names(kind: str, body: Mapping[str, Any], names: set[str],
                 required: set[str] | None = None) -> None:
    needed = names if required is None else required
    missing, unknown = sorted(needed - set(body)), sorted(set(body) - names)
    if missing:
        raise _bad(kind, missing[0], "is missing", None)
    if unknown:
        raise _bad(kind, unknown[0], "is not a field of this message", body[unknown[0]])


def _int(kind: str, name: str, v: Any, minimum: int = 0, optional: bool = False,
         maximum: int = MAX_SEQ) -> None:
    if v is None and optional:
        return
    if isinstance(v, bool) or not isinstance(v, int) or not minimum <= v <= maximum:
        raise _bad(kind, name, f"must be an integer within {minimum}..{maximum}", v)


def _str(kind: str, name: str, v: Any, optional: bool = False) -> None:
    if v is None and optional:
        return
    if not isinstance(v, str) or not v:
        raise _bad(kind, name, "must be a non-empty string", v)


def _text(kind: str, name: str, v: Any) -> None:
    if not isinstance(v, str):
        raise _bad(kind, name, "must be a string", v)


def _is_value(v: Any) -> bool:
    return isinstance(v, (bool, int, float))


def _pairs(kind: str, name: str, v: Any, value_ok: Any) -> None:
    ok = isinstance(v, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and value_ok(p[1]) for p in v)
    if not ok:
        raise _bad(kind, name, "must be a sequence of (name, value) pairs", v)


def _as_pairs(v: Any) -> Any:
    """CBOR arrays back to tuples of pairs; anything else is left for the check to refuse."""
    if isinstance(v, list) and all(isinstance(p, list) for p in v):
        return tuple(tuple(p) for p in v)
    return v


# --------------------------------------------------------------------------------------------
# Messages


MAX_BIRTH_CONTRACTS = 64
"""Contracts a birth may list: an agent runs a handful side by side; the bound keeps a birth small."""


@dataclass(frozen=True, kw_only=True)
class Birth(_Message):
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
        _str(k, "device", self.device)
        _str(k, "site", self.site)
        _str(k, "boot_id", self.boot_id)
        _str(k, "contract", self.contract, optional=True)
        _int(k, "version", self.version, minimum=1, optional=True, maximum=MAX_VERSION)
        if (self.contract is None) != (self.version is None):
            raise _bad(k, "version", "must be given exactly when contract is", self.version)
        _int(k, "last_seq", self.last_seq)
        _pairs(k, "labels", self.labels, lambda v: isinstance(v, str))
        _pairs(k, "contracts", self.contracts, lambda v: isinstance(v, int)
               and not isinstance(v, bool) and 1 <= v <= MAX_VERSION)
        if len(self.contracts) > MAX_BIRTH_CONTRACTS:
            raise _bad(k, "contracts", f"must list at most {MAX_BIRTH_CONTRACTS}",
                       self.contracts[:MAX_BIRTH_CONTRACTS])

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "labels": _as_pairs(body.get("labels", ())),  # optional: absent = ()
                "contracts": _as_pairs(body.get("contracts", ()))}


@dataclass(frozen=True, kw_only=True)
class JournalBatch(_Message):
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
            raise _bad(k, "entries", "must be a sequence of entry mappings", self.entries)
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
            out["gaps"] = _as_pairs(body["gaps"])
        return out


def check_sig(k: str, sig: Any) -> None:
    """A batch signature is absent or exactly SIG_BYTES bytes (Ed25519)."""
    if sig is not None and (not isinstance(sig, bytes) or len(sig) != SIG_BYTES):
        raise _bad(k, "sig", f"must be {SIG_BYTES} bytes (Ed25519) or absent", type(sig).__name__)


def check_batch_head(k: str, device: Any, from_seq: Any, to_seq: Any, dropped_through: Any,
                     sig: Any, prev_hash: Any) -> None:
    """The fields every journal batch form shares (JournalBatch here, the rows form in
    contracts/journal_wire.py): device, seq range, dropped_through, signature, prev_hash."""
    _str(k, "device", device)
    _int(k, "from_seq", from_seq, minimum=1)
    _int(k, "to_seq", to_seq)
    _int(k, "dropped_through", dropped_through)
    check_sig(k, sig)
    if not isinstance(prev_hash, bytes) or len(prev_hash) != HASH_SIZE:
        raise _bad(k, "prev_hash", f"must be {HASH_SIZE} bytes", prev_hash)


def check_batch_count(k: str, from_seq: int, to_seq: int, gaps: Any, count: int, noun: str) -> None:
    """Every seq of from_seq..to_seq is one of the batch's `count` entries or in one gap."""
    missing = _check_gaps(k, gaps, from_seq, to_seq)
    if (count or gaps) and to_seq - from_seq + 1 != count + missing:
        raise _bad(k, "to_seq", f"must be from_seq {from_seq} + {count} {noun} + {missing} seqs "
                                f"in gaps - 1", to_seq)


def _check_gaps(k: str, gaps: Any, first: int, last: int) -> int:
    """Gaps must be ordered, disjoint, non-adjacent (int, int) ranges within first..last; returns
    how many seqs they cover. Non-adjacent bounds their count by the entries between them."""
    ok = isinstance(gaps, tuple) and all(
        isinstance(g, tuple) and len(g) == 2 and all(type(x) is int for x in g) for g in gaps)
    if not ok:
        raise _bad(k, "gaps", "must be a sequence of (first, last) seq pairs", str(gaps)[:80])
    floor = first
    for lo, hi in gaps:
        if not floor <= lo <= hi <= last:
            raise _bad(k, "gaps", f"range {lo}..{hi} must be ordered, apart and inside "
                                  f"{first}..{last}", (lo, hi))
        floor = hi + 2
    return sum(hi - lo + 1 for lo, hi in gaps)


@dataclass(frozen=True, kw_only=True)
class Ack(_Message):
    """Hub to agent: every entry up to `seq` is stored and its chain verified."""

    KIND: ClassVar[str] = "ack"
    MAX_BYTES: ClassVar[int] = 256  # one integer
    seq: int

    def __post_init__(self) -> None:
        _int(self.KIND, "seq", self.seq)


@dataclass(frozen=True, kw_only=True)
class ContractResult(_Message):
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
        _str(k, "contract", self.contract)
        _int(k, "version", self.version, minimum=1, maximum=MAX_VERSION)
        if not isinstance(self.accepted, bool):
            raise _bad(k, "accepted", "must be true or false", self.accepted)
        _str(k, "refusal", self.refusal, optional=True)
        _text(k, "detail", self.detail)
        if self.accepted != (self.refusal is None):
            raise _bad(k, "refusal", "must be given exactly when the contract is refused",
                       self.refusal)


@dataclass(frozen=True, kw_only=True)
class CommandMessage(_Message):
    """Hub to agent on `…/cmd`: one engine command (contracts.inputs.Command)."""

    KIND: ClassVar[str] = "command"
    MAX_BYTES: ClassVar[int] = 4 * 1024  # one command
    command: Command
    contract: str | None = None
    """The contract id the command is for (an agent runs several); absent from older hubs: then
    the agent gives it to every contract it runs (a WRITE to the one owning the point)."""

    def __post_init__(self) -> None:
        if not isinstance(self.command, Command):
            raise _bad(self.KIND, "command", "must be a Command", self.command)
        _str(self.KIND, "contract", self.contract, optional=True)

    def _body(self) -> dict[str, Any]:
        c = self.command
        body = {"kind": c.kind.value, "id": c.id, "point": c.point, "value": c.value}
        if self.contract is not None:
            body["contract"] = self.contract
        return body

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Decode and check a command. Raises EncodingError naming the field at fault."""
        body = decode_message(_sized(cls, data), cls.KIND, cls.VERSION)
        _check_names(cls.KIND, body, {"kind", "id", "point", "value", "contract"},
                     required={"kind", "id", "point", "value"})
        return cls(command=_command(cls.KIND, body), contract=body.get("contract"))


def _command(k: str, body: dict[str, Any]) -> Command:
    try:
        kind = CommandKind(body["kind"])
    except ValueError:
        raise _bad(k, "kind", f"must be one of {', '.join(CommandKind)}", body["kind"]) from None
    if kind is CommandKind.INTERLOCK:  # only an agent's own contracts trip each other
        raise _bad(k, "kind", "is the agent's own, never sent by a hub", body["kind"])
    _str(k, "id", body["id"])
    _str(k, "point", body["point"], optional=True)
    if body["value"] is not None and not _is_value(body["value"]):
        raise _bad(k, "value", "must be a number, true/false or null", body["value"])
    return Command(kind=kind, id=body["id"], point=body["point"], value=body["value"])


SAFE_STATES = ("unconfirmed", "confirmed")
"""Telemetry `safe`: whether the device's read-back shows the safe state yet (agent/safe_state.py)."""


MAX_FAULT_WORDS = 200
"""A point's fault in words is bounded (agent/faults.py writes at most this many characters)."""

MAX_TELEMETRY_FAULTS = 256
"""Failing points one telemetry message names (the first by name; the journal has every one):
256 x (name + words) stays well inside MAX_BYTES beside 2,048 values and the engine state."""


@dataclass(frozen=True, kw_only=True)
class Telemetry(_Message):
    """Agent to hub on `…/telemetry`: the device's truth, the engine's mode and step, the journal
    seq, and the running contract with its engine state (the hub projects an offline device from it).

    `values` is what the device shows: good read inputs and the read-back of write points, never
    the engine's belief; `commanded` is the engine's outputs; `read_ms` the epoch ms each value was
    last read good (its age). `safe` is None unless the engine holds its safe state, then whether
    the device confirms it; `trip` is the latched trip cause (e.g. "stale:level"); `faults` names
    each point whose read is failing now, in words (`exception 2 (illegal data address) at holding
    63`, "timeout"). The fields after `state` were added with defaults, so older payloads still
    decode."""

    KIND: ClassVar[str] = "telemetry"
    MAX_BYTES: ClassVar[int] = 512 * 1024
    """MAX_POINTS values plus the engine state (outputs, timers): ~100 kB at 2,048 points."""
    ts_ms: EpochMs
    values: tuple[tuple[str, Value], ...]
    mode: str
    step: str | None
    seq: int
    contract: str | None = None
    version: int | None = None
    state: Mapping[str, Any] | None = None
    commanded: tuple[tuple[str, Value], ...] = ()
    read_ms: tuple[tuple[str, int], ...] = ()
    safe: str | None = None
    trip: str | None = None
    faults: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        k = self.KIND
        _int(k, "ts_ms", self.ts_ms, maximum=MAX_EPOCH_MS)
        _pairs(k, "values", self.values, _is_value)
        _str(k, "mode", self.mode)
        _str(k, "step", self.step, optional=True)
        _int(k, "seq", self.seq)
        _str(k, "contract", self.contract, optional=True)
        _int(k, "version", self.version, minimum=1, optional=True, maximum=MAX_VERSION)
        if self.state is not None and not isinstance(self.state, Mapping):
            raise _bad(k, "state", "must be an engine state mapping", self.state)
        _pairs(k, "commanded", self.commanded, _is_value)
        _pairs(k, "read_ms", self.read_ms, lambda v: isinstance(v, int) and not isinstance(v, bool)
               and v >= 0)
        if self.safe is not None and self.safe not in SAFE_STATES:
            raise _bad(k, "safe", f"must be one of {', '.join(SAFE_STATES)} or null", self.safe)
        _str(k, "trip", self.trip, optional=True)
        _pairs(k, "faults", self.faults,
               lambda v: isinstance(v, str) and 0 < len(v) <= MAX_FAULT_WORDS)
        if len(self.faults) > MAX_TELEMETRY_FAULTS:
            raise _bad(k, "faults", f"must name at most {MAX_TELEMETRY_FAULTS} points",
                       len(self.faults))

    @classmethod
    def _from_body(cls, body: dict[str, Any]) -> dict[str, Any]:
        out = {**body, "values": _as_pairs(body.get("values"))}
        for name in ("commanded", "read_ms", "faults"):
            if name in body:
                out[name] = _as_pairs(body[name])
        return out


@dataclass(frozen=True, kw_only=True)
class HubBirth(_Message):
    """Hub to everyone, retained on `fp/v1/_hub/status` at every connect of the hub: which hub
    process (`boot`, new per start) is up since `ts_ms`. A new boot, or a new birth of the same
    boot (the hub reconnected and re-subscribed), tells agents to resend from the hub's ack."""

    KIND: ClassVar[str] = "hub_birth"
    boot: str
    ts_ms: EpochMs

    def __post_init__(self) -> None:
        _str(self.KIND, "boot", self.boot)
        if len(self.boot) > MAX_BOOT_ID:
            raise _bad(self.KIND, "boot", f"must be at most {MAX_BOOT_ID} characters",
                       self.boot[:MAX_BOOT_ID])
        _int(self.KIND, "ts_ms", self.ts_ms)
