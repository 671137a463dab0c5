"""The operator requests the hub refuses, each with the HTTP status it is answered with (the tree
is drawn in hub/errors.py).

Rules:
- A refusal is answered, never a crash: hub/api.py's one handler answers every subclass with its
  `status` and its `issues` (each a field path and a reason).
- The hub's operations (hub/service.py) audit a refusal before raising it; the API modules
  subclass `RequestRefused` for what their own parsers refuse (hub/inbound.py, hub/fleet_api.py,
  hub/registry_api.py, hub/rollout.py, hub/operator_api.py).
"""
from __future__ import annotations

from collections.abc import Iterable
from http import HTTPStatus

from contracts.errors import Issue
from hub.errors import HubError


class RequestRefused(HubError):
    """An operator request the hub will not carry out. `status` is the HTTP status to answer with;
    `issues` say where and why (path + reason)."""

    status: HTTPStatus = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, issues: Iterable[Issue] = ()) -> None:
        self.message, self.issues = message, tuple(issues)
        super().__init__(message)


class InvalidContract(RequestRefused):
    status = HTTPStatus.UNPROCESSABLE_ENTITY


class WriteConflict(RequestRefused):
    status = HTTPStatus.CONFLICT


class StaleVersion(RequestRefused):
    status = HTTPStatus.CONFLICT


class IllegalRequest(RequestRefused):
    """The contract's status does not allow the request (e.g. hold a completed contract)."""

    status = HTTPStatus.CONFLICT


class PublishFailed(RequestRefused):
    """The request was accepted but could not be sent to the agent; nothing changed state."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
