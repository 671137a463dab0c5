"""The reading side of `runtime.settings`: one `Table` per TOML table with the typed getters,
and the `Reader` they share, which records every key and variable asked for so that it can
refuse the rest.
"""
from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from runtime.settings_values import (MISSING, ConfigError, Missing, as_bool, as_float, as_int,
                                     as_labels, as_str, as_strings)

T = TypeVar("T")
D = TypeVar("D")
E = TypeVar("E", bound=enum.Enum)


@dataclass(eq=False)
class Reader:
    """What all tables of one reading share: the sources, and what was asked and consumed."""

    file: Path | None
    env: Mapping[str, str]  # the prefixed variables only
    prefix: str
    base: Path | None
    consumed: dict[str, str] = field(default_factory=dict)  # variable -> key it set
    valid_env: set[str] = field(default_factory=set)
    tables: list[Table] = field(default_factory=list)

    def consume(self, name: str, key: str) -> None:
        if self.consumed.setdefault(name, key) != key:
            raise ConfigError(key, MISSING, f"{name} is ambiguous: it also names "
                              f"{self.consumed[name]}; use __ between table and key",
                              file=self.file, env=name, from_env=True)

    def refuse_unknown(self) -> None:
        for table in self.tables:
            table.refuse_unknown()
        for name in sorted(set(self.env) - set(self.consumed)):
            raise self.unknown_env(name)

    def unknown_env(self, name: str) -> ConfigError:
        return ConfigError(name, MISSING, "unknown environment variable" + _nearest(
            name, sorted(self.valid_env), self.prefix), file=self.file, env=name, from_env=True)


def _nearest(name: str, valid: list[str], prefix: str = "") -> str:
    """`; nearest valid name: X` — compared without the shared prefix, which would dominate."""
    short = {v[len(prefix):]: v for v in valid}
    best = difflib.get_close_matches(name[len(prefix):], list(short), n=1, cutoff=0.0)
    return f"; nearest valid name: {short[best[0]]}" if best else "; this table takes no keys"


