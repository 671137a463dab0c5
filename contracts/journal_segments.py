"""A journal split into scan segments, per contract — pure.

A *segment* is one contract running from one engine state: a BOOT entry (engine state, t0, period)
and the entries its cycles wrote after it. An agent running several contracts interleaves their
segments in one journal:
- a BOOT opens the segment of its contract id, closing that contract's previous one, never
  another's;
- an entry tagged `of: X` (contracts/journal_events.py) belongs to X's open segment (none open:
  it is not replayable);
- an untagged entry belongs to the latest BOOT's segment — every journal written before several
  contracts per agent splits exactly as it always did.
Entries before the first BOOT belong to no segment. contracts/replay.py replays each segment.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from contracts.chain import Entry, EntryKind
from contracts.journal_events import BodyError, BootBody, decode_entry, tag_of


@dataclass(frozen=True, kw_only=True)
class Segment:
    """One scan segment: its BOOT (decoded, or why not) and the entries after it."""

    boot: Entry
    start: BootBody | BodyError
    entries: Sequence[Entry]


def segments(entries: Iterable[Entry]) -> Iterator[Segment]:
    """Split entries into scan segments (see the rules above), in the order their BOOTs came;
    entries before the first BOOT, or tagged for a contract with no open segment, are not
    replayable."""
    done: list[tuple[Entry, list[Entry]]] = []
    open_by: dict[str, tuple[Entry, list[Entry]]] = {}
    latest: list[Entry] | None = None
    for e in entries:
        if e.kind is EntryKind.BOOT:
            seg: tuple[Entry, list[Entry]] = (e, [])
            done.append(seg)
            open_by[boot_contract(e)] = seg
            latest = seg[1]
            continue
        tag = tag_of(e)
        if tag is None:
            if latest is not None:
                latest.append(e)
        elif tag in open_by:
            open_by[tag][1].append(e)
    for boot, body in done:
        yield _segment(boot, body)


def boot_contract(e: Entry) -> str:
    """The contract id a BOOT names, read without decoding (a bad BOOT is its own key)."""
    cid = e.body.get("contract") if isinstance(e.body, Mapping) else None
    return cid if isinstance(cid, str) else f"(bad boot at seq {e.seq})"


def _segment(boot: Entry, entries: Sequence[Entry]) -> Segment:
    try:
        start: BootBody | BodyError = _boot(boot)
    except BodyError as exc:
        start = exc
    return Segment(boot=boot, start=start, entries=entries)


def _boot(e: Entry) -> BootBody:
    body = decode_entry(e)
    assert isinstance(body, BootBody)  # decode gives a BOOT entry's record
    return body
