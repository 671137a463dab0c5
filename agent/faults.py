"""Adapter faults in words — pure: what the journal's ADAPTER_FAULT record and telemetry say of a
point whose read or write failed, for an operator to act on.

Rules:
- A device that answers with a Modbus exception is named with its code, the code's meaning and the
  point's address: `exception 2 (illegal data address) at holding 63` (Modbus Application Protocol
  v1.1b3, section 7; contracts/modbus_exceptions.py). The numeric code is kept beside the words
  (the record's `code` field), so a policy or a health gate never parses a sentence.
- The BAD reading itself keeps its short reason ("exception:2", "timeout", ...): guards, trip
  causes and the journaled inputs compare it, and the engine sees it. Only what is *reported*
  about the fault is in words.
- A reason that is no device answer ("timeout", "disconnected", "decode") is already a word; it is
  reported as it is, with no code.
"""
from __future__ import annotations

from dataclasses import dataclass

from agent.errors import DeviceLinkError
from agent.link import exception_words
from contracts.modbus_exceptions import exception_code
from contracts.schema import Point
from contracts.wire import MAX_FAULT_WORDS

MAX_WORDS = MAX_FAULT_WORDS
"""A fault's words are bounded: they travel in every telemetry message while the fault lasts."""


@dataclass(frozen=True, kw_only=True, slots=True)
class FaultWords:
    """A fault as reported: `reason` in words, `code` the Modbus exception code (None if the
    device did not answer with one)."""

    reason: str
    code: int | None = None


def in_words(reason: str | None, point: Point | None) -> FaultWords:
    """`reason` (a BAD reading's, or a DeviceLinkError's) as an operator reads it, for `point`
    (None: a fault of no one point, reported as it is)."""
    code = exception_code(reason)
    if code is None or point is None:
        return FaultWords(reason=(reason or "bad")[:MAX_WORDS], code=code)
    return FaultWords(reason=exception_words(code, point.table, point.address), code=code)


def write_fault(exc: DeviceLinkError, point: Point) -> FaultWords:
    """A failed write of `point` as reported: the device's exception in words with its code, else
    the error as it is (`timeout: write pump_speed=1000 at unit 1 holding:20`)."""
    if exc.code is None:
        return FaultWords(reason=str(exc)[:MAX_WORDS])
    return in_words(exc.reason, point)
