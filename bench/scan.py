"""Benchmark of the agent's scan loop on a real device link. Prints, never asserts.

Run: .venv/bin/python -m bench.scan [--seconds 30] [--journal-seconds 30] [--quick]

1. 100 Hz: a real Agent (standalone, no broker; journal on a real file, synchronous=FULL) runs a
   contract of 32 read points (+2 owned write points) at scan_period_ms=10 against the tank
   simulator in ANOTHER process (`fieldpact sim device`), so the CPU and RSS figures are the
   agent's own; the simulator's CPU is printed beside them. The first WARMUP_S are not measured.
   Period error is ScanStats.lateness_ms: how late each cycle started after its deadline.
2. Journal at 10 Hz: the tank-fill example as written (100 ms, its deadbands) in the `fill` step,
   with sensor noise of --noise-milli mm (a radar level transmitter's repeatability is ~2-3 mm).
   Fill is the busiest phase (the level moves 16 mm/s against a 10 mm deadband); hold journals
   only the 2 mm/s drain and the 1/min keyframes. Extrapolating the fill phase over 24 h therefore
   gives an upper bound for a day of this contract.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agent.process import Agent
from bench._common import (
    figure, proc_cpu_s, rss_mb, run_sim_cli, simulator_process, window_around_now,
)
from bench.agent_run import (
    Window, agent_config, cpu_figures, measure as measure_window, nice_option, running_agent,
    timing_figures,
)

P99_TARGET_MS = 1.0
"""Sub-millisecond period error is what agent/timing.py's spin buys (SPIN_S)."""
CPU_TARGET_PCT = 15.0
"""One field controller core hosts the agent beside the OS and other services."""
RSS_TARGET_MB = 80.0
"""Small industrial PCs and gateways ship with 512 MB - 1 GB of RAM."""
JOURNAL_TARGET_MB_DAY = 50.0
"""DEFAULT_JOURNAL_BUDGET_MB (512) must hold a week of journal at 10 Hz (agent/config.py)."""
WARMUP_S = 1.0
SAMPLE_ROWS = 20_000
STEADY_RPM = 1200
"""pump_speed in the example's `fill` step."""
EXAMPLE = Path(__file__).parents[1] / "contracts" / "examples" / "tank-fill.yaml"


def _read(name: str, table: str, address: int, type_: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "unit_id": 1, "table": table, "address": address, "type": type_,
            "direction": "read", "stale_after_ms": 500, **extra}


def wide_points() -> list[dict[str, Any]]:
    """32 read points over the tank simulator's tables (REGISTER_SPAN 0..63): the tank's own
    three, 14 float32 + 8 int16 inputs, 7 uint16 holding registers; addresses never overlap."""
    points = [_read("level", "input", 0, "float32", range=[0, 6], deadband=0.01),
              _read("high_level", "discrete", 0, "bool"),
              _read("pump_speed_feedback", "holding", 21, "uint16", scale=0.1)]
    points += [_read(f"ai{i}", "input", 2 + 2 * i, "float32", range=[-1000, 1000], deadband=0.1)
               for i in range(14)]
    points += [_read(f"si{i}", "input", 30 + i, "int16") for i in range(8)]
    points += [_read(f"hr{i}", "holding", i, "uint16") for i in range(7)]
    return points


def example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    doc.update(device="bench-1", site="lab")
    window_around_now(doc)
    return doc


def wide_contract() -> dict[str, Any]:
    doc = example()
    writes = [p for p in doc["points"] if p["direction"] == "write"]
    doc.update(scan_period_ms=10, points=wide_points() + writes)
    return doc


@dataclass(frozen=True, kw_only=True)
class JournalSize:
    entries: int
    bytes: int  # logical database size: page_count x page_size (WAL frames included)


def journal_size(path: Path) -> JournalSize:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        (entries,) = db.execute("SELECT count(*) FROM entries").fetchone()
        (pages,) = db.execute("PRAGMA page_count").fetchone()
        (page,) = db.execute("PRAGMA page_size").fetchone()
    return JournalSize(entries=entries, bytes=pages * page)


