"""Structured, escaped log lines, installed by every CLI entry point (`configure_logging`, or
`log_to_file` for a command whose terminal shows its own story, like `fieldpact demo`).

A line is `<time> <LEVEL> <logger> <event> key=value ...` and one line is one event:
- Values that come from a record's args or `extra=` are quoted ("...") when they contain a space,
  a quote, `=`, a backslash, or any non-printable character (newline, CR, ESC, U+2028 ...); inside
  the quotes `\\`, `"` and non-printables are escaped (`\\n`, `\\r`, `\\t`, `\\x1b`, `\\u2028`). So
  a device name or a disconnect reason can neither start a new line nor fake a `key=`.
- Numbers are left alone (`%d`, `%.3f` still work).
- The formatted message is escaped again for non-printables: messages other libraries build with
  f-strings (amqtt quotes client-sent strings that way) cannot break the line either.
- A traceback becomes one escaped `exc="..."` field (`printf '%b'` shows it as lines again).
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

from runtime.files import FILE_MODE

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_NEEDS_QUOTES = frozenset(' "=\\')
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_char(c: str, *, quoting: bool) -> str:
    if c in _SHORT:
        return _SHORT[c]
    if not c.isprintable() and c != " ":
        code = ord(c)
        return f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000
                                                        else f"\\U{code:08x}")
    if quoting and c in '"\\':
        return "\\" + c
    return c


def quote(value: str) -> str:
    """`value` as a log field value: bare if safe, else double-quoted with escapes."""
    if value and not any(c in _NEEDS_QUOTES or not c.isprintable() for c in value):
        return value
    return '"' + "".join(_escape_char(c, quoting=True) for c in value) + '"'


def escape_text(text: str) -> str:
    """`text` with every non-printable character escaped (spaces kept): always one line."""
    if text.isprintable():
        return text
    return "".join(_escape_char(c, quoting=False) for c in text)


class _Field:
    """A record argument rendered quoted by both %s and %r."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __str__(self) -> str:
        return quote(str(self.value))

    def __repr__(self) -> str:
        return quote(repr(self.value))


def _field(value: object) -> object:
    return value if isinstance(value, int | float) else _Field(value)


def _message(record: logging.LogRecord) -> str:
    msg, args = str(record.msg), record.args
    if not args:
        return msg
    try:
        if isinstance(args, Mapping):
            return msg % {k: _field(v) for k, v in args.items()}
        return msg % tuple(_field(a) for a in args)
    except (TypeError, ValueError, KeyError):
        return f"{msg} args={quote(repr(args))}"


class EscapingFormatter(logging.Formatter):
    """The formatter described in the module docstring."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [self.formatTime(record), record.levelname, quote(record.name),
                 escape_text(_message(record))]
        parts += [f"{quote(str(k))}={quote(str(v))}" for k, v in vars(record).items()
                  if k not in _STANDARD and not k.startswith("_")]
        if record.exc_info:
            parts.append("exc=" + quote(self.formatException(record.exc_info)))
        if record.stack_info:
            parts.append("stack=" + quote(self.formatStack(record.stack_info)))
        return " ".join(parts)


def configure_logging(level: str | int = "INFO", stream: TextIO | None = None) -> logging.Handler:
    """Send the root logger's records through EscapingFormatter to `stream` (stderr), replacing
    any handlers already there. Returns the handler."""
    return _install(logging.StreamHandler(stream or sys.stderr), level)


def log_to_file(path: Path, level: str | int = "INFO") -> logging.Handler:
    """Send the root logger's records (ours and every library's that propagates) through
    EscapingFormatter to `path` alone, appended, the file created 0600; nothing reaches the
    terminal. Returns the handler (close it when done). Raises OSError if `path` cannot be opened."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE))
    return _install(logging.FileHandler(path, encoding="utf-8"), level)


def _install(handler: logging.Handler, level: str | int) -> logging.Handler:
    handler.setFormatter(EscapingFormatter())
    logging.basicConfig(level=level.upper() if isinstance(level, str) else level,
                        handlers=[handler], force=True)
    return handler
