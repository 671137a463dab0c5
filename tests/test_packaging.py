"""A clean build ships every package and data folder and gives setuptools nothing to warn about.

The wheel is built from a copy of the tracked tree (so build/ and *.egg-info never land in the
work tree) by the setuptools build backend itself, in a subprocess, with every warning shown: the
"absent from the `packages` configuration" warning is what `pip install .` printed for the data
folders before package discovery included them.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD_TIMEOUT_S = 60
PACKAGES = ("contracts", "transport", "runtime", "agent", "hub", "simulators", "fieldpact")
SHIPPED = (
    "contracts/examples/tank-fill.yaml", "contracts/examples/pump-skid.yaml",
    "hub/static/index.html", "hub/static/app.js", "hub/static/app.css",
    "hub/acl/README.md", "hub/acl/mosquitto.acl.example", "hub/acl/policy.py",
    "transport/mqtt.py", "runtime/logs.py", "fieldpact/cli.py", "fieldpact/loopback.py",
)
NOT_SHIPPED = ("tests/", "bench/")
_BUILD = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"


def _build_wheel(tmp_path: Path) -> tuple[Path, str]:
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "*.egg-info", "build", "__pycache__", ".*cache", ".hypothesis"))
    out = tmp_path / "dist"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-W", "always", "-c", _BUILD, str(out)], cwd=src,
                          capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    assert proc.returncode == 0, proc.stderr
    return out / proc.stdout.strip().splitlines()[-1], proc.stdout + proc.stderr


def test_wheel_ships_every_package_and_data_folder_without_a_setuptools_warning(
        tmp_path: Path) -> None:
    wheel, output = _build_wheel(tmp_path)
    assert "absent from the `packages` configuration" not in output
    assert "Package would be ignored" not in output
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in SHIPPED if f not in names] == []
    sources = {p.relative_to(ROOT).as_posix() for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sorted(sources - names) == []  # every module of every subpackage (hub/store/ ...) ships
    assert [n for n in names if n.startswith(NOT_SHIPPED)] == []
