"""Journal entry bodies of a fixed shape (all but the occurrences), as frozen records — pure.

Each record maps one-to-one onto the body map it is a view of: `to_body` gives the map the agent
hashes and stores, `from_body` reads one field by field (contracts/journal_fields.py). Use them
through contracts/journal_events.py (`encode`, `decode`), which states the version rule.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias

from contracts.chain import EntryKind
from contracts.engine_state import EngineState, Mode
from contracts.errors import EncodingError, Refusal
from contracts.inputs import Command, CommandKind, Reading, reading_from_wire
from contracts.journal_fields import TAGGED_VERSION, BodyError, FieldReader, versioned
from contracts.journal_occurrences import ContractChange, freeze
from contracts.types import EpochMs, PointName, Value

WireReading: TypeAlias = Sequence[Any]
"""A reading as journaled: [value, quality, reason]; its time is the entry's (contracts/inputs.py)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class BootBody:
    """A scan segment starts: the engine state it starts from and its clock (t0, period)."""

    KIND: ClassVar[EntryKind] = EntryKind.BOOT
    boot_id: str
    t0_ms: EpochMs
    period_ms: int
    contract: str
    version: int
    hash: str
    state: EngineState
    resumed: bool

    def to_body(self) -> dict[str, Any]:
        return {"boot_id": self.boot_id, "t0_ms": self.t0_ms, "period_ms": self.period_ms,
                "contract": self.contract, "version": self.version, "hash": self.hash,
                "state": self.state.to_mapping(), "resumed": self.resumed}

    @classmethod
    def from_body(cls, r: FieldReader) -> BootBody:
        try:
            state = EngineState.from_mapping(r.mapping("state"))
        except BodyError:
            raise
        except EncodingError as exc:
            raise r.fail("state", str(exc)) from None
        return cls(boot_id=r.text("boot_id"), t0_ms=r.integer("t0_ms"),
                   period_ms=r.integer("period_ms"), contract=r.text("contract"),
                   version=r.integer("version"), hash=r.text("hash"), state=state,
                   resumed=r.flag("resumed"))


