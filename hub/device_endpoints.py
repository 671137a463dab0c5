"""A registered device's endpoints: the named field connections its agent has (issue 12).

Rules:
- An admin may tell the hub which endpoints a device's agent has — in hub.toml (`endpoints =
  [{name, kind}]` under `[[devices]]`, which pins them) or through the API (`POST /api/devices`,
  `PUT /api/devices/{id}/endpoints`). Each has a name (an id like a contract point's `endpoint`)
  and a kind, one of the agent's (agent/endpoint_config.py).
- They are metadata the plan checks against: a compiled contract whose point names an endpoint the
  device does not list is ineligible (`endpoint_missing`). A device with none listed is unknown,
  not a failure; a point with no endpoint uses the agent's only one, and is never checked.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from contracts.limits import quote
from contracts.schema import ID_RE, Contract

ENDPOINT_KINDS = ("modbus-tcp", "modbus-rtu", "modbus-rtu-over-tcp")
"""The agent's endpoint kinds (agent/endpoint_config.py EndpointKind; the hub does not import the
agent, so the names are repeated here and a test keeps the two equal)."""

MAX_ENDPOINTS = 32
"""An edge box with more field connections than this is not one we have met; the bound keeps a
registration small."""


class EndpointsInvalid(ValueError):
    """The endpoints value is refused; `field` is the path of what is wrong."""

    def __init__(self, field_name: str, reason: str) -> None:
        self.field, self.reason = field_name, reason
        super().__init__(f"{field_name}: {reason}")


@dataclass(frozen=True, kw_only=True)
class DeviceEndpoint:
    name: str
    kind: str

    def to_mapping(self) -> dict[str, str]:
        return {"name": self.name, "kind": self.kind}


def parse_endpoints(value: Any, path: str = "endpoints") -> tuple[DeviceEndpoint, ...]:
    """A list of {name, kind}, names unique. Raises EndpointsInvalid naming the field."""
    if not isinstance(value, list) or len(value) > MAX_ENDPOINTS:
        raise EndpointsInvalid(path, f"must be a list of at most {MAX_ENDPOINTS} {{name, kind}}")
    out = tuple(_endpoint(item, f"{path}[{i}]") for i, item in enumerate(value))
    seen: set[str] = set()
    for i, e in enumerate(out):
        if e.name in seen:
            raise EndpointsInvalid(f"{path}[{i}].name", f"{quote(e.name)} is listed twice")
        seen.add(e.name)
    return out


def _endpoint(item: Any, path: str) -> DeviceEndpoint:
    if not isinstance(item, dict) or set(item) != {"name", "kind"}:
        raise EndpointsInvalid(path, "must be an object with exactly `name` and `kind`")
    name, kind = item["name"], item["kind"]
    if not isinstance(name, str) or not ID_RE.match(name):
        raise EndpointsInvalid(f"{path}.name", f"{quote(name)} must be lowercase letters, digits, "
                                               "'.', '_' or '-' (max 64)")
    if kind not in ENDPOINT_KINDS:
        raise EndpointsInvalid(f"{path}.kind", f"{quote(kind)} must be one of "
                                               f"{', '.join(ENDPOINT_KINDS)}")
    return DeviceEndpoint(name=name, kind=kind)


def to_json(endpoints: Sequence[DeviceEndpoint]) -> str:
    return json.dumps([e.to_mapping() for e in endpoints])


def from_json(text: str) -> tuple[DeviceEndpoint, ...]:
    return tuple(DeviceEndpoint(name=e["name"], kind=e["kind"]) for e in json.loads(text))


def missing(contract: Contract, endpoints: Sequence[DeviceEndpoint]) -> list[tuple[str, str]]:
    """(point, endpoint) of each point naming an endpoint not in `endpoints`; none when the
    device lists no endpoints (unknown is not missing)."""
    if not endpoints:
        return []
    names = {e.name for e in endpoints}
    return [(p.name, p.endpoint) for p in contract.points
            if p.endpoint is not None and p.endpoint not in names]
