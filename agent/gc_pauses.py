"""Garbage-collector pauses kept short, so they never cost the scan loop a deadline.

CPython's cyclic collector stops the process while it runs, and its oldest generation walks every
tracked object: the agent holds ~70,000 after start-up (pymodbus, SQLite, the contracts, the
imported modules), so one full collection took 38 ms in bench/endpoints.py (profiled with
gc.callbacks: four scan periods at 100 Hz, journaled as an overrun). Those objects live as long as
the process. `settle()` collects once when the scan loop starts, then moves every survivor to
the permanent generation (gc.freeze), so later collections walk only what was made since: the
readings and journal items of recent cycles.

Once per process: the collector is the process's, not one loop's (a test run starts many loops).
"""
from __future__ import annotations

import gc
import logging
import time

log = logging.getLogger("fieldpact.agent.scan")

_settled = False


def settle() -> None:
    """Collect, then freeze what survived (once per process; later calls do nothing)."""
    global _settled
    if _settled:
        return
    _settled = True
    started = time.monotonic()
    gc.collect()
    gc.freeze()
    log.info("gc_settled frozen=%d ms=%.1f", gc.get_freeze_count(), (time.monotonic() - started) * 1000)