class Table:
    """One TOML table (the document, `[modbus]`, `[[tokens]]` item ...) with the environment
    variables that reach it. Getters raise ConfigError naming the key."""

    def __init__(self, reader: Reader, doc: Mapping[str, Any], where: str,
                 env_parts: tuple[str, ...] | None) -> None:
        self._reader, self._doc, self._where, self._env_parts = reader, doc, where, env_parts
        self._asked: dict[str, None] = {}  # ordered set: the valid keys, in asking order
        reader.tables.append(self)

    def key(self, name: str) -> str:
        """The dotted path of `name` in this table, as errors show it."""
        return f"{self._where}.{name}" if self._where else name

    def env_name(self, name: str) -> str | None:
        """The canonical environment variable for `name`; None for array items (file only)."""
        if self._env_parts is None:
            return None
        return self._reader.prefix + "__".join((*self._env_parts, name)).upper()

    def error(self, name: str, value: Any, reason: str, *, source: str | None = None) -> ConfigError:
        """A ConfigError for `name` in this table (for checks a caller makes on read values);
        `source`: the variable the value came from, if it did. Otherwise the message names the
        variable that could set `name`, if there is one (not for tables and arrays of tables)."""
        could = self.env_name(name)
        env = source or (could if could in self._reader.valid_env else None)
        return ConfigError(self.key(name), value, reason, file=self._reader.file, env=env,
                           from_env=source is not None)

    # -- typed getters --------------------------------------------------------------------------

    def string(self, name: str, default: D | Missing = MISSING, *, secret: bool = False) -> str | D:
        return self._get(name, default, as_str, secret=secret)

    def integer(self, name: str, default: D | Missing = MISSING, *, min: int | None = None,
                max: int | None = None) -> int | D:
        return self._get(name, default, lambda v, text: _bounded(as_int(v, text), min, max))

    def number(self, name: str, default: D | Missing = MISSING, *, min: float | None = None,
               above: float | None = None) -> float | D:
        return self._get(name, default, lambda v, text: _above(as_float(v, text), min, above))

    def seconds(self, name: str, default: D | Missing = MISSING, *, min: float | None = None,
                above: float | None = None) -> float | D:
        """A duration in seconds: an integer or a float (`0.5`), in the file or the environment."""
        return self.number(name, default, min=min, above=above)

    def boolean(self, name: str, default: D | Missing = MISSING) -> bool | D:
        return self._get(name, default, as_bool)

    def path(self, name: str, default: D | Missing = MISSING) -> Path | D:
        """A path; relative ones resolve against the reader's base (the file's folder, if the
        caller asked for it). An empty value counts as unset."""
        value, env = self._raw(name)
        return self._present(name, MISSING if value == "" else value, env, default, self._as_path)

    def _as_path(self, value: Any, text: bool) -> Path:
        p = Path(as_str(value, text))
        return p if p.is_absolute() or self._reader.base is None else self._reader.base / p

    def file_text(self, name: str, default: D | Missing = MISSING) -> str | D:
        """The stripped text of the file `name` points at (a password file); an unreadable
        file is a ConfigError naming the key and the path."""
        path = self.path(name, default)
        if not isinstance(path, Path):
            return path
        try:
            return path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise self.error(name, str(path), f"cannot read {path}: {reason}") from exc

    def choice(self, name: str, kind: type[E], default: D | Missing = MISSING, *,
               exclude: tuple[E, ...] = ()) -> E | D:
        """A member of the enum `kind`, by value; the error lists the allowed values."""
        allowed = {str(m.value): m for m in kind if m not in exclude}

        def cast(v: Any, text: bool) -> E:
            if (member := allowed.get(as_str(v, text))) is None:
                raise ValueError(f"must be one of {', '.join(allowed)}")
            return member
        return self._get(name, default, cast)

    def parsed(self, name: str, parse: Callable[[str], T], default: D | Missing = MISSING) -> T | D:
        """A string through `parse`, whose ValueError becomes the reason."""
        return self._get(name, default, lambda v, text: parse(as_str(v, text)))

    def shaped(self, name: str, parse: Callable[[Any], T], default: D | Missing = MISSING) -> T | D:
        """A value of any TOML shape (an array of inline tables ...) through `parse`, whose
        ValueError becomes the reason."""
        return self._get(name, default, lambda v, text: parse(v))

    def strings(self, name: str, default: D | Missing = MISSING) -> tuple[str, ...] | D:
        """A non-empty array of strings (comma-separated in the environment)."""
        return self._get(name, default, as_strings)

    def labels(self, name: str, default: D | Missing = MISSING) -> dict[str, str] | D:
        """A table of string values (file only)."""
        return self._get(name, default, as_labels)

    # -- nested tables --------------------------------------------------------------------------

    def table(self, name: str, *, required: bool = False) -> Table:
        """The sub-table `[name]`; empty if absent (the environment may still set its keys),
        unless `required`: then its absence is an error."""
        found = self.optional_table(name)
        if found is None and required:
            raise self._missing(name)
        return found if found is not None else self._child(name, {})

    def optional_table(self, name: str) -> Table | None:
        """The sub-table, or None when neither the file nor a variable mentions it."""
        value, _ = self._raw(name, env=False)
        if value is MISSING and not self._env_reaches(name):
            return None
        if value is not MISSING and not isinstance(value, Mapping):
            raise self.error(name, value, "must be a table")
        return self._child(name, {} if value is MISSING else value)

    def tables(self, name: str) -> list[Table]:
        """An array of tables (`[[name]]`), file only; items are named `name[i]`."""
        value, _ = self._raw(name, env=False)
        if value is MISSING:
            return []
        if not isinstance(value, list) or not all(isinstance(x, Mapping) for x in value):
            raise self.error(name, value, "must be an array of tables")
        return [Table(self._reader, x, f"{self.key(name)}[{i}]", None) for i, x in enumerate(value)]

    def subtables(self) -> Iterator[tuple[str, Table]]:
        """Every entry of this table, each of which must be a table (`[integrations.<name>]`)."""
        for name in list(self._doc):
            yield name, self.table(name)

    def refuse_unknown(self) -> None:
        """Raise for the first key in the file that no getter asked for, naming the nearest."""
        for name in self._doc:
            if name not in self._asked:
                raise self._unknown(name, list(self._asked))

    # -- internals ------------------------------------------------------------------------------

    def _unknown(self, name: str, valid: list[str]) -> ConfigError:
        """An unknown key: named with the file only (no variable can set what does not exist)."""
        return ConfigError(self.key(name), MISSING, "unknown key" + _nearest(name, valid),
                           file=self._reader.file)

    def _child(self, name: str, doc: Mapping[str, Any]) -> Table:
        parts = None if self._env_parts is None else (*self._env_parts, name)
        return Table(self._reader, doc, self.key(name), parts)

    def _env_names(self, name: str) -> list[str]:
        """The canonical variable for `name`, then its one-`_` alias."""
        canonical = self.env_name(name)
        if canonical is None or self._env_parts is None:
            return []
        alias = self._reader.prefix + "_".join((*self._env_parts, name)).upper()
        return [canonical] if alias == canonical else [canonical, alias]

    def _env_reaches(self, name: str) -> bool:
        heads = [n + "_" for n in self._env_names(name)]
        return any(var.startswith(h) for var in self._reader.env for h in heads)

    def _raw(self, name: str, *, env: bool = True) -> tuple[Any, str | None]:
        """(value, the variable it came from or None); the environment wins over the file."""
        self._asked[name] = None
        names = self._env_names(name) if env else []
        self._reader.valid_env.update(names[:1])
        found = [n for n in names if n in self._reader.env]
        for var in found:
            self._reader.consume(var, self.key(name))
        if len(found) > 1:
            raise self.error(name, MISSING, f"set twice, by {found[0]} and {found[1]}",
                             source=found[0])
        if found:
            return self._reader.env[found[0]], found[0]
        return self._doc.get(name, MISSING), None

    def _get(self, name: str, default: D | Missing, cast: Callable[[Any, bool], T], *,
             secret: bool = False) -> T | D:
        value, env = self._raw(name)
        return self._present(name, value, env, default, cast, secret=secret)

    def _present(self, name: str, value: Any, env: str | None, default: D | Missing,
                 cast: Callable[[Any, bool], T], *, secret: bool = False) -> T | D:
        if value is MISSING:
            if isinstance(default, Missing):
                raise self._missing(name)
            return default
        try:
            return cast(value, env is not None)
        except (ValueError, TypeError) as exc:
            raise self.error(name, "***" if secret else value, str(exc),
                             source=env) from exc

    def _missing(self, name: str) -> ConfigError:
        """`is required` — unless a key or variable not yet read looks like a typo of it: that
        one is refused instead, naming this key (`modbuss` -> `modbus`)."""
        if typo := _typo_of(name, [k for k in self._doc if k not in self._asked]):
            return self._unknown(typo, [name])
        if (var := self.env_name(name)) is not None:
            prefix = self._reader.prefix
            strays = [v[len(prefix):] for v in self._reader.env if v not in self._reader.consumed]
            if typo := _typo_of(var[len(prefix):], strays):
                return ConfigError(prefix + typo, MISSING, "unknown environment variable; "
                                   f"nearest valid name: {var}", file=self._reader.file,
                                   env=prefix + typo, from_env=True)
        return self.error(name, MISSING, "is required")


TYPO_SIMILARITY = 0.8
"""How alike (difflib ratio) a stray name must be to a missing one to be called its typo:
`modbuss`/`modbus` is 0.92; `journal_key`, a valid key read later, is 0.78 from `journal`."""


def _typo_of(name: str, strays: list[str]) -> str | None:
    """The stray most like `name`, if it is that alike and not `name` extended by `_...` (which
    is the naming of another, valid key: `journal` / `journal_key`)."""
    candidates = [s for s in strays if not s.lower().startswith(name.lower() + "_")]
    best = difflib.get_close_matches(name, candidates, n=1, cutoff=TYPO_SIMILARITY)
    return best[0] if best else None


def _bounded(x: int, lo: int | None, hi: int | None) -> int:
    if lo is not None and x < lo or hi is not None and x > hi:
        raise ValueError(f"must be within {lo if lo is not None else '-inf'}.."
                         f"{hi if hi is not None else 'inf'}")
    return x


def _above(x: float, lo: float | None, above: float | None) -> float:
    if lo is not None and not x >= lo:
        raise ValueError(f"must be >= {lo:g}")
    if above is not None and not x > above:
        raise ValueError(f"must be > {above:g}")
    return x
