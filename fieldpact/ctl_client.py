"""The operator client's side of the hub API: one HTTP exchange, and what its failure means.

Rules:
- Every failure is a CtlError carrying the exit status the shell returns, so a script can tell
  "you may not" from "no such thing" from "the hub is not there" without reading the text:

      Exit.OK           0  done
      Exit.REFUSED      1  the hub refused the request as invalid (400, 413, 415, 422)
      Exit.USAGE        2  the command line (argparse's own status), or no hub URL
      Exit.AUTH         3  no token, a token the hub refuses (401) or a role too weak (403)
      Exit.NOT_FOUND    4  no such device, contract, alarm, design, snapshot or deployment (404)
      Exit.CONFLICT     5  write conflict, stale version or illegal state (409)
      Exit.UNREACHABLE  6  no answer: connection refused, DNS, timeout
      Exit.UNSUPPORTED  7  this hub has no such route (an older hub): the command cannot work here
      Exit.HUB_ERROR    8  the hub failed (5xx, 503 not published) or answered something not JSON
      Exit.DRIFT        9  `ctl drift --check`: some device does not run its desired snapshot
      Exit.ROLLED_BACK 10  `ctl deploy … --wait`: the deployment rolled back or failed
      Exit.PAUSED      11  `ctl deploy … --wait`: the deployment is paused, waiting for an operator
      Exit.IN_PROGRESS 12  `ctl deploy … --wait S`: still under way when S seconds had passed

- A 404 or 405 is told apart from "no such thing" by the hub's own OpenAPI document: a route the
  document does not list is UNSUPPORTED, naming the method and path template.
- The hub's error text and its issues (`{"error", "issues": [{path, reason}]}`, hub/api.py) are
  kept as they are, bounded: they name the field an operator must fix.
"""
from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_TIMEOUT_S = 10.0
"""Per request: the hub answers reads in milliseconds; ten seconds means it is not answering."""
MAX_ERROR_CHARS = 500
"""An error quoted from the hub is a sentence, not a page (the hub bounds its own, too)."""


class Exit(enum.IntEnum):
    OK = 0
    REFUSED = 1
    USAGE = 2
    AUTH = 3
    NOT_FOUND = 4
    CONFLICT = 5
    UNREACHABLE = 6
    UNSUPPORTED = 7
    HUB_ERROR = 8
    DRIFT = 9
    ROLLED_BACK = 10
    PAUSED = 11
    IN_PROGRESS = 12


MEANING: Mapping[Exit, str] = {
    Exit.OK: "done", Exit.REFUSED: "the hub refused the request as invalid (400, 413, 415, 422)",
    Exit.USAGE: "bad command line, or no hub URL", Exit.AUTH: "no token, token refused (401) or "
    "role too weak (403)",
    Exit.NOT_FOUND: "no such device, contract, alarm, design, snapshot or deployment",
    Exit.CONFLICT: "write conflict, stale version or illegal state (409)",
    Exit.UNREACHABLE: "the hub did not answer (refused, DNS, timeout)",
    Exit.UNSUPPORTED: "this hub has no such route (an older hub)",
    Exit.HUB_ERROR: "the hub failed (5xx) or answered something not JSON",
    Exit.DRIFT: "`drift --check`: some device does not run its desired snapshot",
    Exit.ROLLED_BACK: "`deploy … --wait`: the deployment rolled back or failed (its reason shown)",
    Exit.PAUSED: "`deploy … --wait`: the deployment is paused until an operator approves or "
                 "resumes it",
    Exit.IN_PROGRESS: "`deploy … --wait S`: the deployment was still under way after S seconds",
}
"""One line per exit status, for --help and the README (tests/fieldpact/test_ctl_docs.py)."""

_BY_STATUS: Mapping[int, Exit] = {400: Exit.REFUSED, 401: Exit.AUTH, 403: Exit.AUTH,
                                  404: Exit.NOT_FOUND, 409: Exit.CONFLICT, 413: Exit.REFUSED,
                                  415: Exit.REFUSED, 422: Exit.REFUSED}


