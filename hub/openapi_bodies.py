"""The request bodies of the hub API's OpenAPI document (hub/openapi.py): which endpoints read a
body, and the JSON schema (and, for a submission, the example) of each.

Rules:
- `BODY_ENDPOINTS` names every endpoint that reads a body; hub/openapi.py documents a 400 and a
  413 for each (bodies are capped while streaming), and takes its request body from `bodies()`.
- A schema says what the endpoint reads; the rules of the documents themselves live where they
  are checked, named beside each table (contracts/fleet_design.py, contracts/rollout_strategy.py).
- The submission's example is the shipped tank-fill contract, loaded once, on first use.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from contracts.commission_report import MAX_SECONDS
from contracts.loader import load_contract
from contracts.schema import ID_RE
from contracts.schema_serialize import to_mapping
from hub.device_endpoints import ENDPOINT_KINDS, MAX_ENDPOINTS

BODY_ENDPOINTS = frozenset({"submit_contract", "hold_contract", "abort_contract",
                            "resume_contract", "reset_device", "register_device",
                            "enroll_journal_key", "set_endpoints", "create_design", "create_binding",
                            "create_snapshot", "create_plan", "set_desired",
                            "request_commissioning", "create_deployment", "rollback_deployment"})
_REQUIRED_REASON = {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "required": ["reason"], "additionalProperties": False,
    "properties": {"reason": {"type": "string", "maxLength": 500, "pattern": "\\S",
                              "description": "why (audited); not only white space"}}}}}}
_REASON_BODY = {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"reason": {"type": "string"}}}}}}
_EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"


@functools.cache
def _example_contract() -> dict[str, Any]:
    """The shipped tank-fill example as a JSON document: the request example of a submission
    (also what lets schemathesis reach the routes behind it: its 201 carries a Location)."""
    return to_mapping(load_contract(_EXAMPLE))


_TOPIC_LEVEL = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[^/+#\\x00]+$",
                "description": "one MQTT topic level (contracts/topics.py)"}
_JOURNAL_KEY = {"type": "string", "pattern": "^ed25519:[A-Za-z0-9+/]{43}=$",
                "description": "the agent's journal public key, `fieldpact agent pubkey`"}
_ENDPOINTS = {"type": "array", "maxItems": MAX_ENDPOINTS, "items": {
    "type": "object", "required": ["name", "kind"], "additionalProperties": False, "properties": {
        "name": {"type": "string", "pattern": ID_RE.pattern},
        "kind": {"type": "string", "enum": list(ENDPOINT_KINDS)}}},
    "description": "the agent's endpoints (names unique; [] = unknown): hub/device_endpoints.py"}


def bodies() -> Mapping[str, Mapping[str, Any]]:
    return {
        "submit_contract": {"required": True, "content": {
            "application/json": {"schema": {"type": "object"}, "example": _example_contract()},
            "application/yaml": {"schema": {"type": "object"}}}},
        "hold_contract": _REASON_BODY, "abort_contract": _REASON_BODY,
        "resume_contract": _REQUIRED_REASON, "reset_device": _REQUIRED_REASON,
        "register_device": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["id", "site"], "properties": {
                "id": _TOPIC_LEVEL, "site": _TOPIC_LEVEL,
                "labels": {"type": "object", "maxProperties": 32,
                           "propertyNames": {"maxLength": 128},
                           "additionalProperties": {"type": "string", "maxLength": 128}},
                "journal_key": {**_JOURNAL_KEY, "type": ["string", "null"]},
                "endpoints": _ENDPOINTS}}}}},
        "enroll_journal_key": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["journal_key"],
            "properties": {"journal_key": _JOURNAL_KEY}}}}},
        "set_endpoints": _json_body({"type": "object", "required": ["endpoints"],
                                     "properties": {"endpoints": _ENDPOINTS}}),
        **_fleet_bodies(),
        **_deployment_bodies(),
        "request_commissioning": {"required": False, "content": {"application/json": {"schema": {
            "type": "object", "additionalProperties": False, "properties": {"seconds": {
                "type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS,
                "description": "how long the agent polls (default 3)"}}}}}},
    }


_SELECTOR = {"type": "object", "additionalProperties": False, "properties": {
    "devices": {"type": "array", "items": {"type": "string"}},
    "sites": {"type": "array", "items": {"type": "string"}},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "description": "devices by id, site and labels (every given part must hold)"}


def _json_body(schema: Mapping[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": dict(schema)}}}


def _fleet_bodies() -> dict[str, Any]:
    """Request bodies of the fleet configuration routes (hub/fleet_api.py, hub/drift_api.py;
    the documents' rules are in contracts/fleet_design.py and fleet_binding.py)."""
    snapshot_prop = {"snapshot": {"type": "string", "minLength": 1, "maxLength": 128,
                                  "description": "a snapshot id"}}
    snapshot_ref = {"type": "object", "required": ["snapshot"], "properties": snapshot_prop}
    return {
        "create_design": _json_body({"type": "object", "required": ["design", "version", "points",
                                                                     "steps"],
                                     "description": "a contract template with `parameters`"}),
        "create_binding": _json_body({"type": "object", "required": ["binding", "design", "match",
                                                                      "points"]}),
        "create_snapshot": _json_body({"type": "object", "properties": {
            "designs": {"type": ["object", "null"], "additionalProperties": {
                "type": ["integer", "null"]}, "description": "name -> version (null: the latest)"},
            "bindings": {"type": ["array", "null"], "items": {"type": "string"},
                         "description": "binding names (null or absent: every binding of them)"},
            "target": _SELECTOR}}, required=False),  # no body: every binding, every device
        "create_plan": _json_body({**snapshot_ref, "properties": {
            **snapshot_prop, "target": _SELECTOR,
            "documents": {"type": "boolean", "description": "each would-get contract in full"}}}),
        "set_desired": _json_body(snapshot_ref),
    }


def _deployment_bodies() -> dict[str, Any]:
    """Request bodies of hub/deploy_api.py (interface I4; the rules: contracts/rollout_strategy.py
    and the health spec's parser)."""
    one_of = {"type": "object", "maxProperties": 2}
    strategy = {"type": "object", "additionalProperties": False, "properties": {
        "canary": {**one_of, "description": "{devices: [id]} | {count: n} | {percent: p}"},
        "waves": {**one_of, "description": "{size: n} | {rate_per_min: r, growth: g}"},
        "approval": {"type": "string", "enum": ["auto", "manual"]},
        "pause_s": {"type": "number", "minimum": 0, "maximum": 86400},
        "reach_deadline_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        "verify_margin_s": {"type": "number", "minimum": 0, "maximum": 86400,
                            "description": "after the reach deadline and the health window, a "
                                           "device still unproven fails its gate `unproven`"},
        "abort": {"type": "object", "additionalProperties": False, "properties": {
            "failure_pct": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
            "min_executed": {"type": "integer", "minimum": 1}}}}}
    return {
        "create_deployment": _json_body({"type": "object", "required": ["snapshot"],
                                         "additionalProperties": False, "properties": {
            "snapshot": {"type": "string", "minLength": 1, "maxLength": 128},
            "target": {"type": "object", "additionalProperties": False, "properties": {
                "site": {"type": "string"}, "devices": {"type": "array", "items": {
                    "type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "strategy": strategy,
            "health": {"type": "object", "description": "window_s, min_cycles, step, telemetry, "
                                                        "commissioning (interface I3)"}}}),
        "rollback_deployment": _REQUIRED_REASON,
    }

