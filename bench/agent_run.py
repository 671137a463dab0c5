"""A real Agent as the scan benchmarks run it: its contracts signed by a fresh hub key, its config,
started standalone (no broker), waited past its warm-up, measured over a window, stopped.

bench/scan.py, bench/multicontract.py and bench/endpoints.py all run the agent this one way, so
their figures are measured alike: CPU is this process's (all threads; the simulators run in
their own processes), period error is ScanStats' lateness (how late each cycle started after
its deadline), per contract where there are several.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ModbusConfig
from agent.endpoint_config import Endpoint
from agent.process import Agent
from bench._common import CpuMeter, figure, percentile
from contracts.loader import check_mapping
from contracts.signing import generate_keypair, load_private_key, sign_contract
from tests.waiting import eventually

SHIPPED_NICE = -5
"""The agent's niceness as shipped (systemd/fieldpact-agent.service `Nice=-5`): the benchmarks run
the agent at it by default (`--nice`), so a loaded host treats it as a field controller would."""

READY_TIMEOUT_S = 30.0
"""Start-up (imports, connects, the first cycles) on a loaded 2-core host takes a few seconds."""

MODBUS_TIMEOUT_S = 0.3
"""The reply timeout of every benchmark endpoint: a loopback device answers in well under 1 ms."""


def agent_config(docs: Sequence[dict[str, Any]], work: Path, *, port: int | None = None,
                 endpoints: tuple[Endpoint, ...] = ()) -> AgentConfig:
    """A standalone agent's config running `docs` (validated, signed, written to `work`), on the
    legacy Modbus TCP endpoint at `port` or on `endpoints`. Raises ContractInvalid."""
    private, public = generate_keypair(work / "keys")
    key, files = load_private_key(private), []
    for doc in docs:
        files.append(work / f"{doc['contract']}.cose")
        files[-1].write_bytes(sign_contract(check_mapping(doc), key))
    modbus = (None if port is None
              else ModbusConfig(host="127.0.0.1", port=port, timeout_s=MODBUS_TIMEOUT_S))
    return AgentConfig(device=docs[0]["device"], site=docs[0]["site"], journal=work / "journal.db",
                       trusted_key=public, contracts=tuple(files), modbus=modbus, endpoints=endpoints)


@contextlib.asynccontextmanager
async def running_agent(cfg: AgentConfig, ready: Callable[[Agent], bool],
                        what: str = "the agent past its warm-up", *,
                        nice: int | None = SHIPPED_NICE) -> AsyncIterator[Agent]:
    """The agent running until the block ends, yielded once `ready(agent)` holds, at niceness
    `nice` (None: as this process runs; the simulators started before keep theirs). Raises what
    stopped the agent, or TimeoutError naming `what`."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    if nice is not None:
        print(f"  (agent at {run_at_nice(nice)}; simulators at nice {before})", flush=True)
    agent = Agent(cfg)
    task = asyncio.create_task(agent.run(), name="bench-agent")

    def started() -> bool:
        if task.done():
            task.result()  # what stopped the agent
        return agent.started.is_set() and ready(agent)
    try:
        await eventually(started, READY_TIMEOUT_S, what)
        yield agent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        os.setpriority(os.PRIO_PROCESS, 0, before)  # what starts next (a simulator) runs as before


@dataclass(frozen=True, kw_only=True)
class Window:
    """What the agent did over a measured window."""

    wall_s: float
    cpu_pct: float
    cycles: int
    overruns: int
    skipped: int
    late_ms: list[float]  # every cycle's, in order
    by_contract: dict[str, list[float]]  # each contract's cycles' lateness
    shared: int  # cycles whose inputs came from another contract's read (agent/cycle_reads.py)

    @property
    def cpu_us_per_cycle(self) -> float:
        """CPU per cycle run: unlike the percentage, it does not fall when a loaded host makes
        the loop skip deadlines."""
        return self.cpu_pct / 100 * self.wall_s / self.cycles * 1e6 if self.cycles else 0.0


async def measure(agent: Agent, seconds: float) -> Window:
    """Run the agent `seconds` more and measure that window."""
    scan, cpu = agent.scan, CpuMeter()
    stats = scan.stats
    c0, o0, s0, shared0 = stats.cycles, stats.overruns, stats.skipped, scan.reads.shared
    before = {k: len(v) for k, v in stats.by_contract.items()}
    cpu.start()
    await asyncio.sleep(seconds)  # the measured window itself, not a wait for something
    window = cpu.stop()
    cycles = stats.cycles - c0
    return Window(wall_s=window.wall_s, cpu_pct=window.percent, cycles=cycles,
                  overruns=stats.overruns - o0, skipped=stats.skipped - s0,
                  late_ms=list(stats.lateness_ms)[-cycles:] if cycles else [],
                  by_contract={k: list(v)[before.get(k, 0):] for k, v in stats.by_contract.items()},
                  shared=scan.reads.shared - shared0)


def timing_figures(w: Window, p99_target_ms: float, *, period_ms: int = 10,
                   late_ms: Sequence[float] | None = None, label: str = "") -> None:
    """Period error p50/p99/max (of `late_ms`, default every cycle's) against the target, cycles
    run against deadlines, overruns and skipped deadlines."""
    late = w.late_ms if late_ms is None else late_ms
    p50, p99, worst = (percentile(late, q) for q in (0.5, 0.99, 1.0)) if late else (0.0,) * 3
    figure(f"{label}period error p50 / p99 / max", f"{p50:.3f} / {p99:.3f} / {worst:.3f} ms",
           f"p99 < {p99_target_ms:g} ms", bool(late) and p99 < p99_target_ms)
    figure(f"{label}cycles run / deadlines in window",
           f"{len(late)} / {round(w.wall_s * 1000 / period_ms)}")
    if not label:
        figure("overruns / cycles skipped", f"{w.overruns} / {w.skipped}")


def cpu_figures(w: Window, cpu_target_pct: float) -> None:
    """The agent's CPU over the window against the target, and per cycle run."""
    figure("agent CPU (one core, all threads)", f"{w.cpu_pct:.1f} %", f"< {cpu_target_pct:g} %",
           w.cpu_pct < cpu_target_pct)
    figure("agent CPU per cycle run", f"{w.cpu_us_per_cycle:.0f} us")


def nice_option(parser: argparse.ArgumentParser) -> None:
    """`--nice N`: the agent's niceness in a benchmark (default SHIPPED_NICE)."""
    parser.add_argument("--nice", type=int, default=SHIPPED_NICE,
                        help=f"the agent's niceness (default {SHIPPED_NICE}, as systemd runs it)")


def run_at_nice(nice: int) -> str:
    """Set the calling thread's niceness (threads it starts later inherit it); says what it runs
    at, and why when it could not be set (lowering it needs CAP_SYS_NICE)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    except PermissionError:
        return f"nice {os.getpriority(os.PRIO_PROCESS, 0)} (could not set {nice}: no CAP_SYS_NICE)"
    return f"nice {nice}" + (" as shipped (systemd Nice=-5)" if nice == SHIPPED_NICE else "")
