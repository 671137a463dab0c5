"""Reading contract documents from files: YAML or JSON in, a checked `Contract` out.

Rules:
- The file type comes from the suffix (.yaml, .yml, .json); anything else is refused.
- YAML is read with the safe loader, but with YAML 1.2 booleans only (`true`/`false`): under YAML
  1.1 a point called `on`, `off`, `yes` or `no` would silently become a boolean key.
- Integers are decimal only: under YAML 1.1 an unquoted `00013` is octal 11, `0x1f` hex and `1:30`
  sexagesimal 90. A leading zero, `0x` or `:` keeps the text, so `address: 00013` is the Modicon
  address it looks like (coil 12) and a number written so elsewhere is refused as not a number.
- A duplicate key is an error, never "last one wins": two `pump_speed` entries in a safe_state
  would otherwise hide one of the values an engineer wrote.
- Decoding errors name the file, line and column. Contract issues keep their document paths
  (`points[2].limits`) so they match what `check_mapping` reports for any source; the file name is
  attached as a note.
- Every issue is reported at once: semantic validation runs on whatever the structural parse could
  read (a missing `offline` does not hide a bad limit), skipping only rules that need a broken field.
- Input is bounded before anything walks it: at most MAX_DOCUMENT_BYTES, nesting at most
  MAX_DOCUMENT_DEPTH (checked while composing YAML and by a scan of JSON text before decoding), and
  no YAML aliases at all: an alias is a pointer, and nine levels of them expand a 1.7 KB file to
  gigabytes. A contract has no use for them, so refusing (naming the line) is simpler than a budget.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from contracts.errors import ContractInvalid, DocumentError
from contracts.limits import MAX_DOCUMENT_BYTES, MAX_DOCUMENT_DEPTH, clip, quote
from contracts.schema import Contract
from contracts.schema_fields import cap_issues
from contracts.schema_parse import parse_partial
from contracts.validate import validate

__all__ = ["MAX_DOCUMENT_BYTES", "check_mapping", "decode_json", "decode_yaml", "load_contract",
           "load_document"]

YAML_SUFFIXES = frozenset({".yaml", ".yml"})
JSON_SUFFIXES = frozenset({".json"})

_BOOL_TAG = "tag:yaml.org,2002:bool"


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader with YAML 1.2 booleans, duplicate keys, aliases and deep nesting refused."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases are not allowed in a contract (*{event.anchor[:40]}): "
                "write the value out", event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DOCUMENT_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_DOCUMENT_DEPTH} levels",
                    self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # unhashable keys are refused by the base class below
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping", node.start_mark,
                    f"duplicate key {quote(key)}", key_node.start_mark)
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


_INT_TAG = "tag:yaml.org,2002:int"

_StrictLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_StrictLoader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_StrictLoader.add_implicit_resolver(  # decimal only: 00013 stays text (a Modicon address), never octal
    _INT_TAG, re.compile(r"^[-+]?(?:0|[1-9][0-9_]*)$"), list("-+0123456789"))


def load_document(path: str | Path) -> Any:
    """The decoded YAML (.yaml/.yml) or JSON (.json) document at `path`. Raises DocumentError
    naming the file (and line and column where known) if it cannot be read or decoded."""
    p = Path(path)
    text = _read_text(p)
    if p.suffix.lower() in YAML_SUFFIXES:
        return _load_yaml(p, text)
    if p.suffix.lower() in JSON_SUFFIXES:
        return _load_json(p, text)
    raise DocumentError(f"{p}: unsupported file type {p.suffix!r} (use .yaml, .yml or .json)")


def _read_text(p: Path) -> str:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise DocumentError(f"{p}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > MAX_DOCUMENT_BYTES:
        raise DocumentError(f"{p}: {len(data)} bytes is larger than {MAX_DOCUMENT_BYTES}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(f"{p}: not UTF-8 (byte {exc.start})") from exc


def _load_yaml(p: Path, text: str) -> Any:
    return decode_yaml(text, str(p))


def _load_json(p: Path, text: str) -> Any:
    return decode_json(text, str(p))


def decode_yaml(text: str, source: str) -> Any:
    """Decode contract YAML (aliases and nesting deeper than MAX_DOCUMENT_DEPTH refused).
    Raises DocumentError naming `source`, line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        raise DocumentError(f"{where}: {clip(str(exc.problem or exc.context))}") from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise DocumentError(f"{source}: {clip(str(exc))}") from exc


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_OPENERS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """Deepest nesting of `text` read as JSON (strings skipped), in one linear scan."""
    depth = deepest = 0
    for m in _JSON_OPENERS.finditer(_JSON_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def decode_json(text: str, source: str) -> Any:
    """Decode contract JSON (nesting checked before decoding, duplicate keys refused).
    Raises DocumentError naming `source`, line and column."""
    if json_depth(text) > MAX_DOCUMENT_DEPTH:
        raise DocumentError(f"{source}: nested deeper than {MAX_DOCUMENT_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"{source}:{exc.lineno}:{exc.colno}: {exc.msg}") from exc
    except _DuplicateKey as exc:
        raise DocumentError(f"{source}: duplicate key {quote(exc.args[0])}") from exc
    except (ValueError, RecursionError) as exc:  # e.g. an integer over 4,300 digits
        raise DocumentError(f"{source}: {clip(str(exc))}") from exc


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def check_mapping(m: Any) -> Contract:
    """Parse `m` structurally, then validate what could be read. Raises ContractInvalid listing
    every issue at once (structural first, then semantic; at most MAX_ISSUES and a count)."""
    parsed = parse_partial(m)
    issues = [*parsed.issues, *validate(parsed.contract, parsed.layout)]
    if issues:
        raise ContractInvalid(cap_issues(issues, parsed.extra))
    return parsed.contract


def load_contract(path: str | Path) -> Contract:
    """Load, parse and validate the contract file at `path`. Raises DocumentError if the file
    cannot be read or decoded, ContractInvalid (noted with the file name) if it is not valid."""
    m = load_document(path)
    try:
        return check_mapping(m)
    except ContractInvalid as exc:
        exc.add_note(f"in {path}")
        raise
