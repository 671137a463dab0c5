"""Journal entry bodies as typed, versioned records — pure; the one definition of the format.

The agent writes these records and the hub reads them; both go through `encode` / `decode`, and no
other module spells an event name or a body key. A record is a view over the CBOR map the chain
hashes (contracts/chain.py): `encode(decode(kind, body)) == body` for every body the agent writes,
so journals written before this module still verify and read the same.

    kind           record              body
    BOOT           BootBody            {boot_id, t0_ms, period_ms, contract, version, hash, state, resumed}
    INPUT          InputBody           {values: {name: [value, quality, reason]}}   the journaled view changed
    KEYFRAME       KeyframeBody        {values, outputs: {name: value}, mode, step}
    OUTPUT         OutputBody          {writes: {name: value}}                      the engine's writes
    STEP           StepBody            {event, ...}   started / step_* / completed / failed
    TRIP           TripBody            {event, ...}   guard_trip / safe_state / autonomy_exhausted / ...
    REFUSAL        RefusalBody         {event, ...}   write_refused / command_refused / stored_contract_refused
    EVENT          EventBody           {event, ...}   every other engine or agent event
    CONTRACT       ContractBody        {event, contract?, version?, hash?, signed?, refusal?, detail?}
    COMMAND        CommandBody         {kind, id, point, value}   a hub command the engine consumed
    CONNECTIVITY   ConnectivityBody    {online, last_contact_ms}
    ADAPTER_FAULT  AdapterFaultBody    {category: "adapters", what, reason, point, code?}  reason in words
    OVERRUN        OverrunBody         {late_ms, skipped, resume_ms}
    GAP            GapBody             {dropped_from, dropped_to, reason}   the agent's forced drop
                   HubGapBody          {missing_from, missing_to, reason, recorded_by: "hub"}
    CHECKPOINT     (none: checkpoints are a journal table, never an entry; decode refuses the kind)

Several contracts per agent: every body a contract's scan segment writes (all kinds but BOOT,
CONTRACT and GAP, which name their contract or none) carries the tag `"of": contract id`
(`CONTRACT_TAG`, the record's `contract` field; `tag_items` adds it). An entry without the tag
belongs to the latest BOOT — every journal written before several contracts per agent reads as it
always did — or, for the agent's own events (agent_started, uplink_failed, ...), to no segment.

The records live in contracts/journal_bodies.py (fixed shapes) and contracts/journal_occurrences.py
(event names and occurrences); import them from here.

Version rule. A body's version is its `"v"` key, 1 when it has none. Any change to a record's
fields or their meaning bumps the version; a writer writes each body in the lowest version that
has its fields, so a body of an older shape keeps its older bytes; readers read every version in
`READ_VERSIONS`.

    version  adds                                                     written by
    1        every record as tabled above, no `"v"` key               every build (untagged bodies)
    2        `"of"` (the contract tag) on any taggable kind;          a body that names its
             `code` (the Modbus exception code) on ADAPTER_FAULT,     contract or holds a code
             whose `reason` is then in words

So `BODY_VERSION` (2) is the newest version written, not the version of every body: an untagged
body (the agent's own events, BOOT, CONTRACT, GAP, a single-contract journal's entries) is still
version 1 and hashes as before. The journals written between several contracts per agent and this
rule carry the tag in version 1 bodies (no `"v"`); readers take the tag in version 1 too, so those
journals still verify and read the same — their stored bytes are what the chain hashes, never a
re-encoding (which would stamp `"v": 2`). Version 1's `code` does not exist: a version 1 body with
one is refused. `encode(decode(kind, body)) == body` for every body this build writes.

`decode` refuses a `"v"` it does not know, a missing or mistyped field and a key the record (in
that version) does not have, with a `BodyError` naming the kind, the field and a bounded quote of
the value. Event names are an open set within a version: a name this build does not know (a newer
agent's) is kept as its string, and readers pass by the names they do not act on.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, TypeAlias

from contracts.chain import Entry, EntryKind
from contracts.engine_state import EventKind
from contracts.journal_bodies import (
    AdapterFaultBody, BootBody, CommandBody, ConnectivityBody, ContractBody, GapBody, HubGapBody,
    InputBody, KeyframeBody, OutputBody, OverrunBody, WireReading,
)
from contracts.journal_fields import (
    CONTRACT_TAG, READ_VERSIONS, TAGGED_VERSION, VERSION_KEY, BodyError, FieldReader, versioned,
)
from contracts.journal_occurrences import (
    ENGINE_EVENT_KIND, OCCURRENCE, AgentEvent, ContractChange, EventBody, EventName, Occurrence,
    RefusalBody, StepBody, TripBody, agent_event_body, engine_event_body,
)
from contracts.types import EpochMs

__all__ = [
    "BODY_VERSION", "CONTRACT_TAG", "ENGINE_EVENT_KIND", "READ_VERSIONS", "TAGGED_VERSION",
    "VERSION_KEY", "AdapterFaultBody", "AgentEvent", "Body", "BodyError",
    "BootBody", "CommandBody", "ConnectivityBody", "ContractBody", "ContractChange", "EventBody",
    "EventKind", "EventName", "GapBody", "HubGapBody", "InputBody", "Item", "KeyframeBody",
    "Occurrence", "OutputBody", "OverrunBody", "RefusalBody", "StepBody", "TripBody",
    "WireReading", "agent_event_body", "decode", "decode_entry", "encode", "engine_event_body",
    "belongs_to", "item", "tag_items", "tag_of",
]

BODY_VERSION = TAGGED_VERSION
"""The newest body version this build writes (tagged bodies and adapter faults with a code); an
untagged body is still written as version 1 (see the version rule above)."""

Body: TypeAlias = (
    "BootBody | InputBody | KeyframeBody | OutputBody | StepBody | TripBody | RefusalBody"
    " | EventBody | ContractBody | CommandBody | ConnectivityBody | AdapterFaultBody"
    " | OverrunBody | GapBody | HubGapBody")
"""Any journal entry body."""

Item: TypeAlias = "tuple[EntryKind, dict[str, Any], EpochMs]"
"""(kind, encoded body, ts) as the agent's journal appends it."""

