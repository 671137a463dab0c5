"""What an API route reads off a request: who calls, the hub service, query parameters, and a body
capped in bytes.

Rules (invariant 10): a body is read while streaming and abandoned at its route's cap (413) — a
declared Content-Length over the cap is refused before anything is read; JSON bodies go through the
contract loader's decoder (nesting checked before decoding, duplicate keys refused), and an error
quotes at most a clipped piece of what was sent. One place, so no route reads a body unbounded.
"""
from __future__ import annotations

import enum
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from starlette.exceptions import HTTPException
from starlette.requests import Request

from contracts.errors import DocumentError, Issue
from contracts.limits import clip, quote
from contracts.loader import decode_json
from hub.auth import PRINCIPAL_KEY, Principal
from hub.refusals import RequestRefused
from hub.service import HubService

E = TypeVar("E", bound=enum.Enum)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
"""Pages are bounded so one request cannot pull a whole journal into memory."""


class BadBody(RequestRefused):
    """A body the route cannot read at all (400); a readable one with bad fields is the route's
    own 422."""

    status = HTTPStatus.BAD_REQUEST


class BadQuery(RequestRefused):
    """A query parameter the route cannot read (400), named in the issue's path."""

    status = HTTPStatus.BAD_REQUEST


def actor(request: Request) -> str:
    """The authenticated caller's name (hub/auth.py puts the principal in the scope)."""
    principal: Principal = request.scope[PRINCIPAL_KEY]
    return principal.name


def service(request: Request) -> HubService:
    svc: HubService = request.app.state.service
    return svc


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, read while streaming and abandoned at `limit` bytes (413): a declared
    Content-Length over the limit is refused before reading anything, and a chunked body is cut
    as soon as it passes the limit, without reading the rest."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {declared[:20]} bytes is larger than {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_object(request: Request, limit: int, shape: str = "") -> Mapping[str, Any]:
    """The body as a JSON object (an empty body is {}). Raises 413 over `limit`, BadBody naming
    `shape` (e.g. '{"reason": string}') when it is not a JSON object."""
    body = await read_capped(request, limit)
    want = f"body must be a JSON object {shape}".rstrip()
    try:
        doc = decode_json(body.decode("utf-8"), "<body>") if body else {}
    except (DocumentError, UnicodeDecodeError) as exc:
        raise BadBody(want, [Issue(path="<body>", reason=clip(str(exc)))]) from exc
    if not isinstance(doc, Mapping):
        raise BadBody(want, [Issue(path="<body>", reason="not an object")])
    return doc


# ---- query parameters ---------------------------------------------------------------------------

def int_query(request: Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter `name` as an integer within low..high (`default` when absent). Raises
    BadQuery."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        reason = f"must be an integer within {low}..{high}, got {quote(raw)}"
        raise BadQuery(f"bad query parameter {name}", [Issue(path=name, reason=reason)])
    return value


def enum_query(request: Request, name: str, cls: type[E]) -> E | None:
    """Query parameter `name` as a member of `cls` (None when absent). Raises BadQuery."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return cls(raw)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in cls)
        raise BadQuery(f"bad query parameter {name}",
                       [Issue(path=name, reason=f"{quote(raw)} is not one of {allowed}")]) from None


def bool_query(request: Request, name: str) -> bool | None:
    """Query parameter `name` as "true" or "false" (None when absent). Raises BadQuery."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise BadQuery(f"bad query parameter {name}",
                       [Issue(path=name, reason=f"must be true or false, got {raw[:40]!r}")])
    return raw == "true"
