"""The one configuration reader of the agent and the hub: a TOML file, then the environment, read once.

Theory of operation (Starlette's `config.py`, over a TOML document instead of a `.env` file). A
process builds its frozen config dataclasses by asking a `Table` for typed values: `string`,
`integer`, `number`, `seconds`, `boolean`, `path`, `file_text`, `choice` (an enum), `parsed` (a
string through a parse function), `strings`, `labels`, and nested tables (`table`,
`optional_table`, `tables` for arrays of tables, `subtables` for tables named by the user). Every
getter names its key, so once `read` has built the dataclasses it knows every valid key: it then
refuses any other key in the file and any other variable carrying the prefix, naming the nearest
valid one (difflib). Nothing is read after start; there is no global instance.

Environment scheme (the prefix is `FIELDPACT_AGENT_` or `FIELDPACT_HUB_`; the environment wins):

    key `telemetry_s`        FIELDPACT_AGENT_TELEMETRY_S=0.5
    key `modbus.host`        FIELDPACT_AGENT_MODBUS__HOST=192.0.2.10   (`__` enters a table)
                             FIELDPACT_AGENT_MODBUS_HOST also works (one `_`), unless that names
                             another key too: then the reader refuses it as ambiguous
    a table's key makes the table present: FIELDPACT_AGENT_BROKER__URL alone configures [broker]
    arrays of tables ([[tokens]], [[devices]]) come from the file only

A variable's value is text: numbers as TOML writes them (`8700`, `0.5`), booleans `true`/`false`
(or `1`/`0`), lists comma-separated, and an empty value unsets an optional path.

Errors: one `ConfigError` (a ValueError) carrying `key` (dotted, `tokens[1].role`), `value`,
`reason`, `file` and `env`; its message names the key, the file and the variable.
"""
from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from runtime.settings_table import Table as Table
from runtime.settings_table import Reader
from runtime.settings_values import MISSING as MISSING
from runtime.settings_values import ConfigError as ConfigError

T = TypeVar("T")


def read(path: Path | None, build: Callable[[Table], T], *, prefix: str,
         env: Mapping[str, str] | None = None, relative_to_file: bool = False) -> T:
    """Read the TOML file at `path` (None: the environment only) and `build` the config from it.

    `env` defaults to os.environ. Raises ConfigError, also for an unreadable file or bad TOML."""
    doc: dict[str, Any] = {}
    if path is not None:
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError("<file>", str(path), f"cannot read: {exc}", file=path) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("<file>", str(path), f"not valid TOML: {exc}", file=path) from exc
    base = path.parent if relative_to_file and path is not None else None
    return from_document(doc, build, prefix=prefix, env=os.environ if env is None else env,
                         file=path, base=base)


def from_document(doc: Mapping[str, Any], build: Callable[[Table], T], *, prefix: str,
                  env: Mapping[str, str], file: Path | None = None, base: Path | None = None) -> T:
    """`build` over a decoded document and `env`, then refuse every key and prefixed variable
    nobody asked for. Relative paths resolve against `base` (None: kept relative)."""
    ours = {k: v for k, v in env.items() if k.startswith(prefix)}
    reader = Reader(file=file, env=ours, prefix=prefix, base=base)
    result = build(Table(reader, doc, "", ()))
    reader.refuse_unknown()
    return result
