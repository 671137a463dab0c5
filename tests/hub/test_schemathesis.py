"""A bounded schemathesis run against the live API in CI (issue 9): the real app under uvicorn on
an ephemeral port, an admin token, schemathesis 4.x's own phases (examples, coverage, fuzzing and
the stateful phase, whose links it infers from Location headers) and every check it has: no 5xx,
every status documented, every response conforming to the OpenAPI document. Bounded by examples
per operation and a time budget so it stays well under a minute on a loaded machine."""
from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import httpx
import pytest

from hub.auth import ApiRole
from tests.hub.conftest import TOKENS

CONFIG = Path(__file__).with_name("schemathesis.toml")
MAX_EXAMPLES = 15
MAX_TIME_S = 20


def _cli() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("schemathesis is part of the test extra (pyproject.toml): reinstall the venv")
    return found


@pytest.mark.slow
async def test_schemathesis_finds_no_5xx_and_no_undocumented_status(
        client: httpx.AsyncClient, tmp_path: Path) -> None:
    base = str(client.base_url).rstrip("/")
    proc = await asyncio.create_subprocess_exec(
        _cli(), "--config-file", str(CONFIG), "run", f"{base}/openapi.json", "--checks", "all",
        "--header", f"Authorization: Bearer {TOKENS[ApiRole.ADMIN]}",
        "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_TIME_S), "--seed", "9",
        "--request-timeout", "10", "--workers", "1", "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path)
    async with asyncio.timeout(MAX_TIME_S + 60):
        out, _ = await proc.communicate()
    text = out.decode(errors="replace")
    (tmp_path / "schemathesis.out").write_text(text)
    assert proc.returncode == 0, text[-6000:]
