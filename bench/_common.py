"""Measurement helpers shared by the benchmarks: percentiles, memory, CPU, a simulator process,
signed contracts, and the one way every figure is printed (value, target, verdict).

Benchmarks print, never assert: a missed target is printed as MISS, and the run still ends 0.
"""
from __future__ import annotations

import asyncio
import contextlib
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from contracts.loader import check_mapping
from contracts.schema_serialize import format_time
from contracts.signing import generate_keypair, load_private_key, sign_contract

if TYPE_CHECKING:
    import httpx

SIM_START_TIMEOUT_S = 15.0
"""Starting a Python process that imports pymodbus takes ~1 s; 15 s tolerates a loaded host."""

TANK_EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"

CLK_TCK = 100
"""Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s (proc(5))."""


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank; raises ValueError on an empty sequence."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def rss_mb() -> tuple[float, float]:
    """(peak RSS from getrusage, current VmRSS from /proc/self/status), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return peak, current


def proc_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (proc(5) fields 14, 15)


@dataclass(frozen=True, kw_only=True)
class CpuWindow:
    """CPU used by this process (all threads) over a wall-clock window."""

    cpu_s: float
    wall_s: float

    @property
    def percent(self) -> float:
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


class CpuMeter:
    """`start()` then `stop()`; `process_time` counts every thread of this process."""

    def start(self) -> None:
        self._cpu, self._wall = time.process_time(), time.monotonic()

    def stop(self) -> CpuWindow:
        return CpuWindow(cpu_s=time.process_time() - self._cpu, wall_s=time.monotonic() - self._wall)


def figure(label: str, value: str, target: str | None = None, ok: bool | None = None) -> None:
    """One printed figure: `label: value (target ...: ok|MISS)`."""
    verdict = "" if ok is None else (" ok" if ok else " MISS")
    suffix = f"  (target {target}:{verdict})" if target else ""
    print(f"  {label:<42} {value}{suffix}", flush=True)


def median_figure(label: str, values: list[float], target_ms: float | None = None, *,
                  inclusive: bool) -> None:
    """`figure` of the median (and max) of `values`, in ms, against `target_ms` if given: met at
    the target itself when `inclusive` (<=), else only below it (<)."""
    median = statistics.median(values)
    text = f"median {median:.0f} ms, max {max(values):.0f} ms (n={len(values)})"
    if target_ms is None:
        figure(label, text)
    elif inclusive:
        figure(label, text, f"<= {target_ms:.0f} ms", median <= target_ms)
    else:
        figure(label, text, f"< {target_ms:.0f} ms", median < target_ms)


def latencies_ms(http: httpx.Client, path: str, n: int, *, warm: int) -> list[float]:
    """Milliseconds of `n` GETs of `path`, one after the other, after `warm` untimed ones.
    Raises httpx.HTTPStatusError on an error status."""
    for _ in range(warm):
        http.get(path).raise_for_status()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        http.get(path).raise_for_status()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def signed_contract(doc: dict[str, Any], keys_dir: Path, out: Path) -> Path:
    """Validate `doc`, sign it with a fresh hub key in `keys_dir`, write the COSE bytes to `out`;
    returns the public key's path. Raises ContractInvalid for a bad document."""
    private, public = generate_keypair(keys_dir)
    out.write_bytes(sign_contract(check_mapping(doc), load_private_key(private)))
    return public


def tank_example(scan_ms: int) -> dict[str, Any]:
    """The tank-fill example for device d1 on site s1, scanning every `scan_ms`, valid from a
    second ago for an hour."""
    doc: dict[str, Any] = yaml.safe_load(TANK_EXAMPLE.read_text())
    doc.update(device="d1", site="s1", scan_period_ms=scan_ms)
    window_around_now(doc)
    return doc


def window_around_now(doc: dict[str, Any], *, before_ms: int = 1000, after_ms: int = 3_600_000) -> None:
    """Set the contract's validity window around the current time (in place)."""
    now = now_ms()
    doc.update(valid_from=format_time(now - before_ms), valid_until=format_time(now + after_ms))


@contextlib.asynccontextmanager
async def simulator_process(model: str, *, tick_ms: int = 100,
                            initial: Sequence[str] = ()) -> AsyncIterator[tuple[int, int]]:
    """A simulator (`python -m simulators.cli sim device`) in its own process on an ephemeral port; yields (port, pid).
    Terminated (SIGTERM, then kill) on exit. Raises RuntimeError if it does not start."""
    args = [sys.executable, "-m", "simulators.cli", "sim", "device", "--model", model, "--port", "0",
            "--tick-ms", str(tick_ms), *[a for i in initial for a in ("--initial", i)]]
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    try:
        yield await _read_port(proc), proc.pid
    finally:
        await _stop(proc)


async def _read_port(proc: asyncio.subprocess.Process) -> int:
    assert proc.stdout is not None
    async with asyncio.timeout(SIM_START_TIMEOUT_S):
        while line := (await proc.stdout.readline()).decode():
            if line.startswith("listening"):
                fields = dict(f.split("=", 1) for f in line.split()[1:])
                return int(fields["port"])
    raise RuntimeError(f"simulator exited with {await proc.wait()} before listening")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(5):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def run_sim_cli(*argv: str) -> str:
    """Run `python -m simulators.cli ARGV` (the simulator CLI alone: it does not import the hub) to
    completion; its stdout. Raises RuntimeError on failure."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "simulators.cli", *argv,
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"fieldpact {' '.join(argv)} exited {proc.returncode}: {out.decode()}")
    return out.decode()