def bytes_per_entry(path: Path, after_seq: int) -> float:
    """On-disk bytes per entry for the mix of entries after `after_seq`, measured by inserting that
    mix SAMPLE_ROWS times over into the journal's own `entries` schema in a scratch file: a short
    window grows the real file by a few 4 KiB pages, too coarse to extrapolate from."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        schema = [r[0] for r in db.execute("SELECT sql FROM sqlite_master WHERE tbl_name = "
                                           "'entries' AND sql IS NOT NULL ORDER BY type DESC")]
        rows = db.execute("SELECT ts_ms, kind, body, prev_hash, hash FROM entries WHERE seq > ? "
                          "ORDER BY seq", (after_seq,)).fetchall()
    if not rows:
        return 0.0
    with tempfile.TemporaryDirectory() as tmp, contextlib.closing(sqlite3.connect(Path(tmp) / "s.db")) as s:
        for sql in schema:
            s.execute(sql)
        (empty,) = s.execute("PRAGMA page_count").fetchone()
        copies = -(-SAMPLE_ROWS // len(rows))
        s.executemany("INSERT INTO entries (seq, ts_ms, kind, body, prev_hash, hash) "
                      "VALUES (?, ?, ?, ?, ?, ?)",
                      ((k * len(rows) + i + 1, *r) for k in range(copies) for i, r in enumerate(rows)))
        s.commit()
        (pages,) = s.execute("PRAGMA page_count").fetchone()
        (page,) = s.execute("PRAGMA page_size").fetchone()
    return float((pages - empty) * page / (copies * len(rows)))


def warm(agent: Agent, period_ms: int) -> bool:
    """Past WARMUP_S and the pump's start-up ramp (300 rpm/s to 1200: 4 s of writes), so the
    window measures the steady `fill` step (of `tank-pump` where there are several contracts:
    bench/multicontract.py)."""
    seg = agent.scan.segments.get("tank-pump", agent.scan.segment)
    return (agent.scan.stats.cycles * period_ms >= WARMUP_S * 1000 and seg is not None
            and dict(seg.state.outputs).get("pump_speed") == STEADY_RPM)


@dataclass(frozen=True, kw_only=True)
class Run:
    window: Window
    sim_cpu_pct: float
    journal: JournalSize
    bytes_per_entry: float  # of the window's entry mix, see bytes_per_entry()
    mode: str


async def measure(agent: Agent, seconds: float, sim_pid: int) -> Run:
    """Run the agent `seconds` more and measure the window, the journal's growth included."""
    j0 = journal_size(agent.cfg.journal)
    head0, _ = await agent.journal.head()
    sim0 = proc_cpu_s(sim_pid)
    window = await measure_window(agent, seconds)
    sim_cpu = proc_cpu_s(sim_pid) - sim0
    j1 = journal_size(agent.cfg.journal)
    seg = agent.scan.segment
    return Run(window=window, sim_cpu_pct=100 * sim_cpu / window.wall_s,
               journal=JournalSize(entries=j1.entries - j0.entries, bytes=j1.bytes - j0.bytes),
               bytes_per_entry=bytes_per_entry(agent.cfg.journal, head0),
               mode=f"{seg.state.mode.value}/{seg.step_name()}" if seg else "no segment")


async def bench_100hz(seconds: float, nice: int) -> None:
    print(f"scan loop, 32 read + 2 write points, scan_period_ms=10 (100 Hz), {seconds:g} s "
          f"after warm-up (>= {WARMUP_S:g} s and the pump ramp done); simulator in its own process", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as tmp:
        async with simulator_process("tank", tick_ms=100, initial=["level=1.0"]) as (port, pid):
            doc = wide_contract()
            async with running_agent(agent_config([doc], Path(tmp), port=port),
                                     lambda a: warm(a, doc["scan_period_ms"]), nice=nice) as agent:
                run = await measure(agent, seconds, pid)
    w = run.window
    timing_figures(w, P99_TARGET_MS)
    cpu_figures(w, CPU_TARGET_PCT)
    figure("simulator CPU (separate process)", f"{run.sim_cpu_pct:.1f} %")
    peak, current = rss_mb()
    figure("agent RSS peak (getrusage) / VmRSS", f"{peak:.1f} / {current:.1f} MB",
           f"< {RSS_TARGET_MB:g} MB", peak < RSS_TARGET_MB)
    per_h = run.journal.entries / w.wall_s * 3600 * run.bytes_per_entry
    figure("journal growth", f"{run.journal.entries} entries, {run.journal.bytes} B of pages in "
           f"{w.wall_s:.1f} s")
    figure("journal per hour (entries/s x B/entry)", f"{per_h / 1e6:.2f} MB/h "
           f"({run.bytes_per_entry:.0f} B/entry)")
    figure("engine at the end", run.mode)


async def bench_journal_10hz(seconds: float, noise_milli: int, nice: int) -> None:
    print(f"journal at 10 Hz: tank-fill example (100 ms, its deadbands), step fill, level noise "
          f"sigma {noise_milli} mm, {seconds:g} s", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as tmp:
        async with simulator_process("tank", tick_ms=100, initial=["level=1.0"]) as (port, pid):
            if noise_milli:
                await run_sim_cli("sim", "fault", "--port", str(port), "--enable", "noise",
                              "--noise-milli", str(noise_milli))
            doc = example()
            async with running_agent(agent_config([doc], Path(tmp), port=port),
                                     lambda a: warm(a, doc["scan_period_ms"]), nice=nice) as agent:
                run = await measure(agent, seconds, pid)
    wall_s = run.window.wall_s
    rate = run.journal.entries / wall_s
    per_day = rate * 86_400 * run.bytes_per_entry / 1e6
    figure("journal growth", f"{run.journal.entries} entries ({rate:.2f}/s), "
           f"{run.journal.bytes} B of pages in {wall_s:.1f} s")
    figure("bytes per entry on disk (window's mix)", f"{run.bytes_per_entry:.0f} B")
    figure("journal per day (entries/s x B/entry x 86400)", f"{per_day:.1f} MB/day",
           f"< {JOURNAL_TARGET_MB_DAY:g} MB/day", per_day < JOURNAL_TARGET_MB_DAY)
    figure("engine at the end", run.mode)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="100 Hz measured window")
    parser.add_argument("--journal-seconds", type=float, default=30.0, help="10 Hz measured window")
    parser.add_argument("--noise-milli", type=int, default=3, help="level noise sigma, mm")
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    nice_option(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # overruns are counted and printed, not logged
    if args.quick:
        args.seconds = args.journal_seconds = 5.0
    started = time.monotonic()
    asyncio.run(bench_100hz(args.seconds, args.nice))
    asyncio.run(bench_journal_10hz(args.journal_seconds, args.noise_milli, args.nice))
    print(f"done in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
