"""A device's series window kept between requests: the page asks every 2 s for a window that moved
by a few entries, so only those are read, decoded and encoded (hub/series.py says what a series
is; this gives the same bytes as `series.encoded` over the same rows, tested).

Rules:
- A window is (device, limit): the rows `store.journal.rows(device, from_seq, limit)` gives for
  `from_seq = last_seq - limit + 1`; the answer names its span (`from_seq`, `from_ms`, `to_seq`),
  so a page can ask next time for what came after `to_seq` only (`after_seq`, hub/device_api.py). Each row's readings are kept per point as occurrences
  (seq, value, `changed` from the point's previous occurrence, the sample's JSON), so sliding the
  window drops occurrences at the front and appends the new rows' at the back. A series shows a
  point's first occurrence in the window and then those that changed: exactly what folding the
  window afresh shows (hub/series.py `_add` leaves out a repeat of the last value).
- A stored row never changes, but a window is only trusted while the store holds exactly the rows
  it kept: the number of stored rows in its span is checked on every request (one index count);
  rows that appeared inside it (a resent range) or went (a store rolled back), or a window that
  would have to grow backwards, are read again from scratch.
- At most MAX_WINDOWS windows are kept (least recently used dropped): a page charts one device.
- A few new rows are folded on the API's loop, more (a window read afresh) in the service's
  worker thread (INLINE_ROWS says why); a window's lock serialises requests for it. An encoded
  body is kept until the window, the head or the units change: polls of an unchanged journal
  cost a count query and no encoding; so is its gzip, for a client that accepts it (browsers do).
"""
from __future__ import annotations

import bisect
import functools
import gzip
import json
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from hub.series import NOT_DRAWN, SERIES_KINDS, Reader, encoded, readings, sample_of
from hub.store import HubStore, JournalRow

MAX_WINDOWS = 32
"""Windows kept: each operator's page charts one device; a window of 500 entries x 32 points is
~1.5 MB, one of the page's usual few points far less. A page whose window was dropped costs a
read afresh (tens of ms in a worker) on its next refresh, so this is sized for pages, not rows."""

INLINE_ROWS = 32
"""New rows folded on the API's event loop rather than in a worker thread: a few rows cost well
under a millisecond, less than handing the work to a thread and back (each handoff may wait out
the interpreter's 5 ms switch interval while the other thread runs). More go to the worker, so a
window read afresh (tens of milliseconds) never holds up the loop."""

GZIP_LEVEL = 6
"""zlib's default: a 500 x 32 window's 342 KiB of JSON become ~43 KiB in ~3-4 ms (level 1: ~70
KiB in ~1.5 ms), made once per change of the window and sent to every poll until the next. The
bytes on the wire, not the hub's work, are most of a request's wall time on a busy host: the
smaller answer gave the lower p99 in bench/series.py, idle and loaded."""

_COUNT = "SELECT count(*) FROM journal WHERE device = ? AND seq >= ? AND seq <= ?"


@dataclass(frozen=True, slots=True)
class _Occurrence:
    seq: int
    value: Any
    changed: bool
    json: bytes  # b"[ts_ms,value]"


class _Point:
    __slots__ = ("occurrences", "changes", "drawn")

    def __init__(self) -> None:
        self.occurrences: deque[_Occurrence] = deque()
        self.changes: deque[bytes] = deque()  # the JSON of the occurrences that changed
        self.drawn = 0  # occurrences with a value (not a gap): a point with none is not shown

    def add(self, seq: int, ts_ms: int, value: Any) -> None:
        last = self.occurrences[-1].value if self.occurrences else NOT_DRAWN
        changed = last is NOT_DRAWN or last != value
        # what json.dumps writes for the sample's value (an int, a finite float or None)
        text = b"null" if value is None else repr(value).encode()
        occ = _Occurrence(seq, value, changed, b"[%d,%s]" % (ts_ms, text))
        self.occurrences.append(occ)
        if changed:
            self.changes.append(occ.json)
        self.drawn += value is not None

    def drop_before(self, seq: int) -> None:
        occ = self.occurrences
        while occ and occ[0].seq < seq:
            gone = occ.popleft()
            self.drawn -= gone.value is not None
            if gone.changed:
                self.changes.popleft()

    def samples(self) -> bytes:
        """The first occurrence, then those that changed (the first may be one of them)."""
        first = self.occurrences[0]
        return b",".join(self.changes if first.changed else [first.json, *self.changes])


