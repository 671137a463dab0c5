"""Reading a contract document: a decoded YAML/JSON/CBOR mapping in, a `Contract` and its issues out.

Rules of this module:
- `parse_contract(mapping)` checks shape and types (structural validation) and collects *every*
  issue with its path before raising `ContractInvalid`. Cross-field rules (ownership, overlaps,
  limits vs type, expressions, reachable steps) live in `validate.py`, which `load_contract` always
  runs after parsing.
- `parse_partial` never raises for content: it returns what could be read, with placeholders for
  missing or unreadable top-level fields and a `Layout` saying where the parts were, so semantic
  checks run on the rest. Lists are bounded (MAX_POINTS, MAX_STEPS) before any item is looked at.
- Field converters live in `schema_fields`, point rows in `schema_points`; the inverse is
  `schema_serialize.to_mapping`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from contracts import schema_fields as fields
from contracts.errors import ContractInvalid, Issue
from contracts.limits import MAX_AUTONOMY_S, MAX_POINTS, MAX_STEPS, MAX_VERSION, quote
from contracts.schema import (
    DEFAULT_TOLERANCE, MAX_SCAN_PERIOD_MS, MIN_SCAN_PERIOD_MS, SCHEMA_VERSION, Contract, Expectation,
    Offline, OfflineAction, OnTimeout, Point, Step, Tolerance,
)
from contracts.schema_fields import cap_issues
from contracts.schema_points import parse_point
from contracts.schema_rollout import parse_rollout
from contracts.types import PointName, Value

__all__ = ["Layout", "Parsed", "parse_contract", "parse_partial"]

T = TypeVar("T")
_VERSION = fields.bounded_int(1, MAX_VERSION)


def _pairs(r: fields.Reader, v: Any, path: str, conv: Callable[[Any, str], T]) -> tuple[tuple[str, T], ...]:
    if not isinstance(v, Mapping):
        r.fail(path, "must be a mapping of point name to value")
        return ()
    out = []
    for k, item in v.items():
        where = f"{path}.{fields.path_part(k)}"
        if not isinstance(k, str):
            r.fail(where, "must be named by text")
            continue
        try:
            out.append((k, conv(item, where)))
        except fields.Bad as bad:
            r.fail(where, str(bad))
    return tuple(out)


_STEP_KEYS = frozenset({"name", "do", "until", "for_s", "timeout_s", "on_timeout"})


def _read_step(r: fields.Reader, raw: Any, path: str) -> Step | None:
    m = r.table(raw, path, _STEP_KEYS)
    if m is None:
        return None
    name = r.get(m, "name", path, fields.name)
    do = _pairs(r, m.get("do") or {}, f"{path}.do", fields.value)
    step = Step(
        name=name or "", do=do, until=r.get(m, "until", path, fields.text, None),
        for_s=r.get(m, "for_s", path, fields.positive, None),
        timeout_s=r.get(m, "timeout_s", path, fields.positive, None),
        on_timeout=r.get(m, "on_timeout", path, fields.choice(OnTimeout), OnTimeout.SAFE_STATE),
    )
    return step if name else None


def _parse_offline(r: fields.Reader, raw: Any, path: str) -> Offline:
    m = r.table(raw, path, frozenset({"autonomy_s", "then"}))
    if m is None:
        return Offline(autonomy_s=0)
    return Offline(
        autonomy_s=r.get(m, "autonomy_s", path, fields.bounded_int(0, MAX_AUTONOMY_S)) or 0,
        then=r.get(m, "then", path, fields.choice(OfflineAction), OfflineAction.SAFE_STATE),
    )


def _parse_expect(r: fields.Reader, m: Any, path: str) -> tuple[Expectation, ...]:
    if not isinstance(m, Mapping):
        r.fail(path, "must be a mapping of point name to {rate_per_s, when}")
        return ()
    out = []
    for name, spec in m.items():
        where = f"{path}.{fields.path_part(name)}"
        if not isinstance(spec, Mapping):
            r.fail(where, "must be a mapping")
            continue
        r.unknown_keys(spec, frozenset({"rate_per_s", "when"}), where)
        rate = r.get(spec, "rate_per_s", where, fields.number)
        when = r.get(spec, "when", where, fields.text, None)
        if rate is not None:
            out.append(Expectation(point=str(name), rate_per_s=rate, when=when))
    return tuple(out)


def _parse_tolerance(r: fields.Reader, raw: Any, path: str) -> Tolerance:
    m = r.table(raw, path, frozenset({"timing_s", "values"}))
    if m is None:
        return DEFAULT_TOLERANCE
    timing = r.get(m, "timing_s", path, fields.non_negative, DEFAULT_TOLERANCE.timing_s)
    values = _pairs(r, m.get("values") or {}, f"{path}.values", fields.non_negative)
    return Tolerance(timing_s=timing if timing is not None else 0.0, values=values)


def _parse_interlock(r: fields.Reader, m: Any, own: str | None) -> tuple[str, ...]:
    """`interlock: [contract id, ...]`: bounded, each a contract id, none twice, never itself."""
    if m is None:
        return ()
    if not isinstance(m, list):
        r.fail("interlock", "must be a list of contract ids")
        return ()
    if len(m) > MAX_INTERLOCK:
        r.fail("interlock", f"has {len(m)} entries; at most {MAX_INTERLOCK} are allowed")
        return ()
    out: list[str] = []
    for i, raw in enumerate(m):
        where = f"interlock[{i}]"
        try:
            cid = fields.ident(raw, where)
        except fields.Bad as bad:
            r.fail(where, str(bad))
            continue
        if cid == own:
            r.fail(where, f"{quote(cid)} is this contract itself")
        elif cid in out:
            r.fail(where, f"{quote(cid)} is named twice")
        else:
            out.append(cid)
    return tuple(out)


def _parse_labels(r: fields.Reader, m: Any, path: str) -> tuple[tuple[str, str], ...]:
    return _pairs(r, m, path, fields.text) if m is not None else ()


_TOP_KEYS = frozenset({
    "schema", "contract", "version", "device", "site", "valid_from", "valid_until", "scan_period_ms",
    "points", "safe_state", "steps", "offline", "expect", "tolerance", "labels", "interlock",
    "rollout",
})

MAX_INTERLOCK = 16
"""Contracts one contract may interlock with: an agent runs a handful of contracts side by side,
and a bound keeps a hostile document from naming thousands."""


def _scan_period(v: Any, p: str) -> int:
    i = fields.integer(v, p)
    if not MIN_SCAN_PERIOD_MS <= i <= MAX_SCAN_PERIOD_MS:
        raise fields.Bad(f"must be within {MIN_SCAN_PERIOD_MS}..{MAX_SCAN_PERIOD_MS} ms, got {i}")
    return i


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where a partly readable document's parts are, so semantic checks can run on the rest and
    name document paths: the document index of each point and step kept in the Contract, the
    top-level fields that were missing or unreadable (placeholders stand in for them), and the
    names of points that were dropped (references to them are not 'unknown')."""

    point_index: tuple[int, ...]
    step_index: tuple[int, ...]
    broken: frozenset[str] = frozenset()
    dropped_points: frozenset[str] = frozenset()

    @classmethod
    def whole(cls, c: Contract) -> Layout:
        return cls(point_index=tuple(range(len(c.points))), step_index=tuple(range(len(c.steps))))


