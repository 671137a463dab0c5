"""Bounds on untrusted input, and the one way an error quotes a piece of it.

Every document, request body and MQTT payload comes from someone we do not trust (DESIGN invariant
10). Rules of this module:
- Every input is bounded in size (bytes), depth (nesting) and count (points, steps, issues) *before*
  anything walks it; the constants below carry their reasons and the README lists them.
- Integers that are stored or counted (version, seq, durations) have documented ranges, so no
  2^63 or 10^4000 ever reaches SQLite, a float() or a bignum tag.
- An error, alarm detail or log line quotes at most QUOTE_CHARS characters of a value (`quote`,
  the one quoting rule of contracts, agent and hub), built with a bounded repr that never walks
  more than a few items: repr() of a shared-reference graph (YAML aliases, CBOR
  tags 28/29) is exponential, and a 1.7 KB body once produced a 52 MB error message.
"""
from __future__ import annotations

import reprlib

QUOTE_CHARS = 80
"""Longest piece of an input value an error message may carry (its ellipsis included)."""

MAX_DOCUMENT_BYTES = 1 << 20
"""A contract document (YAML/JSON file or request body). Contracts are a few kilobytes; the largest
allowed (MAX_POINTS points) is 230-450 kB as YAML; a megabyte is a wrong file or an attack."""

MAX_DOCUMENT_DEPTH = 16
"""Nesting of a contract document: the deepest legal path is points[i].range[0] (4 levels); 16
leaves room for anything an editor adds while staying far below Python's recursion limit."""

MAX_CONTRACT_BYTES = 1 << 20
"""A signed contract (COSE_Sign1 over canonical CBOR) on `…/contract`: MAX_POINTS fully explicit
points encode to about 430 kB; a megabyte is refused before it is decoded or verified."""

MAX_CBOR_DEPTH = 32
"""Nesting of a CBOR payload. The deepest real message (telemetry carrying an engine state, or a
journal batch of entries whose body holds a value triple) is about 10 levels deep."""

MAX_POINTS = 2048
"""Points per contract: a field controller's I/O table is tens to hundreds of rows; 2,048 covers a
large skid and keeps validation and one scan's reads bounded."""

MAX_STEPS = 256
"""Steps per contract: a workflow longer than a few dozen steps belongs in several contracts."""

MAX_ISSUES = 200
"""Issues reported (and audited) for one document; the rest are counted in a final issue. A 1 MiB
body of bad keys would otherwise produce tens of megabytes of error text."""

MAX_VERSION = 2**31 - 1
"""Contract versions: one a second for 68 years; fits every store and wire integer."""

MAX_SEQ = 2**53 - 1
"""Journal seqs (and acks): exact in a JSON number and a double, so the API and the operator page
show them exactly, and seq + 1 never overflows SQLite's signed 64-bit INTEGER. At 1,000 entries a
second it lasts 285,000 years."""

MAX_EPOCH_MS = 2**53 - 1
"""Timestamps in epoch ms (telemetry, journal entries): exact as a double, year 287,396."""

MAX_TIMER_MS = 86_400_000
"""stale_after_ms / frozen_after_ms: a value that may be a day old is not guarded at all."""

MAX_AUTONOMY_S = 366 * 86_400
"""Offline autonomy: a year; contracts are valid for days, so a longer budget is a typo."""

MAX_NUMBER = 2.0**53
"""Largest magnitude of an integer written where a number is expected (scale, limits, do values):
beyond it a float is inexact and a huge int would overflow float() (10^4000 once crashed the hub)."""

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, QUOTE_CHARS, QUOTE_CHARS, 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = _REPR.maxfrozenset = 4


def quote(value: object, limit: int = QUOTE_CHARS, *, bare: bool = False) -> str:
    """A rendering of `value` for an error, an alarm detail or a log line, at most `limit`
    characters (the last one '…' when cut), whatever its size or shape: a bounded repr that walks
    at most a few items two levels deep, never the whole value.

    `bare`: a string is shown as its own text instead of its repr (a device's or peer's words in
    a detail: `names contract x@1`, not `'x@1'`), and the whole rendering is escaped to one
    printable ASCII line, so a quoted claim can never forge a second log line or field."""
    if bare and isinstance(value, str):
        text = value[: limit * 2]
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        text = f"<integer of {value.bit_length()} bits>"  # int repr is quadratic in its digits
    else:
        text = _REPR.repr(value)
    if bare:
        text = text.encode("unicode_escape").decode("ascii")
    return clip(text, limit)


def clip(text: str, limit: int = QUOTE_CHARS) -> str:
    """`text` (an identifier or key taken from input, used in a path) cut to `limit` characters."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
