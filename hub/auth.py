"""Bearer-token authentication and role checks for the hub's HTTP API.

Rules:
- Tokens are never stored: the config holds their SHA-256 hex digests. A presented token is hashed
  and compared with every configured digest using `hmac.compare_digest` (constant time, and every
  entry is compared so timing does not reveal which one matched).
- Roles are ordered viewer < operator < admin. `required_role(method, path)` is a pure table
  lookup; `None` means public: /health, and GET/HEAD of the operator page (`/`, `/static/*`),
  which holds no data and asks for a token itself (its API calls are checked like any other).
  Reads need viewer; changing a contract (submit, hold, abort, resume, reconcile),
  acknowledging an alarm and asking an agent for a commissioning report and every deployment request need operator; anything under /api/admin (keys, config) and a device
  reset (`POST /api/devices/{id}/reset`) need admin. Unknown write routes default to admin, so a route added without a rule
  fails closed.
- Missing or unknown token: 401 with `WWW-Authenticate: Bearer` (RFC 6750 section 3). Known token
  with too weak a role: 403.
"""
from __future__ import annotations

import enum
import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send


class ApiRole(enum.IntEnum):
    """What an HTTP API token may do; ordered, each role may do all the lower ones may (not to be
    confused with hub.acl.policy.BrokerRole, the kind of MQTT login)."""

    VIEWER = 1
    OPERATOR = 2
    ADMIN = 3

    @classmethod
    def parse(cls, text: str) -> ApiRole:
        """The role named in lowercase. Raises ValueError naming the allowed roles."""
        try:
            return cls[text.upper()]
        except KeyError:
            allowed = ", ".join(r.name.lower() for r in cls)
            raise ValueError(f"{text!r} is not a role (allowed: {allowed})") from None


@dataclass(frozen=True, kw_only=True)
class Token:
    """One configured API token: a name for the audit log, its SHA-256 hex digest and role."""

    name: str
    sha256: str
    role: ApiRole


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who made a request; `name` is what the audit log records as the actor."""

    name: str
    role: ApiRole


@dataclass(frozen=True, kw_only=True)
class AuthConfig:
    tokens: tuple[Token, ...] = ()


def hash_token(token: str) -> str:
    """The SHA-256 hex digest to put in the config for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def authenticate(tokens: Iterable[Token], presented: str) -> Principal | None:
    """The principal holding `presented`, or None. Compares against every token in constant time."""
    digest = hash_token(presented).encode()
    found: Token | None = None
    for token in tokens:
        if hmac.compare_digest(digest, token.sha256.lower().encode()):
            found = token
    return Principal(name=found.name, role=found.role) if found else None


PUBLIC_PATHS = frozenset({"/health"})
PAGE_PATHS = frozenset({"/"})
PAGE_PREFIX = "/static/"
"""The operator page's files: public so a browser can load the page before it has a token. Only
GET/HEAD, and everything under PAGE_PREFIX is routed to StaticFiles, which serves nothing else."""
_OPERATOR_ACTIONS = ("/reconcile", "/hold", "/abort", "/resume")
_ALARM_ACK = ("/api/alarms/", "/ack")
_PLANS = "/api/plans"
_COMMISSION = ("/api/devices/", "/commissioning")
_DEPLOYMENTS = "/api/deployments"


def required_role(method: str, path: str) -> ApiRole | None:
    """The weakest role allowed to call `method path`; None if the route is public."""
    if path in PUBLIC_PATHS:
        return None
    if method in ("GET", "HEAD") and (path in PAGE_PATHS or path.startswith(PAGE_PREFIX)):
        return None
    if path.startswith("/api/admin"):
        return ApiRole.ADMIN
    if method in ("GET", "HEAD", "OPTIONS"):
        return ApiRole.VIEWER
    if method == "POST" and path.startswith("/api/contracts"):
        if path.rstrip("/") == "/api/contracts" or path.endswith(_OPERATOR_ACTIONS):
            return ApiRole.OPERATOR
    if method == "POST" and path.startswith(_ALARM_ACK[0]) and path.endswith(_ALARM_ACK[1]):
        return ApiRole.OPERATOR
    if method == "POST" and path == _PLANS:
        return ApiRole.OPERATOR  # a dry run: it changes nothing (hub/plans.py)
    if method == "POST" and (path == _DEPLOYMENTS or path.startswith(_DEPLOYMENTS + "/")):
        return ApiRole.OPERATOR  # make, pause, resume, approve, retry, roll back (interface I4)
    if method == "POST" and path.startswith(_COMMISSION[0]) and path.endswith(_COMMISSION[1]) \
            and path.count("/") == 4:
        return ApiRole.OPERATOR
    return ApiRole.ADMIN


def bearer_token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


PRINCIPAL_KEY = "fieldpact.principal"
"""Where the middleware leaves the Principal in the ASGI scope for endpoints to read."""


class AuthMiddleware:
    """Pure ASGI middleware: authenticates every HTTP request except public paths."""

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app, self.config = app, config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        need = required_role(scope["method"], scope["path"])
        if need is None:
            await self.app(scope, receive, send)
            return
        token = bearer_token(scope["headers"])
        principal = authenticate(self.config.tokens, token) if token else None
        if principal is None:
            await _deny(send, 401, "missing or invalid bearer token")
        elif principal.role < need:
            await _deny(send, 403, f"role {principal.role.name.lower()} may not do this "
                                   f"(needs {need.name.lower()})")
        else:
            scope[PRINCIPAL_KEY] = principal
            await self.app(scope, receive, send)


async def _deny(send: Send, status: int, reason: str) -> None:
    body = json.dumps({"error": reason, "issues": []}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="fieldpact"'))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
