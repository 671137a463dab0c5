"""The contract CLI, driven in-process through fieldpact.cli.main and once as a real subprocess."""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fieldpact.contract_cli import sample, transitions
from fieldpact.cli import main

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "contracts" / "examples" / "tank-fill.yaml"
DURING, AFTER = "2026-11-24T07:00:00Z", "2026-11-25T06:00:00Z"


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    assert main(["keys", "generate", "--out", str(tmp_path / "keys")]) == 0
    return tmp_path / "keys" / "hub.key", tmp_path / "keys" / "hub.pub"


@pytest.fixture
def signed(tmp_path: Path, keys: tuple[Path, Path]) -> Path:
    out = tmp_path / "tank-fill.cose"
    assert main(["contract", "sign", str(EXAMPLE), "--key", str(keys[0]), "--out", str(out)]) == 0
    return out


def broken(tmp_path: Path) -> Path:
    text = EXAMPLE.read_text().replace("scan_period_ms: 100", "scan_period_ms: 1")
    path = tmp_path / "broken.yaml"
    path.write_text(text.replace("version: 3", "version: 0"))
    return path


def test_validate_passes_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    examples = sorted(str(p) for p in (ROOT / "contracts" / "examples").glob("*.yaml"))
    assert main(["contract", "validate", *examples]) == 0
    assert capsys.readouterr().out.count(": ok (") == len(examples)


def test_validate_prints_every_issue_of_every_file(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    bad = broken(tmp_path)
    assert main(["contract", "validate", str(EXAMPLE), str(bad), str(tmp_path / "none.yaml")]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{bad}: version: must be within 1..2147483647, got 0" in out
    assert any(line.startswith(f"{bad}: scan_period_ms: must be within") for line in out)
    assert any(line.startswith(str(tmp_path / "none.yaml")) for line in out)


def test_sign_refuses_an_invalid_contract(tmp_path: Path, keys: tuple[Path, Path],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.cose"
    assert main(["contract", "sign", str(broken(tmp_path)), "--key", str(keys[0]),
                 "--out", str(out)]) == 1
    assert "version: must be within 1..2147483647" in capsys.readouterr().out and not out.exists()


def test_verify_prints_contract_and_hash(signed: Path, keys: tuple[Path, Path],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "verify", str(signed), "--pubkey", str(keys[1]),
                 "--device", "pump-station-7", "--at", DURING]) == 0
    out = capsys.readouterr().out
    assert "contract: tank-fill" in out and "version: 3" in out and "hash: " in out


@pytest.mark.parametrize(("extra", "reason"), [
    (["--at", AFTER], "refused: expired: "),
    (["--at", "2026-11-23T00:00:00Z"], "refused: not_yet_valid: "),
    (["--at", DURING, "--device", "pump-station-8"], "refused: wrong_device: "),
])
def test_verify_prints_the_refusal(signed: Path, keys: tuple[Path, Path], extra: list[str],
                                   reason: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["contract", "verify", str(signed), "--pubkey", str(keys[1]), *extra]) == 1
    assert capsys.readouterr().out.startswith(reason)


def test_verify_of_a_tampered_file_is_bad_signature(signed: Path, keys: tuple[Path, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(signed.read_bytes())
    data[-1] ^= 0x01
    signed.write_bytes(bytes(data))
    assert main(["contract", "verify", str(signed), "--pubkey", str(keys[1]), "--at", DURING]) == 1
    assert capsys.readouterr().out.startswith("refused: bad_signature: ")


def test_keys_generate_refuses_to_overwrite(keys: tuple[Path, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--out", str(keys[0].parent)]) == 1
    assert "already exists" in capsys.readouterr().out


def test_bad_time_and_missing_command_are_usage_errors(signed: Path, keys: tuple[Path, Path]) -> None:
    assert main(["contract", "verify", str(signed), "--pubkey", str(keys[1]), "--at", "noon"]) == 2
    assert main([]) == 2


def test_console_script_signs_and_verifies_in_a_subprocess(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "fieldpact"

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=60)

    assert run("keys", "generate", "--out", str(tmp_path)).returncode == 0
    out = tmp_path / "c.cose"
    assert run("contract", "sign", str(EXAMPLE), "--key", str(tmp_path / "hub.key"),
               "--out", str(out)).returncode == 0
    done = run("contract", "verify", str(out), "--pubkey", str(tmp_path / "hub.pub"), "--at", AFTER)
    assert done.returncode == 1 and done.stdout.startswith("refused: expired: ")


@dataclass(frozen=True, kw_only=True)
class Point:
    ts_ms: int
    step: str | None
    mode: str
    outputs: tuple[tuple[str, object], ...] = ()
    modelled: tuple[tuple[str, object], ...] = ()


def test_sample_takes_the_first_point_at_or_after_each_tick() -> None:
    points = [Point(ts_ms=t, step="fill", mode="running") for t in (0, 40, 100, 110, 250, 260, 300)]
    assert [p.ts_ms for p in sample(points, 0, 100)] == [0, 100, 250, 300]


def test_transitions_are_changes_of_step_or_mode() -> None:
    steps = [("fill", "running"), ("fill", "running"), ("hold", "running"), ("hold", "safe"), (None, "done")]
    points = [Point(ts_ms=i, step=s, mode=m) for i, (s, m) in enumerate(steps)]
    assert [p.ts_ms for p in transitions(points)] == [0, 2, 3, 4]


def test_project_prints_table_transitions_and_confidence(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("contracts.projection")
    assert main(["contract", "project", str(EXAMPLE), "--hours", "2", "--every-s", "600"]) == 0
    out = capsys.readouterr().out
    assert "tank-fill v3 projected" in out and "transitions" in out and "confidence: " in out
    assert "2026-11-24T06:00:00Z" in out and "fill" in out


def test_validate_reports_a_missing_offline_with_every_other_mistake(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 9 finding 8: a contract missing `offline` used to report only that."""
    lines = [ln for ln in EXAMPLE.read_text().splitlines() if not ln.startswith("offline:")]
    text = "\n".join(lines).replace("limits: [0, 1500]", "limits: [0, 99999]")
    text = text.replace('"level >= 4.0', '"levle >= 4.0').replace("version: 3", "version: 0")
    path = tmp_path / "many.yaml"
    path.write_text(text)
    assert main(["contract", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    for where in ("version:", "offline: is required", ".limits:", "until: names unknown point"):
        assert f"{path}: " in out and where in out, where
