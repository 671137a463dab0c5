"""Which requests of a Modbus link (agent/modbus.py) a device answers with an exception now.

Rule: a device's exception answer is a BAD reading whose reason keeps the code ("exception:2");
it is logged in words (`exception 2 (illegal data address) at holding 63`) when it starts, once per
request (unit, table, start), not every cycle, and forgotten once that request is answered again.
"""
from __future__ import annotations

import logging

from agent.link import exception_words
from agent.registers import ReadRequest
from contracts.schema import Table

log = logging.getLogger("fieldpact.agent.modbus")


class ExceptionNotes:
    """The requests answering an exception now, on the endpoint named `endpoint`."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._now: set[tuple[int, Table, int]] = set()

    def note(self, request: ReadRequest, reason: str | None) -> None:
        """`request` was answered, BAD with `reason` or good (None): log an exception that starts."""
        if reason is None and not self._now:
            return  # the usual case, every request of every cycle: nothing to note
        key = (request.unit_id, request.table, request.start)
        code = (reason or "").removeprefix("exception:")
        if not code.isdigit():
            self._now.discard(key)
            return
        if key not in self._now:
            self._now.add(key)
            words = exception_words(int(code), request.table, request.start)
            log.warning("modbus_exception endpoint=%s unit=%d %s", self.endpoint,
                        request.unit_id, words, extra={"event": "modbus_exception",
                                                      "endpoint": self.endpoint,
                                                      "unit": request.unit_id, "detail": words})