_DECODERS: Mapping[EntryKind, Callable[[FieldReader], Body]] = MappingProxyType({
    EntryKind.BOOT: BootBody.from_body, EntryKind.INPUT: InputBody.from_body,
    EntryKind.KEYFRAME: KeyframeBody.from_body, EntryKind.OUTPUT: OutputBody.from_body,
    **{kind: cls.from_body for kind, cls in OCCURRENCE.items()},
    EntryKind.CONTRACT: ContractBody.from_body, EntryKind.COMMAND: CommandBody.from_body,
    EntryKind.CONNECTIVITY: ConnectivityBody.from_body,
    EntryKind.ADAPTER_FAULT: AdapterFaultBody.from_body, EntryKind.OVERRUN: OverrunBody.from_body,
    EntryKind.GAP: lambda r: (HubGapBody if r.body.get("recorded_by") == HubGapBody.RECORDED_BY
                              else GapBody).from_body(r),
})


def encode(body: Body) -> dict[str, Any]:
    """The plain map the journal hashes and stores for `body` (CBOR-able values only)."""
    return body.to_body()


def decode(kind: EntryKind | str, body: Any) -> Body:
    """The record for a body of `kind`. Raises BodyError naming the kind, the first bad field and
    a bounded quote of its value: an unknown kind or version, a missing, mistyped or extra field."""
    try:
        known = kind if type(kind) is EntryKind else EntryKind(kind)
    except ValueError:
        raise BodyError(str(kind)[:40], "(kind)", kind, "is not an entry kind") from None
    decoder = _DECODERS.get(known)
    if decoder is None:
        raise BodyError(known, "(kind)", known.value, "has no body: it is never journaled")
    reader = FieldReader(known, body, READ_VERSIONS)
    record = decoder(reader)
    reader.done()
    return record


def decode_entry(entry: Entry) -> Body:
    """`decode(entry.kind, entry.body)`."""
    return decode(entry.kind, entry.body)


def item(body: Body, ts_ms: EpochMs) -> Item:
    """The journal item for `body` at `ts_ms`."""
    return (body.KIND, encode(body), ts_ms)


UNTAGGED = frozenset({EntryKind.BOOT, EntryKind.CONTRACT, EntryKind.GAP, EntryKind.CHECKPOINT})
"""Kinds that never carry the tag: a BOOT and a CONTRACT entry name their contract in their own
fields, a GAP belongs to the whole journal."""


def tag_items(items: list[Item], contract: str) -> list[Item]:
    """`items` with every body of a taggable kind tagged as written by `contract`'s segment, so
    of version 2 (in place: the bodies are fresh maps of this cycle)."""
    for kind, body, _ in items:
        if kind not in UNTAGGED:
            versioned(body, contract)
    return items


def tag_of(entry: Entry) -> str | None:
    """The contract tag of an entry, without decoding the rest of its body (None if untagged)."""
    body = entry.body
    tag = body.get(CONTRACT_TAG) if isinstance(body, Mapping) else None
    return tag if isinstance(tag, str) else None


def belongs_to(entry: Entry, contract: str) -> bool:
    """Whether `entry` can be part of contract id `contract`'s run: tagged for it, a BOOT of it,
    or untagged (an older agent's entry, or the agent's own). A hub reading one contract's run
    from a device running several passes by the others' entries."""
    if entry.kind is EntryKind.BOOT:
        body = entry.body
        return not isinstance(body, Mapping) or body.get("contract") == contract
    tag = tag_of(entry)
    return tag is None or tag == contract