@dataclass(frozen=True, kw_only=True, slots=True)
class InputBody:
    """The readings whose journaled view changed this cycle."""

    KIND: ClassVar[EntryKind] = EntryKind.INPUT
    values: Mapping[PointName, WireReading]
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def __post_init__(self) -> None:
        freeze(self, "values")

    def readings(self, ts_ms: EpochMs) -> dict[PointName, Reading]:
        """The readings, timed at `ts_ms` (the entry's). Raises ValueError for a malformed one."""
        return {name: reading_from_wire(w, ts_ms) for name, w in self.values.items()}

    def to_body(self) -> dict[str, Any]:
        return _tagged({"values": {n: list(w) for n, w in self.values.items()}}, self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> InputBody:
        return cls(contract=r.tag(), values=r.readings("values"))


@dataclass(frozen=True, kw_only=True, slots=True)
class KeyframeBody:
    """Once a minute: every point's view, the commanded outputs, the mode and the step."""

    KIND: ClassVar[EntryKind] = EntryKind.KEYFRAME
    values: Mapping[PointName, WireReading]
    outputs: Mapping[PointName, Value]
    mode: Mode
    step: str | None
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def __post_init__(self) -> None:
        freeze(self, "values", "outputs")

    def readings(self, ts_ms: EpochMs) -> dict[PointName, Reading]:
        return InputBody(values=self.values).readings(ts_ms)

    def to_body(self) -> dict[str, Any]:
        return _tagged({"values": {n: list(w) for n, w in self.values.items()},
                        "outputs": dict(self.outputs), "mode": self.mode.value, "step": self.step},
                       self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> KeyframeBody:
        mode = r.text("mode")
        if mode not in Mode.__members__.values():
            raise r.fail("mode", "is not an engine mode")
        return cls(contract=r.tag(), values=r.readings("values"), outputs=r.values("outputs"),
                   mode=Mode(mode), step=r.opt_text("step"))


@dataclass(frozen=True, kw_only=True, slots=True)
class OutputBody:
    """The engine's writes this cycle."""

    KIND: ClassVar[EntryKind] = EntryKind.OUTPUT
    writes: Mapping[PointName, Value]
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def __post_init__(self) -> None:
        freeze(self, "writes")

    def to_body(self) -> dict[str, Any]:
        return _tagged({"writes": dict(self.writes)}, self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> OutputBody:
        return cls(contract=r.tag(), writes=r.values("writes"))


@dataclass(frozen=True, kw_only=True, slots=True)
class ContractBody:
    """A contract accepted, refused, activated or due. Fields left None are left out of the body."""

    KIND: ClassVar[EntryKind] = EntryKind.CONTRACT
    event: ContractChange
    contract: str | None = None
    version: int | None = None
    hash: str | None = None
    signed: bytes | None = None
    refusal: Refusal | None = None
    detail: str | None = None

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"event": self.event.value}
        for key in ("contract", "version", "hash", "signed", "refusal", "detail"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value.value if isinstance(value, Refusal) else value
        return body

    @classmethod
    def from_body(cls, r: FieldReader) -> ContractBody:
        return cls(event=r.member("event", ContractChange), contract=r.opt_text("contract", present=False),
                   version=r.opt_integer("version", present=False),
                   hash=r.opt_text("hash", present=False), signed=r.opt_bytes("signed"),
                   refusal=r.member("refusal", Refusal) if "refusal" in r.body else None,
                   detail=r.opt_text("detail", present=False))


@dataclass(frozen=True, kw_only=True, slots=True)
class CommandBody:
    """A hub command the engine consumed this cycle."""

    KIND: ClassVar[EntryKind] = EntryKind.COMMAND
    command: Command
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def to_body(self) -> dict[str, Any]:
        c = self.command
        return _tagged({"kind": c.kind.value, "id": c.id, "point": c.point, "value": c.value},
                       self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> CommandBody:
        value = r._get("value", required=False)
        if value is not None and not isinstance(value, (bool, int, float)):
            raise r.fail("value", "must be a point value or null")
        return cls(contract=r.tag(), command=Command(
            kind=r.member("kind", CommandKind), id=r.text("id"),
            point=r.opt_text("point", present=False), value=value))


@dataclass(frozen=True, kw_only=True, slots=True)
class ConnectivityBody:
    """The hub became reachable or unreachable; the autonomy budget counts from last contact."""

    KIND: ClassVar[EntryKind] = EntryKind.CONNECTIVITY
    online: bool
    last_contact_ms: EpochMs | None
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def to_body(self) -> dict[str, Any]:
        return _tagged({"online": self.online, "last_contact_ms": self.last_contact_ms},
                       self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> ConnectivityBody:
        return cls(contract=r.tag(), online=r.flag("online"),
                   last_contact_ms=r.opt_integer("last_contact_ms"))


@dataclass(frozen=True, kw_only=True, slots=True)
class AdapterFaultBody:
    """A device read or write failed (the `adapters` failure category). `reason` says it in
    words an operator reads (`exception 2 (illegal data address) at holding 63`; "timeout",
    "disconnected"; "ok" when a read recovered); `code` is the device's Modbus exception code
    when it answered with one (a version 2 field: a version 1 body has none, its reason was
    "exception:2")."""

    KIND: ClassVar[EntryKind] = EntryKind.ADAPTER_FAULT
    CATEGORY: ClassVar[str] = "adapters"
    what: str
    reason: str
    point: PointName | None = None
    code: int | None = None
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"category": self.CATEGORY, "what": self.what,
                                "reason": self.reason, "point": self.point}
        if self.code is not None:
            body["code"] = self.code
        return versioned(body, self.contract, later=self.code is not None)

    @classmethod
    def from_body(cls, r: FieldReader) -> AdapterFaultBody:
        if r.text("category") != cls.CATEGORY:
            raise r.fail("category", f"must be {cls.CATEGORY!r}")
        code = r.opt_integer("code", present=False) if r.since(TAGGED_VERSION) else None
        return cls(contract=r.tag(), what=r.text("what"), reason=r.text("reason"),
                   point=r.opt_text("point"), code=code)


@dataclass(frozen=True, kw_only=True, slots=True)
class OverrunBody:
    """Stamped at the first missed deadline; the loop resumed at `resume_ms`."""

    KIND: ClassVar[EntryKind] = EntryKind.OVERRUN
    late_ms: int
    skipped: int
    resume_ms: EpochMs
    contract: str | None = None  # the tag (CONTRACT_TAG): whose segment wrote it

    def to_body(self) -> dict[str, Any]:
        return _tagged({"late_ms": self.late_ms, "skipped": self.skipped,
                        "resume_ms": self.resume_ms}, self.contract)

    @classmethod
    def from_body(cls, r: FieldReader) -> OverrunBody:
        return cls(contract=r.tag(), late_ms=r.integer("late_ms"), skipped=r.integer("skipped"),
                   resume_ms=r.integer("resume_ms"))


@dataclass(frozen=True, kw_only=True, slots=True)
class GapBody:
    """The agent dropped seqs `dropped_from..dropped_to` before the hub had them."""

    KIND: ClassVar[EntryKind] = EntryKind.GAP
    dropped_from: int
    dropped_to: int
    reason: str

    def to_body(self) -> dict[str, Any]:
        return {"dropped_from": self.dropped_from, "dropped_to": self.dropped_to,
                "reason": self.reason}

    @classmethod
    def from_body(cls, r: FieldReader) -> GapBody:
        return cls(dropped_from=r.integer("dropped_from"), dropped_to=r.integer("dropped_to"),
                   reason=r.text("reason"))


@dataclass(frozen=True, kw_only=True, slots=True)
class HubGapBody:
    """The hub's own record of a hole in a device's journal (never an agent entry)."""

    KIND: ClassVar[EntryKind] = EntryKind.GAP
    RECORDED_BY: ClassVar[str] = "hub"
    missing_from: int
    missing_to: int
    reason: str

    def to_body(self) -> dict[str, Any]:
        return {"missing_from": self.missing_from, "missing_to": self.missing_to,
                "reason": self.reason, "recorded_by": self.RECORDED_BY}

    @classmethod
    def from_body(cls, r: FieldReader) -> HubGapBody:
        r.text("recorded_by")
        return cls(missing_from=r.integer("missing_from"), missing_to=r.integer("missing_to"),
                   reason=r.text("reason"))


def _tagged(body: dict[str, Any], contract: str | None) -> dict[str, Any]:
    return versioned(body, contract)