@dataclass(frozen=True, kw_only=True)
class Parsed:
    """A structural parse: the contract built from what could be read, every structural issue
    (the first MAX_ISSUES, and a count of the rest), and its Layout."""

    contract: Contract
    issues: tuple[Issue, ...]
    layout: Layout
    extra: int = 0  # issues found past MAX_ISSUES, counted only


def parse_contract(m: Any) -> Contract:
    """Structural parse of a decoded document. Raises ContractInvalid listing every issue."""
    parsed = parse_partial(m)
    if parsed.issues:
        raise ContractInvalid(cap_issues(list(parsed.issues), parsed.extra))
    return parsed.contract


_PLACEHOLDERS: Mapping[str, Any] = {
    "contract": "", "version": 1, "device": "", "site": "", "valid_from": 0, "valid_until": 0,
    "scan_period_ms": MIN_SCAN_PERIOD_MS,
}
_SCALARS: Mapping[str, Callable[[Any, str], Any]] = {
    "contract": fields.ident, "version": _VERSION, "device": fields.ident, "site": fields.ident,
    "valid_from": fields.epoch_ms, "valid_until": fields.epoch_ms, "scan_period_ms": _scan_period,
}


def parse_partial(m: Any) -> Parsed:
    """Structural parse that never raises for content: a Contract of what could be read, with
    placeholders for missing or unreadable top-level fields, plus every issue. Raises
    ContractInvalid only when `m` is not a mapping at all."""
    if not isinstance(m, Mapping):
        raise ContractInvalid([Issue(path="<document>", reason="must be a mapping")])
    r = fields.Reader()
    r.unknown_keys(m, _TOP_KEYS, "")
    schema = m.get("schema", SCHEMA_VERSION)
    if schema != SCHEMA_VERSION:
        r.fail("schema", f"version {quote(schema)} is not supported (this build reads {SCHEMA_VERSION})")
    scalars = {k: r.get(m, k, "", conv) for k, conv in _SCALARS.items()}
    broken = {k for k, v in scalars.items() if v is None}
    points, p_index, dropped = _parse_points(r, m, broken)
    steps, s_index = _parse_steps(r, m, broken)
    contract = Contract(
        **{k: _PLACEHOLDERS[k] if v is None else v for k, v in scalars.items()},
        points=points, safe_state=_parse_safe_state(r, m, broken), steps=steps,
        offline=_parse_offline(r, m["offline"], "offline") if "offline" in m
        else _required(r, "offline", Offline(autonomy_s=0)),
        expect=_parse_expect(r, m.get("expect") or {}, "expect"),
        tolerance=_parse_tolerance(r, m["tolerance"], "tolerance") if "tolerance" in m
        else DEFAULT_TOLERANCE,
        labels=_parse_labels(r, m.get("labels"), "labels"),
        interlock=_parse_interlock(r, m.get("interlock"), scalars["contract"]),
        rollout=parse_rollout(r, m.get("rollout")),
    )
    layout = Layout(point_index=p_index, step_index=s_index, broken=frozenset(broken),
                    dropped_points=dropped)
    return Parsed(contract=contract, issues=tuple(r.issues), layout=layout, extra=r.extra)