class Window:
    """One (device, limit) window (module rules)."""

    def __init__(self, from_seq: int) -> None:
        self.lock = threading.Lock()
        self.from_seq = from_seq
        self.rows: deque[tuple[int, int, int]] = deque()  # (seq, 1 entry | 2 skipped | 0, ts)
        self.points: dict[str, _Point] = {}
        self._body: tuple[Any, bytes] = (None, b"")  # the last encoding and what it was of

    @property
    def last_seq(self) -> int:
        return self.rows[-1][0] if self.rows else self.from_seq - 1

    def kept_from(self, from_seq: int) -> int:
        """How many of its rows have seq >= from_seq."""
        return len(self.rows) - bisect.bisect_left(self.rows, (from_seq, -1))

    def slide(self, from_seq: int, rows: Sequence[JournalRow], read: Reader) -> None:
        """Drop rows before `from_seq`, fold in `rows` (those after the last kept, in order)."""
        while self.rows and self.rows[0][0] < from_seq:
            self.rows.popleft()
        for p in self.points.values():
            p.drop_before(from_seq)
        self.from_seq = max(self.from_seq, from_seq)  # a raced request's older view: no going back
        for row in rows:
            if row.seq <= self.last_seq:
                continue  # read by a request that raced this one
            self.rows.append((row.seq, self._fold(row, read), row.ts_ms))
        self.points = {n: p for n, p in self.points.items() if p.occurrences}

    def _fold(self, row: JournalRow, read: Reader) -> int:
        if row.kind not in SERIES_KINDS:
            return 0
        values = read(row)
        if values is None:
            return 2
        for name, wire in values.items():
            value = sample_of(wire)
            if value is not NOT_DRAWN:
                point = self.points.get(str(name))
                if point is None:
                    point = self.points[str(name)] = _Point()
                point.add(row.seq, row.ts_ms, value)
        return 1

    def span(self, head: Mapping[str, Any]) -> dict[str, Any]:
        """`head` with the window's span: `from_seq` (its first seq: last_seq - limit + 1),
        `from_ms` (its first row's time, None when empty) and `to_seq` (its last row's seq)."""
        return {**head, "from_seq": self.from_seq,
                "from_ms": self.rows[0][2] if self.rows else None, "to_seq": self.last_seq}

    def encode(self, head: Mapping[str, Any], units: Mapping[str, str]) -> bytes:
        """The endpoint's body, as `series.encoded` gives it for the window's rows (the last one
        again while neither the rows, the head nor the units changed)."""
        key = (self.from_seq, self.last_seq, len(self.rows), tuple(head.items()),
               tuple(sorted(units.items())))
        if self._body[0] != key:
            self._body = (key, self._encode(head, units))
        return self._body[1]

    def _encode(self, head: Mapping[str, Any], units: Mapping[str, str]) -> bytes:
        points = [b'{"name":%s,"unit":%s,"samples":[%s]}' % (
            json.dumps(n).encode(), json.dumps(units.get(n)).encode(), p.samples())
            for n, p in sorted(self.points.items()) if p.drawn]
        entries = sum(1 for _, k, _ in self.rows if k == 1)
        skipped = sum(1 for _, k, _ in self.rows if k == 2)
        start = json.dumps(self.span(head), separators=(",", ":")).encode()
        tail = b'"points":[%s],"entries":%d,"skipped":%d}' % (b",".join(points), entries, skipped)
        return (start[:-1] + b"," + tail) if len(start) > 2 else b"{" + tail


