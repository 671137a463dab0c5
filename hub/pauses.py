"""The hub's process-wide pauses kept short, so the API answers while the MQTT side is busy.

The cyclic garbage collector holds the interpreter lock while it runs, so it stops the API's
thread and the MQTT side's alike, and its oldest generation walks every tracked object. A hub
holds ~80,000 of them once it is up (the imported modules, Starlette, paho, the registry, the
store's statements, 1,000 devices' records), all living as long as the process. Measured in
bench/sync.py's fleet phase (1,000 devices at 1 Hz, the API polled back to back, 2026-12-02, the
shared 2-core machine at load ~4): 2 full collections in 21 s, 271 ms each — every API request
in flight then waits for it, which is what a p99 of one device's view is made of.
`settle()` collects once when the hub is up, then moves every survivor to the permanent
generation (gc.freeze): later collections walk only what was made since (the live values,
rows and messages of the last moments), so they stay short.

Once per process: the collector is the process's, not one hub's (a test run starts many hubs).
The agent does the same for its scan loop (agent/pauses.py); both freeze through runtime/heap.py.
"""
from __future__ import annotations

import logging

from runtime import heap

log = logging.getLogger("fieldpact.hub")

_settled = False


def settle() -> None:
    """Collect, then freeze what survived. Once per process (later calls do nothing)."""
    global _settled
    if _settled:
        return
    _settled = True
    frozen, ms = heap.freeze()
    log.info("hub_pauses_settled frozen=%d ms=%.1f", frozen, ms)
