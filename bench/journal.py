"""Journal append rate: scan cycles (4 entries in one transaction) per second, FULL vs NORMAL.

Prints figures, asserts nothing. FULL is what the agent uses (an acknowledged entry must survive
power loss); NORMAL is shown for the cost of that choice. Run: .venv/bin/python -m bench.journal
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from agent.journal import SqliteJournal
from agent.journal_sqlite import Synchronous
from contracts.chain import EntryKind

ITEMS = [(EntryKind.INPUT, {"values": {"level": [3.25, "good", None]}}, 1),
         (EntryKind.OUTPUT, {"writes": {"pump_speed": 1200, "valve_open": True}}, 1),
         (EntryKind.STEP, {"event": "step_entered", "step": "fill", "index": 0}, 1),
         (EntryKind.EVENT, {"event": "tick"}, 1)]


def rate(sync: Synchronous, cycles: int) -> float:
    with tempfile.TemporaryDirectory() as tmp, SqliteJournal(Path(tmp) / "j.db", synchronous=sync) as j:
        start = time.perf_counter()
        for _ in range(cycles):
            j.append_many(ITEMS)
        return cycles / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cycles", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    for sync, target in ((Synchronous.FULL, 10), (Synchronous.NORMAL, 2000)):
        runs = [rate(sync, a.cycles) for _ in range(a.repeats)]
        med = statistics.median(runs)
        print(f"journal append {sync.name:6s}: median {med:8.0f} cycles/s of 4 entries "
              f"(runs {', '.join(f'{r:.0f}' for r in runs)}); need >= {target} "
              f"{'ok' if med >= target else 'MISS'}")


if __name__ == "__main__":
    main()
