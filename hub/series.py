"""A device's recent values as time series, from its own journal — pure: rows and units in, JSON out.

Rules:
- The values are the journal's readings (INPUT entries: the readings whose journaled view
  changed; KEYFRAME entries: every point's view): the device's own record, read-back included,
  never the engine's belief. A value holds until the next entry changes it, so a chart draws steps.
- Only good, finite numeric readings are samples (a bool is 0/1); a bad reading (or a NaN or
  infinite float, which JSON cannot carry) ends the series' run with a gap (`null`), so a chart
  never joins across a time the device could not read the point.
- Folding a full window (1,000 entries of 32 points) takes tens of milliseconds: the endpoint runs
  it, and the JSON encoding, in the service's worker thread, never on the event loop. A stored
  entry never changes, so its decoded readings are kept by entry hash (`DecodedRows`, bounded):
  the page asks every refresh for a window that moved by a few entries.
- A body that does not decode (device input: DESIGN invariant 10) is passed by and counted.
- Units come from the contract the device runs (`points[].unit`); a point without one has none.
"""
from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeAlias

from contracts import codec
from contracts.chain import EntryKind
from contracts.errors import EncodingError
from contracts.journal_events import BodyError, InputBody, KeyframeBody, decode
from contracts.inputs import Quality
from hub.store import JournalRow

SERIES_KINDS = frozenset({EntryKind.INPUT.value, EntryKind.KEYFRAME.value})
GOOD = Quality.GOOD.value
DEFAULT_ENTRIES = 500
"""Journal entries scanned by default: minutes of a 1 Hz device whose inputs move every cycle."""



def units_of(document: Any) -> dict[str, str]:
    """`{point: unit}` of a stored contract document (points without a unit are left out)."""
    points = document.get("points") if isinstance(document, Mapping) else None
    if not isinstance(points, list):
        return {}
    return {p["name"]: p["unit"] for p in points
            if isinstance(p, Mapping) and isinstance(p.get("name"), str)
            and isinstance(p.get("unit"), str)}


def _number(value: Any) -> float | int | None:
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int or kind is bool:
        return int(value)
    return None


Reader: TypeAlias = "Callable[[JournalRow], Mapping[str, Any] | None]"
"""A row's readings, or None when its body does not decode (`readings`, or a DecodedRows)."""

MAX_DECODED_ROWS = 2048
"""Decoded entries kept: two full windows, or four of the page's; a 32-point entry's readings are
a few kB, so this stays around 10 MB at worst."""


def readings(row: JournalRow) -> Mapping[str, Any] | None:
    """The readings of an INPUT or KEYFRAME row; None for a body that does not decode."""
    try:
        record = decode(row.kind, codec.loads(row.body))
    except (EncodingError, BodyError, ValueError):
        return None
    return record.values if isinstance(record, (InputBody, KeyframeBody)) else None


class DecodedRows:
    """`readings(row)` by the row's entry hash (a stored entry never changes), the least recently
    used dropped past `capacity`. Thread-safe: folds run in the worker's threads."""

    def __init__(self, capacity: int = MAX_DECODED_ROWS) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[tuple[str, bytes], Mapping[str, Any] | None] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, row: JournalRow) -> Mapping[str, Any] | None:
        key = (row.device, row.hash)
        with self._lock:
            if key in self._rows:
                self._rows.move_to_end(key)
                return self._rows[key]
        found = readings(row)
        with self._lock:
            self._rows[key] = found
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)
        return found


def fold(rows: Iterable[JournalRow], units: Mapping[str, str],
         read: Reader = readings) -> dict[str, Any]:
    """Series per point from journal rows in seq order (`read` gives a row's readings):
    `{"points": [{name, unit, samples: [[ts_ms, value|null], ...]}], "entries", "skipped"}`."""
    samples: dict[str, list[list[Any]]] = {}
    entries = skipped = 0
    for row in rows:
        if row.kind not in SERIES_KINDS:
            continue
        values = read(row)
        if values is None:
            skipped += 1
            continue
        entries += 1
        for name, wire in values.items():
            _add(samples.setdefault(str(name), []), row.ts_ms, wire)
    points = [{"name": n, "unit": units.get(n), "samples": s}
              for n, s in sorted(samples.items()) if any(v is not None for _, v in s)]
    return {"points": points, "entries": entries, "skipped": skipped}


NOT_DRAWN = object()
"""`sample_of` a reading that is not a number (a string point): nothing to draw."""


def sample_of(wire: Any) -> Any:
    """The sample of a reading: its number when good and finite, None (a gap) when bad or not
    finite, NOT_DRAWN for a string."""
    if len(wire) == 3 and wire[1] == GOOD:  # decode() checked it is a [value, quality, reason]
        raw = wire[0]
        if type(raw) is str or type(raw) is bytes:
            return NOT_DRAWN
        return _number(raw)
    return None


def _add(series: list[list[Any]], ts_ms: int, wire: Any) -> None:
    """Append [ts, value] for a good numeric reading, [ts, None] for a bad or non-finite one (a
    gap); a repeat of the last value is left out (a keyframe restates every point)."""
    value = sample_of(wire)
    if value is NOT_DRAWN or series and series[-1][1] == value:
        return
    series.append([ts_ms, value])


def encoded(head: Mapping[str, Any], rows: Iterable[JournalRow], units: Mapping[str, str],
            read: Reader = readings) -> bytes:
    """The endpoint's JSON body: `head` and the fold of `rows` (runs in a worker thread)."""
    return json.dumps({**head, **fold(rows, units, read)}, separators=(",", ":")).encode()
