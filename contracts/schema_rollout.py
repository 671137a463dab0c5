"""The `rollout` key of a contract document: what a deployment tells the device about its push.

```yaml
rollout:
  deployment: dep-000001   # the deployment's id: 1..64 of [A-Za-z0-9._-]
  health_window_s: 300     # seconds from the contract's first boot on the device, 1..86400
  known_good: <64 hex>     # optional: content_hash (contracts.codec) of the contract it replaces
```

Rules of this module:
- The key is optional; a contract without it encodes (and hashes, and verifies) exactly as before
  the key existed, so `rollout_to_mapping` is only called for a contract that has one.
- With it, the key is part of the signed document: a device can trust the window and the hash of the
  contract to fall back to as much as it trusts the rest of the contract.
- Issues name the field (`rollout.health_window_s`) and quote the value (bounded).
- The window is held in milliseconds (`health_window_ms`), written back in seconds: a whole number
  of seconds as an integer, so the document an engineer wrote round-trips as written.
"""
from __future__ import annotations

import re
from typing import Any

from contracts import schema_fields as fields
from contracts.limits import quote
from contracts.schema import Rollout

DEPLOYMENT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
"""Deployment ids (hub/store/deployments: `dep-000001`): they appear in journal entries and logs."""

HASH_RE = re.compile(r"^[0-9a-f]{64}$")
"""A content hash: hex SHA-256 as contracts.codec.content_hash writes it (lowercase)."""

MIN_HEALTH_WINDOW_S = 1
MAX_HEALTH_WINDOW_S = 86_400
"""A day: a deployment that cannot judge a device within a day has no health window to speak of,
and the agent keeps the known-good contract around for that long at most."""

_KEYS = frozenset({"deployment", "health_window_s", "known_good"})


def _deployment(v: Any, p: str) -> str:
    s = fields.text(v, p)
    if not DEPLOYMENT_RE.match(s):
        raise fields.Bad(f"{quote(s)} must be 1..64 letters, digits, '.', '_' or '-'")
    return s


def _window_ms(v: Any, p: str) -> int:
    s = fields.number(v, p)
    if not MIN_HEALTH_WINDOW_S <= s <= MAX_HEALTH_WINDOW_S:
        raise fields.Bad(f"must be within {MIN_HEALTH_WINDOW_S}..{MAX_HEALTH_WINDOW_S} s, "
                         f"got {quote(v)}")
    return round(s * 1000)


def _hash(v: Any, p: str) -> str:
    s = fields.text(v, p)
    if not HASH_RE.match(s):
        raise fields.Bad(f"{quote(s)} must be a content hash: 64 lowercase hex digits")
    return s


def parse_rollout(r: fields.Reader, raw: Any) -> Rollout | None:
    """The document's `rollout` mapping, or None when absent or unreadable (the issues say why)."""
    if raw is None:
        return None
    m = r.table(raw, "rollout", _KEYS)
    if m is None:
        return None
    deployment = r.get(m, "deployment", "rollout", _deployment)
    window = r.get(m, "health_window_s", "rollout", _window_ms)
    known_good = r.get(m, "known_good", "rollout", _hash, None)
    if deployment is None or window is None:
        return None
    return Rollout(deployment=deployment, health_window_ms=window, known_good=known_good)


def rollout_to_mapping(ro: Rollout) -> dict[str, Any]:
    """The inverse of parse_rollout: every field explicit (`known_good` None included)."""
    s: int | float = ro.health_window_ms // 1000 if ro.health_window_ms % 1000 == 0 \
        else ro.health_window_ms / 1000
    return {"deployment": ro.deployment, "health_window_s": s, "known_good": ro.known_good}
