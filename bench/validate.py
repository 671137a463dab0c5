"""Benchmark of bounded contract checking (issue 9, finding 5). Prints, never asserts.

Run: .venv/bin/python -m bench.validate

- check: decode (YAML and JSON) + structural parse + validation of a contract of n points, for
  n = 256, 1,024 and MAX_POINTS: the time should grow about linearly (it was quadratic: 9,000
  points took 25-28 s).
- sign / verify: COSE_Sign1 over the canonical CBOR of the MAX_POINTS contract.
- refuse: a 9,000-point document is refused before any point is read.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts.errors import ContractInvalid
from contracts.limits import MAX_POINTS
from contracts.loader import check_mapping, decode_json, decode_yaml
from contracts.schema_serialize import to_mapping
from contracts.signing import sign_contract, verify_contract

CHECK_TARGET_S = 0.5
"""A MAX_POINTS contract checked (JSON) well within a second, in a worker thread at the hub."""
EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"


def document(n: int) -> dict[str, Any]:
    doc = to_mapping(check_mapping(yaml.safe_load(EXAMPLE.read_text())))
    doc["points"] += [{"name": f"in_{i}", "unit_id": 1, "table": "input", "address": 100 + 2 * i,
                       "type": "float32", "direction": "read", "stale_after_ms": 2000}
                      for i in range(n - len(doc["points"]))]
    return doc


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    for n in (256, 1024, MAX_POINTS):
        doc = document(n)
        as_json, as_yaml = json.dumps(doc), yaml.safe_dump(doc)
        tj, _ = timed(lambda: check_mapping(decode_json(as_json, "bench")))
        ty, _ = timed(lambda: check_mapping(decode_yaml(as_yaml, "bench")))
        print(f"check n={n:5d}: json {tj * 1000:7.1f} ms ({len(as_json) // 1024} KiB)  "
              f"yaml {ty * 1000:7.1f} ms ({len(as_yaml) // 1024} KiB)"
              + (f"  target json < {CHECK_TARGET_S * 1000:.0f} ms" if n == MAX_POINTS else ""))
    contract = check_mapping(document(MAX_POINTS))
    key = Ed25519PrivateKey.generate()
    ts, signed = timed(lambda: sign_contract(contract, key))
    tv, _ = timed(lambda: verify_contract(signed, key.public_key(), now_ms=contract.valid_from))
    print(f"sign {ts * 1000:.1f} ms, verify {tv * 1000:.1f} ms, signed {len(signed) // 1024} KiB")
    big = document(9000)
    tr, _ = timed(lambda: _refused(big))
    print(f"refuse 9,000 points: {tr * 1000:.2f} ms")


def _refused(doc: dict[str, Any]) -> None:
    try:
        check_mapping(doc)
    except ContractInvalid:
        return
    raise AssertionError("a 9,000-point contract was accepted")


if __name__ == "__main__":
    main()
