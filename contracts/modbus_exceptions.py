"""Modbus exception codes in words — pure: what a device's exception answer means, for every
report an operator reads (journal records, telemetry, alarms, commissioning).

A BAD reading carries a device's exception answer as the short reason `exception:<code>` (what
guards, trip causes and the journaled inputs compare); reports say it in words, with the point's
address where they know it (`exception 2 (illegal data address) at holding 63`, agent/faults.py),
and keep the numeric code beside the words.
"""
from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

EXCEPTION_PREFIX = "exception:"
"""How a BAD reading's reason, or a failed write's, carries the device's exception code."""

EXCEPTION_WORDS: Mapping[int, str] = MappingProxyType({
    1: "illegal function", 2: "illegal data address", 3: "illegal data value",
    4: "server device failure", 5: "acknowledge", 6: "server device busy",
    8: "memory parity error", 10: "gateway path unavailable",
    11: "gateway target device failed to respond",
})
"""Modbus exception codes in words: Modbus Application Protocol v1.1b3, section 7."""


def exception_reason(code: int) -> str:
    """The short reason of a device's exception answer: `exception:2`."""
    return f"{EXCEPTION_PREFIX}{code}"


def exception_code(reason: object) -> int | None:
    """The Modbus exception code in a reason ("exception:2" → 2), None for any other reason."""
    if not isinstance(reason, str) or not reason.startswith(EXCEPTION_PREFIX):
        return None
    digits = reason[len(EXCEPTION_PREFIX):]
    return int(digits) if digits.isdigit() and len(digits) <= 3 else None


def exception_words(code: int, where: str | None = None) -> str:
    """`exception 2 (illegal data address)`, followed by ` at <where>` when given."""
    words = f"exception {code} ({EXCEPTION_WORDS.get(code, 'unknown')})"
    return f"{words} at {where}" if where else words


def reason_in_words(reason: str) -> str:
    """A reason with a device's exception said in words (`exception:2` → `exception 2 (illegal
    data address)`); any other reason as it is."""
    code = exception_code(reason)
    return reason if code is None else exception_words(code)
