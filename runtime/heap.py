"""The long-lived heap frozen once a process is up, shared by the agent (agent/pauses.py) and the
hub (hub/pauses.py).

The cyclic garbage collector holds the interpreter lock while it runs, and its oldest generation
walks every tracked object: after start-up a process holds tens of thousands (the imported
modules, pymodbus or Starlette and paho, the store's statements, the registry) that live as long
as it does. `freeze()` collects once, then moves every survivor to the permanent generation
(gc.freeze): later collections walk only what was made since, so they stay short. The figures
that chose it are in the two callers' docstrings.
"""
from __future__ import annotations

import gc
import time


def freeze() -> tuple[int, float]:
    """Collect, then freeze what survived: (objects frozen in all, milliseconds it took)."""
    started = time.monotonic()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count(), (time.monotonic() - started) * 1000
