"""Modicon notation: the table-prefixed, 1-based register numbers of PLC manuals and I/O lists.

The rule (Modicon convention, as used by most device manuals; the wire carries only the 0-based PDU
address, Modbus Application Protocol v1.1b3 section 4.4):
- The first digit names the table: 0 coil, 1 discrete input, 3 input register, 4 holding register
  (2 is unused).
- The remaining digits are a 1-based register number: offset = number - 1. `40001` is holding
  offset 0, `40021` is holding offset 20, `00013` is coil offset 12.
- Five digits (`4xxxx`) reach numbers 1..9999 (offsets 0..9998); six digits (`4xxxxx`, "extended")
  reach 1..65536, every 16-bit offset. Number 0 (`40000`, `400000`) does not exist.
- Only the text form carries a table: an integer address in a contract is always the 0-based offset
  (an unquoted `40021` in YAML is holding offset 40021, so Modicon addresses are written quoted).

`format` writes the 5-digit form where it reaches, else the 6-digit one; `describe` shows both
notations together (`holding 20 (40021)`) for messages and listings.
"""
from __future__ import annotations

from dataclasses import dataclass

from contracts.limits import quote
from contracts.schema import Table

PREFIX = {Table.COIL: "0", Table.DISCRETE: "1", Table.INPUT: "3", Table.HOLDING: "4"}
"""The leading digit of each table's addresses (the Modicon 0x/1x/3x/4x references)."""

_TABLE = {digit: table for table, digit in PREFIX.items()}

FIVE_DIGIT_MAX = 9999
"""Highest register number in the 5-digit form; larger offsets need the 6-digit form."""

SIX_DIGIT_MAX = 0x10000
"""Highest register number in the 6-digit form: 65536, i.e. offset 65535, the last 16-bit address."""

_HELP = ("a Modicon address is 5 or 6 digits: 0xxxx coil, 1xxxx discrete input, 3xxxx input"
         " register, 4xxxx holding register, numbered from 1")


class NotModicon(ValueError):
    """Text that is not a Modicon address; the message says why and what the form is."""


@dataclass(frozen=True, kw_only=True)
class Reference:
    """A table and a 0-based offset in it, as named by a Modicon address."""

    table: Table
    offset: int


def parse(text: str) -> Reference:
    """The table and 0-based offset `text` names. Raises NotModicon with the reason."""
    if not (text.isascii() and text.isdigit() and len(text) in (5, 6)):
        raise NotModicon(f"{quote(text)} is not a Modicon address ({_HELP})")
    table = _TABLE.get(text[0])
    if table is None:
        raise NotModicon(f"{quote(text)} starts with {text[0]}, which names no table ({_HELP})")
    number = int(text[1:])
    most = FIVE_DIGIT_MAX if len(text) == 5 else SIX_DIGIT_MAX
    if not 1 <= number <= most:
        raise NotModicon(f"{quote(text)} has register number {number}; {len(text)}-digit"
                         f" addresses number 1..{most}")
    return Reference(table=table, offset=number - 1)


def format(table: Table, offset: int) -> str:
    """The Modicon address of `offset` in `table`: 5 digits where they reach, else 6."""
    if not 0 <= offset < SIX_DIGIT_MAX:
        raise ValueError(f"offset {offset} is outside 0..65535")
    number = offset + 1
    digits = 4 if number <= FIVE_DIGIT_MAX else 5
    return f"{PREFIX[table]}{number:0{digits}d}"


def describe(table: Table, offset: int) -> str:
    """Both notations: `holding 20 (40021)`."""
    return f"{table.value} {offset} ({format(table, offset)})"
