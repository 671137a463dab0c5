"""How `runtime.settings` turns one raw value into a typed one, and the error that names it.

Each cast takes the value and whether it came from the environment (`text`): a TOML file carries
types (`port = 502`, `enabled = true`), so a file value must already have the right one; an
environment variable is always text, parsed the way TOML would write the value. A cast raises
TypeError or ValueError with the reason only; the reader adds the key, the file and the variable.
"""
from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, TypeVar

from contracts.limits import quote

SHOWN_CHARS = 80
"""Errors quote at most this much of a value: enough to recognise it, never a whole file."""

_TRUE, _FALSE = ("true", "1"), ("false", "0")  # Starlette's config.py accepts the same
N = TypeVar("N", int, float)


class Missing(enum.Enum):
    MISSING = 0


MISSING: Final = Missing.MISSING
"""No value (and, as a getter's default, no default: the key is required)."""


class ConfigError(ValueError):
    """A configuration value missing, malformed, out of range or unknown. Names the key (dotted
    path), the file and the environment variable that set or could set it."""

    def __init__(self, key: str, value: Any, reason: str, *, file: Path | None = None,
                 env: str | None = None, from_env: bool = False) -> None:
        self.key, self.value, self.reason, self.file, self.env = key, value, reason, file, env
        head = f"config {key}" if value is MISSING else f"config {key}={quote(value, SHOWN_CHARS)}"
        super().__init__(f"{head}: {reason}{_where(key, file, env, from_env)}")


def _where(key: str, file: Path | None, env: str | None, from_env: bool) -> str:
    """` [file F, variable V]`, or ` [variable V, over file F]` when the value came from V."""
    file_part = [f"file {file}"] if file else []
    var_part = [f"variable {env}"] if env and env != key else []
    parts = var_part + [f"over {p}" for p in file_part] if from_env else file_part + var_part
    return f" [{', '.join(parts)}]" if parts else ""


def as_str(value: Any, text: bool) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("must be a non-empty string")
    return value


def as_int(value: Any, text: bool) -> int:
    return _number(value, text, int, (int,), "an integer")


def as_float(value: Any, text: bool) -> float:
    """A number: an integer or a float (`0.5`); booleans are not numbers."""
    return _number(value, text, float, (int, float), "a number")


def _number(value: Any, text: bool, kind: Callable[[Any], N], types: tuple[type, ...],
            what: str) -> N:
    """`value` as `kind`: parsed from text, else one of `types` (never a bool)."""
    if text:
        try:
            return kind(value.strip())
        except ValueError:
            raise ValueError(f"must be {what}") from None
    if isinstance(value, bool) or not isinstance(value, types):
        raise TypeError(f"must be {what}")
    return kind(value)


def as_bool(value: Any, text: bool) -> bool:
    if text and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    if not text and isinstance(value, bool):
        return value
    raise TypeError("must be true or false")


def as_strings(value: Any, text: bool) -> tuple[str, ...]:
    """A non-empty array of non-empty strings; comma-separated in the environment."""
    items = [s.strip() for s in value.split(",")] if text else value
    if not isinstance(items, list) or not items or not all(isinstance(s, str) and s for s in items):
        raise TypeError("must be a non-empty array of strings")
    return tuple(items)


def as_labels(value: Any, text: bool) -> dict[str, str]:
    if text:
        raise TypeError("is a table of strings: set it in the file")
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in value.items()):
        raise TypeError("must be a table of string labels")
    return dict(value)