class CtlError(Exception):
    """A command that could not be done: the exit status, a message, the hub's issues."""

    def __init__(self, exit: Exit, message: str,
                 issues: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.exit, self.message, self.issues = exit, message, issues


def exit_for(status: int) -> Exit:
    """The exit status for an HTTP error status (any other 4xx is a refusal, 5xx the hub's)."""
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return Exit.HUB_ERROR if status >= 500 else Exit.REFUSED


def path(template: str, **params: str) -> str:
    """`template` with each `{name}` replaced by its value, percent-encoded as one segment."""
    return re.sub(r"{(\w+)}", lambda m: quote(params[m.group(1)], safe=""), template)


class HubClient:
    """One hub, one token. Methods take the route's template (as the OpenAPI document spells it)
    and its parameters, and return the decoded JSON body. Raises CtlError."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s,
                                  headers={"Authorization": f"Bearer {token}"})
        self._paths: frozenset[tuple[str, str]] | None = None

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *_: object) -> None:
        self._http.close()

    def get(self, template: str, params: Mapping[str, str] | None = None, **path_params: str) -> Any:
        return self.request("GET", template, path_params, params=params)

    def post(self, template: str, body: Any = None, **path_params: str) -> Any:
        return self.request("POST", template, path_params, json=body)

    def put(self, template: str, body: Any = None, **path_params: str) -> Any:
        return self.request("PUT", template, path_params, json=body)

    def delete(self, template: str, **path_params: str) -> Any:
        return self.request("DELETE", template, path_params)

    def request(self, method: str, template: str, path_params: Mapping[str, str],
                **kwargs: Any) -> Any:
        response = self._send(method, path(template, **path_params), **kwargs)
        if response.is_success:
            return _json(response)
        if response.status_code in (404, 405) and not self.serves(method, template):
            raise CtlError(Exit.UNSUPPORTED, f"the hub at {self.base_url} does not serve "
                                             f"{method} {template} (an older hub?)")
        raise _refusal(response)

    def serves(self, method: str, template: str) -> bool:
        """Whether the hub's OpenAPI document lists `method template` (parameter names aside:
        `/api/snapshots/{id}` is `/api/snapshots/{snapshot}`)."""
        if self._paths is None:
            doc = self._send("GET", "/openapi.json")
            paths = _json(doc).get("paths", {}) if doc.is_success else {}
            self._paths = frozenset((m.upper(), _shape(p)) for p, ops in paths.items() for m in ops)
        return (method, _shape(template)) in self._paths

    def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise CtlError(Exit.UNREACHABLE, f"hub {self.base_url} did not answer "
                                             f"{method} {url} in time ({exc})") from exc
        except httpx.TransportError as exc:
            raise CtlError(Exit.UNREACHABLE,
                           f"hub {self.base_url} unreachable: {exc or type(exc).__name__}") from exc


def _shape(template: str) -> str:
    return re.sub(r"{\w+}", "{}", template)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise CtlError(Exit.HUB_ERROR, f"{response.request.method} {response.request.url.path}: "
                                       f"the hub answered {response.status_code} with a body "
                                       f"that is not JSON") from exc


def _refusal(response: httpx.Response) -> CtlError:
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, Mapping) and isinstance(body.get("error"), str):
        message, issues = body["error"], _issues(body.get("issues"))
    else:
        message, issues = response.reason_phrase or "error", ()
    where = f"{response.request.method} {response.request.url.path}"
    return CtlError(exit_for(status), f"{where}: {status} {message[:MAX_ERROR_CHARS]}", issues)


def _issues(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Sequence):
        return ()
    return tuple((str(i.get("path", ""))[:MAX_ERROR_CHARS], str(i.get("reason", ""))[:MAX_ERROR_CHARS])
                 for i in raw[:50] if isinstance(i, Mapping))
