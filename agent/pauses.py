"""Process-wide pauses kept short, so they never cost the scan loop a deadline.

Two things outside any one loop can stop the scan for milliseconds:
- The cyclic garbage collector stops the process while it runs, and its oldest generation walks
  every tracked object: the agent holds ~70,000 after start-up (pymodbus, SQLite, the contracts,
  the imported modules), so one full collection took 38 ms in bench/endpoints.py (measured with
  gc.callbacks: four scan periods at 100 Hz, journaled as an overrun). Those objects live as long
  as the process. `settle()` collects once when the scan loop starts, then moves every survivor
  to the permanent generation (runtime/heap.py), so later collections walk only what was made since.
- The interpreter lock: the scan loop gives it up in every sleep (the final approach to a
  deadline sleeps in 200 us steps, agent/timing.py), and the journal's thread may take it then.
  A thread running Python code keeps it for the switch interval before it must hand it back:
  5 ms by default, half a period at 100 Hz. SWITCH_INTERVAL_S bounds that wait instead.

Once per process: the collector and the interpreter lock are the process's, not one loop's (a
test run starts many loops).
"""
from __future__ import annotations

import logging
import sys

from runtime import heap

log = logging.getLogger("fieldpact.agent.scan")

SWITCH_INTERVAL_S = 0.0005
"""How long another thread may hold the interpreter lock while the scan loop waits for it: well
under agent/timing.py's 1.2 ms final approach, so a deadline is still met. Smaller costs more
lock hand-overs only while two threads both run Python code (the journal thread commits rarely)."""

_settled = False


def settle() -> None:
    """Collect and freeze what survived; bound the interpreter lock's switch interval. Once per
    process (later calls do nothing)."""
    global _settled
    if _settled:
        return
    _settled = True
    frozen, ms = heap.freeze()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.info("pauses_settled frozen=%d ms=%.1f switch_interval_s=%s", frozen, ms,
             SWITCH_INTERVAL_S)
