"""The agent's answer to the hub's commissioning request (`…/commission` in, `…/commission/report` out).

Rules:
- What is commissioned: the contract about to act (a pending one), else a running one; with
  neither, the request is refused ("no contract").
- When: read-only polling shares the device with the scan loop, so it runs only while no step
  drives the outputs — no segment, or its mode is not LIVE (RUNNING, HELD, OFFLINE_HOLD): pending,
  safe state, completed, failed, expired, aborted. During a live step it is refused, naming the
  contract and the step, because extra reads beside a write step can delay the loop's own reads
  and are not known to be harmless. A step that starts during the poll stops it (refused, no
  report). The rule is `refusal()`, pure over the scan loop's state.
- One poll at a time: a request while one runs is refused ("busy"). The poll is bounded by the
  request's `seconds` (at most MAX_SECONDS) plus one round; it reads through the agent's own
  DeviceLink and writes nothing (agent/commission_run.py).
- The answer is published at QoS 1 with the request's id; a reply that cannot be sent is logged and
  dropped (the hub shows the request as timed out and can ask again).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agent.commission_run import DEFAULT_INTERVAL_S, poll
from agent.commission import analyse
from agent.scan import ScanLoop
from contracts.commission_wire import CommissionReply, CommissionRequest
from contracts.engine_state import LIVE
from contracts.errors import EncodingError
from contracts.schema import Contract
from transport.mqtt import LinkDown

log = logging.getLogger("fieldpact.agent.commission")

Send = Callable[[bytes], Awaitable[None]]


def target(scan: ScanLoop) -> Contract | None:
    """The contract a commissioning request checks: a pending one (the first by id), else a
    running one (ScanLoop.segment: the first by id)."""
    if scan.pending:
        return scan.pending[min(scan.pending)].contract
    return scan.segment.active.contract if scan.segment is not None else None


def refusal(scan: ScanLoop) -> str | None:
    """Why a poll may not run now (see the module rules), or None. With several contracts on the
    agent, any one of them in a live step refuses it."""
    for key in sorted(scan.segments):
        seg = scan.segments[key]
        if seg.state.mode in LIVE:
            c = seg.active.contract
            return (f"{c.contract}@{c.version} is {seg.state.mode.value} in step "
                    f"{seg.step_name()}: commissioning reads only while no step drives the outputs")
    return None if target(scan) is not None else "no contract to commission"


class CommissionResponder:
    """Takes requests from the uplink (never blocking it) and answers each from a task of its own."""

    def __init__(self, scan: ScanLoop, send: Send, *,
                 interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.scan, self.send, self.interval_s = scan, send, interval_s
        self._task: asyncio.Task[None] | None = None
        self._replies: set[asyncio.Task[None]] = set()  # refusals being sent (held: tasks are weak)

    def on_request(self, payload: bytes) -> None:
        """Decode and start (or refuse) a request. Raises EncodingError for a bad payload."""
        request = CommissionRequest.from_bytes(payload)
        busy = self._task is not None and not self._task.done()
        why = "busy: a commissioning poll is running" if busy else refusal(self.scan)
        contract = target(self.scan)
        if why is not None or contract is None:
            log.info("commission_refused id=%s why=%s", request.id, why)
            reply = self._spawn(self._reply(CommissionReply(id=request.id,
                                                            refused=why or "no contract")))
            self._replies.add(reply)
            reply.add_done_callback(self._replies.discard)
            return
        log.info("commission_started id=%s contract=%s seconds=%s", request.id, contract.contract,
                 request.seconds)
        self._task = self._spawn(self._answer(request, contract))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.add_done_callback(_log_failure)
        return task

    async def _answer(self, request: CommissionRequest, contract: Contract) -> None:
        started_ms = time.time_ns() // 1_000_000
        samples = await poll(contract, self.scan.link, seconds=request.seconds,
                             interval_s=self.interval_s,
                             keep_going=lambda: refusal(self.scan) is None)
        why = refusal(self.scan)
        if why is not None:
            await self._reply(CommissionReply(id=request.id, refused=f"stopped: {why}"))
            return
        report = analyse(contract, samples, started_ms=started_ms, seconds=request.seconds)
        log.info("commission_done id=%s ok=%s failing=%s", request.id, report.ok,
                 ",".join(p.name for p in report.failing())[:200])
        await self._reply(CommissionReply(id=request.id, report=report))

    async def _reply(self, reply: CommissionReply) -> None:
        try:
            await self.send(reply.to_bytes())
        except (LinkDown, OSError, EncodingError) as exc:
            log.warning("commission_reply_unsent id=%s error=%s", reply.id, exc)

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._replies) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("commission_failed error=%r", task.exception())
