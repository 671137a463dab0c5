"""Issue 9, hostile input: each finding reproduced against the real hub (uvicorn over real HTTP;
the real embedded broker for the MQTT channels). Sizes are kept small: an alias bomb of a few
levels proves aliases are refused, never gigabytes."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

import cbor2
import httpx
import pytest
import yaml

from contracts.codec import encode_message
from contracts.topics import Channel
from hub.auth import ApiRole
from tests.hub.conftest import bearer
from tests.hub.sync_helpers import (batch, birth, born_device, chain, device_client, publish,
                                    running_hub, wait_ack)
from tests.waiting import eventually

# The documented limits (contracts/limits.py), written out so this file also runs on the old code.
MAX_DOCUMENT_BYTES, MAX_POINTS, MAX_SEQ = 1 << 20, 2048, 2**53 - 1
OP = bearer(ApiRole.OPERATOR)
YAML = {**OP, "Content-Type": "application/yaml"}


def _alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(9))
        lines.append(f"a{i}: &a{i} [{refs}]")
    return "contract: bomb\nversion: 1\nlabels:\n" + "\n".join("  " + ln for ln in lines) + "\n"


async def test_yaml_alias_bomb_is_refused_naming_the_line_and_nothing_expands(
        client: httpx.AsyncClient) -> None:
    r = await client.post("/api/contracts", content=_alias_bomb(4), headers=YAML)  # 9^4 if expanded
    assert r.status_code == 400
    assert len(r.content) < 2000
    assert "aliases are not allowed" in r.json()["error"] and ":5:" in r.json()["error"]
    audit = (await client.get("/api/audit", headers=OP)).json()
    assert len(json.dumps(audit)) < 4000  # nothing large stored either


@pytest.mark.parametrize("media,body", [
    ("application/json", "[" * 10_000 + "]" * 10_000),
    ("application/yaml", "a: " + "[" * 10_000 + "]" * 10_000),
])
async def test_ten_thousand_deep_documents_are_a_400_not_a_500(
        client: httpx.AsyncClient, media: str, body: str) -> None:
    r = await client.post("/api/contracts", content=body, headers={**OP, "Content-Type": media})
    assert r.status_code == 400 and "nested deeper than" in r.json()["error"]


@pytest.mark.parametrize("version", [2**63, 10**4000], ids=["2^63", "10^4000"])
async def test_huge_version_is_a_422_naming_the_field(
        client: httpx.AsyncClient, tank_fill: dict[str, Any], version: int) -> None:
    doc = json.dumps({**tank_fill, "version": version})
    r = await client.post("/api/contracts", content=doc,
                          headers={**OP, "Content-Type": "application/json"})
    assert r.status_code == 422
    issues = r.json()["issues"]
    assert [i["path"] for i in issues] == ["version"] and len(r.content) < 2000


async def test_error_messages_quote_a_bounded_piece_of_the_value(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    doc = {**tank_fill, "device": "D" * 200_000, "site": ["x" * 1000] * 300}
    doc["points"][0]["unit"] = {"k" * 5000: list(range(5000))}
    r = await client.post("/api/contracts", json=doc, headers=OP)
    assert r.status_code == 422
    reasons = {i["path"]: i["reason"] for i in r.json()["issues"]}
    assert set(reasons) == {"device", "site", "points[0].unit"}
    assert all(len(reason) < 200 for reason in reasons.values())


async def test_missing_offline_is_reported_with_every_other_issue(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    doc = dict(tank_fill)
    del doc["offline"]
    doc["valid_until"] = doc["valid_from"]
    doc["safe_state"] = {"pump_speed": 99_999, "valve_open": False}
    doc["steps"][0]["until"] = "levle >= 4.0"
    r = await client.post("/api/contracts", json=doc, headers=OP)
    paths = [i["path"] for i in r.json()["issues"]]
    assert r.status_code == 422
    assert paths == ["offline", "valid_until", "safe_state.pump_speed", "steps[0].until"]


def _big_contract(tank_fill: dict[str, Any], n: int) -> dict[str, Any]:
    doc = json.loads(json.dumps(tank_fill))
    reads = [{"name": f"in_{i}", "unit_id": 1, "table": "input", "address": 100 + 2 * i,
              "type": "float32", "direction": "read", "stale_after_ms": 2000} for i in range(n - 3)]
    doc["points"] = doc["points"][:3] + reads
    return doc


async def test_more_than_max_points_is_refused_before_the_points_are_read(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    doc = _big_contract(tank_fill, MAX_POINTS + 1)
    r = await client.post("/api/contracts", json=doc, headers=OP)
    assert r.status_code == 422
    assert r.json()["issues"][0] == {"path": "points", "reason": "has 2049 entries; at most 2048 are allowed"}


async def test_health_answers_within_a_second_while_a_max_size_contract_is_checked(
        client: httpx.AsyncClient, tank_fill: dict[str, Any]) -> None:
    doc = _big_contract(tank_fill, MAX_POINTS)
    doc["points"][-1]["address"] = doc["points"][-2]["address"]  # one overlap: a full 422 path
    body = yaml.safe_dump(doc)  # YAML: decoding it is the slowest part, and it is off the loop too
    submit = asyncio.create_task(client.post("/api/contracts", content=body, headers=YAML,
                                             timeout=120))
    # The test client shares the hub's event loop: a blocked loop shows as a long gap between
    # two answers, wherever the block falls (in a request or between two of them).
    worst, last = 0.0, time.monotonic()
    while not submit.done():
        assert (await client.get("/health", timeout=30)).status_code == 200
        worst, last = max(worst, time.monotonic() - last), time.monotonic()
        await asyncio.sleep(0.02)
    r = await submit
    assert r.status_code == 422 and r.json()["issues"][0]["path"] == f"points[{MAX_POINTS - 1}].address"
    assert worst < 1.0, f"/health went {worst:.2f} s without an answer during validation"


async def test_body_over_the_cap_is_refused_while_streaming_without_reading_the_rest(
        client: httpx.AsyncClient) -> None:
    host, port = client.base_url.host, client.base_url.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"POST /api/contracts HTTP/1.1\r\nHost: {host}\r\n"
                     f"Authorization: {OP['Authorization']}\r\nContent-Type: application/json\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"[" + b" " * (64 * 1024 - 1)
        for _ in range(MAX_DOCUMENT_BYTES // len(chunk) + 2):  # just past the cap, never the end
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        await writer.drain()
        async with asyncio.timeout(10):  # the old code waited for the rest of the body forever
            status = await reader.readline()
    finally:
        writer.close()
    assert status.split()[1] == b"413"


async def test_declared_length_over_the_cap_is_refused_at_once(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/contracts/tank-fill@1/hold", content=b"x" * 5000,
                          headers={**OP, "Content-Type": "application/json"})
    assert r.status_code == 413


# -- MQTT channels: through the real embedded broker into the real hub ---------------------------

def _shared_value_bomb(levels: int, width: int = 4) -> bytes:
    """CBOR of a list of tag-28 shareables, each naming the previous one `width` times (tag 29):
    a few hundred bytes that expand to width**levels strings when walked."""
    out = [cbor2.CBORTag(28, ["x"] * width)]
    out += [cbor2.CBORTag(28, [cbor2.CBORTag(29, i)] * width) for i in range(levels)]
    return cbor2.dumps(out)


def _raw_birth(labels_cbor: bytes | None) -> bytes:
    body = {"device": "d1", "site": "s1", "boot_id": "b" * 32, "contract": None, "version": None,
            "last_seq": 0}
    if labels_cbor is None:
        return encode_message("birth", 1, body)
    marker = "__labels__"
    raw = encode_message("birth", 1, {**body, "labels": marker})
    return raw.replace(cbor2.dumps(marker), labels_cbor)


async def _healthy_device_syncs(port: int, n: int) -> int:
    async with device_client("127.0.0.1", port, "d2") as d2:
        await publish(d2, "d2", Channel.STATUS, birth("d2", n), retain=True)
        await publish(d2, "d2", Channel.JOURNAL, batch("d2", chain(n)))
        return await wait_ack(d2, n, timeout_s=20)


async def test_shared_value_birth_is_refused_and_another_device_keeps_syncing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fieldpact.hub.sync")
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None
        async with device_client("127.0.0.1", hub.broker.port, "d1") as d1:
            t0 = time.monotonic()
            await publish(d1, "d1", Channel.STATUS, _raw_birth(_shared_value_bomb(9)))
            assert await _healthy_device_syncs(hub.broker.port, 5) == 5
            elapsed = time.monotonic() - t0
    bad = [r.getMessage() for r in caplog.records if "hub_bad_message" in r.getMessage()]
    assert bad and "is not used by the wire format" in bad[0] and len(bad[0]) < 500
    assert elapsed < 20


async def test_birth_without_labels_registers_the_device(tmp_path: Path) -> None:
    async with running_hub(tmp_path) as hub:
        assert hub.broker is not None
        async with device_client("127.0.0.1", hub.broker.port, "d1") as d1:
            await publish(d1, "d1", Channel.STATUS, _raw_birth(None))
            device = await eventually(lambda: hub.store.devices.find(), 10, "d1 registered")
        alarms = hub.store.alarms.find()
    assert [d.id for d in device] == ["d1"] and alarms == []


async def test_journal_seq_beyond_range_is_refused_and_the_device_keeps_syncing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fieldpact.hub.sync")
    good = chain(5)
    huge = dict(good[0].to_mapping(), seq=2**63)
    hostile = encode_message("journal", 1, {
        "device": "d1", "from_seq": 2**63, "to_seq": 2**63, "prev_hash": bytes(32),
        "entries": [huge], "dropped_through": 0})
    async with running_hub(tmp_path) as hub:
        async with born_device(hub, "d1", 5) as d1:
            await publish(d1, "d1", Channel.JOURNAL, hostile)
            await publish(d1, "d1", Channel.JOURNAL, batch("d1", good))
            acked = await wait_ack(d1, 5, timeout_s=20)
    assert acked == 5
    bad = [r.getMessage() for r in caplog.records if "hub_bad_message" in r.getMessage()]
    assert bad and f"within 1..{MAX_SEQ}" in bad[0]
