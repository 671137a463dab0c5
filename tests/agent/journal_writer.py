"""Crash-test helper: append to a journal in a loop, printing each committed head seq.

Usage: python tests/agent/journal_writer.py DB_PATH [MAX_CYCLES]

Each cycle is one 4-entry `append_many` (a scan cycle); the last seq is printed and flushed only
after the commit returned, so every printed seq is one the journal promised to keep. The loop is
bounded (MAX_CYCLES, default 100000) so a forgotten process ends by itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from agent.journal import SqliteJournal  # noqa: E402
from contracts.chain import EntryKind  # noqa: E402


def main(argv: list[str]) -> int:
    path, cycles = Path(argv[1]), int(argv[2]) if len(argv) > 2 else 100_000
    with SqliteJournal(path) as journal:
        for cycle in range(cycles):
            ts = 1_700_000_000_000 + cycle * 100
            entries = journal.append_many([
                (EntryKind.INPUT, {"values": {"level": [cycle / 100, "good", None]}}, ts),
                (EntryKind.OUTPUT, {"writes": {"pump_speed": cycle % 1500}}, ts),
                (EntryKind.STEP, {"event": "tick", "cycle": cycle, "pad": "x" * (cycle % 50)}, ts),
                (EntryKind.EVENT, {"event": "cycle_done"}, ts),
            ])
            print(entries[-1].seq, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