def _bounded_list(r: fields.Reader, m: Mapping[str, Any], key: str, most: int,
                  broken: set[str]) -> list[Any]:
    """The list at `key`, or [] (marking it broken) if missing, not a list, or longer than `most`:
    an over-long list is refused before any item is looked at."""
    raw: list[Any] | None = r.get(m, key, "", fields.sequence)
    if raw is not None and len(raw) > most:
        r.fail(key, f"has {len(raw)} entries; at most {most} are allowed")
        raw = None
    if raw is None:
        broken.add(key)
    return raw or []


def _parse_points(r: fields.Reader, m: Mapping[str, Any],
                  broken: set[str]) -> tuple[tuple[Point, ...], tuple[int, ...], frozenset[str]]:
    kept: list[Point] = []
    index: list[int] = []
    dropped: set[str] = set()
    for i, raw in enumerate(_bounded_list(r, m, "points", MAX_POINTS, broken)):
        p = parse_point(r, raw, f"points[{i}]")
        if p is not None:
            kept.append(p)
            index.append(i)
        elif isinstance(raw, Mapping) and isinstance(raw.get("name"), str):
            dropped.add(raw["name"])
    return tuple(kept), tuple(index), frozenset(dropped)


def _parse_steps(r: fields.Reader, m: Mapping[str, Any],
                 broken: set[str]) -> tuple[tuple[Step, ...], tuple[int, ...]]:
    parsed = [(i, r.whole(_read_step, raw, f"steps[{i}]"))  # None: a field is unreadable
              for i, raw in enumerate(_bounded_list(r, m, "steps", MAX_STEPS, broken))]
    if any(s is None for _, s in parsed):
        broken.add("steps")  # reachability cannot be judged with a step missing
    kept = [(i, s) for i, s in parsed if s is not None]
    return tuple(s for _, s in kept), tuple(i for i, _ in kept)


def _parse_safe_state(r: fields.Reader, m: Mapping[str, Any],
                      broken: set[str]) -> tuple[tuple[PointName, Value], ...]:
    if "safe_state" not in m:
        broken.add("safe_state")
        return _required(r, "safe_state")  # type: ignore[no-any-return]
    before = r.count()
    pairs = _pairs(r, m["safe_state"], "safe_state", fields.value)
    if r.count() != before:
        broken.add("safe_state")  # a refused value is not a missing one
    return pairs


def _required(r: fields.Reader, path: str, placeholder: Any = ()) -> Any:
    r.fail(path, "is required")
    return placeholder