class SeriesWindows:
    """The windows, by (device, limit). `request` runs on the API's loop (its store connection),
    the returned callable on the loop or in a worker thread (as it says)."""

    def __init__(self, read: Reader = readings, capacity: int = MAX_WINDOWS) -> None:
        self.read, self.capacity = read, capacity
        self._windows: OrderedDict[tuple[str, int], Window] = OrderedDict()
        self._lock = threading.Lock()
        self._gzipped: OrderedDict[int, tuple[bytes, bytes]] = OrderedDict()

    def gzipped(self, body: bytes) -> bytes | None:
        """The gzip of `body` if made already (a window's body object is the same while the
        window does not change), else None: make it with `gzip` (in a worker: zlib lets go of
        the interpreter while it works)."""
        with self._lock:
            found = self._gzipped.get(id(body))
            return found[1] if found is not None and found[0] is body else None

    def gzip(self, body: bytes) -> bytes:
        packed = gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0)
        with self._lock:
            self._gzipped[id(body)] = (body, packed)  # the body kept: its id stays its own
            while len(self._gzipped) > 2 * self.capacity:
                self._gzipped.popitem(last=False)
        return packed

    def request(self, store: HubStore, device: str, last_seq: int, limit: int,
                head: Mapping[str, Any], units: Mapping[str, str]
                ) -> tuple[Callable[[], bytes], bool]:
        """Read what the window lacks (only the new rows, or all of them when it cannot be
        trusted); returns the work that folds them in and encodes the body, and whether it is
        heavy (more than INLINE_ROWS rows to fold: give it to a worker thread)."""
        from_seq = max(0, last_seq - limit + 1)
        window = self._window(device, limit)
        with window.lock:
            last, kept = window.last_seq, window.kept_from(from_seq)
            trusted = from_seq >= window.from_seq and (kept == 0 or kept == int(
                store.db.conn.execute(_COUNT, [device, from_seq, last]).fetchone()[0]))
        if not trusted:
            window = self._replace(device, limit, from_seq)
            kept, last = 0, from_seq - 1
        rows = store.journal.rows(device, max(from_seq, last + 1), limit - kept) \
            if kept < limit else []

        def work() -> bytes:
            with window.lock:
                window.slide(from_seq, rows, self.read)
                return window.encode(head, units)
        return work, len(rows) > INLINE_ROWS

    def after(self, store: HubStore, device: str, last_seq: int, limit: int, after_seq: int,
              head: Mapping[str, Any], units: Mapping[str, str]
              ) -> tuple[Callable[[], bytes], bool]:
        """What the window holds after `after_seq` only (all of it when `after_seq` is before
        its start): those rows folded, with the window's span and `after_seq`. A page holding
        the window up to `after_seq` appends the samples (a repeat of its last value is none)
        and drops what is now before `from_ms`. As `request`: the work, and whether it is heavy."""
        from_seq = max(0, last_seq - limit + 1)
        first = store.journal.rows(device, from_seq, 1)
        # The window ends at last_seq: nothing is after it (nor read: after_seq + 1 may pass
        # SQLite's int64 when a client sends the largest seq the API takes).
        rows = [] if after_seq >= last_seq else store.journal.rows(
            device, max(from_seq, after_seq + 1), limit)
        span = {**head, "from_seq": from_seq, "from_ms": first[0].ts_ms if first else None,
                "to_seq": rows[-1].seq if rows else max(after_seq, from_seq - 1),
                "after_seq": after_seq}
        return functools.partial(encoded, span, rows, units, self.read), len(rows) > INLINE_ROWS

    def _window(self, device: str, limit: int) -> Window:
        with self._lock:
            key = (device, limit)
            found = self._windows.get(key)
            if found is None:
                found = self._windows[key] = Window(0)
                while len(self._windows) > self.capacity:
                    self._windows.popitem(last=False)
            self._windows.move_to_end(key)
            return found

    def _replace(self, device: str, limit: int, from_seq: int) -> Window:
        with self._lock:
            window = self._windows[(device, limit)] = Window(from_seq)
            return window
