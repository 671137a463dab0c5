"""An event loop of its own, in a thread of its own: where the hub's MQTT side runs (issue 8).

Why: the API's loop must answer operators within milliseconds while 1,000 devices send telemetry
and journals; on one loop, every message handled is time the API waits (the hub once handled 156
of 1,000 telemetry messages a second while its API was polled). Python threads share one
interpreter lock, but SQLite, sockets and fsync release it, and each loop stays responsive
because neither runs the other's work.

Rules:
- `start(main)` runs `main(ready)` on the new loop and returns once `main` calls `ready()`; if
  `main` fails first, or does not get ready within the timeout, `start` raises (and stops it).
- The objects `main` creates belong to that loop and thread (its own SQLite connection among
  them); other threads reach them only through `asyncio.run_coroutine_threadsafe` with a bounded
  wait (hub/sync/outbound.py MqttPublisher).
- A failure after start is logged at once and kept in `error`; `stop()` re-raises it.
- `stop()` cancels `main` and waits a bounded time. Python 3.11's `wait_for` can swallow a
  cancellation (transport/cancel.py), so the cancel is repeated until the thread ends. The thread is
  a daemon: even a loop that never ends cannot keep the process from exiting.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable

from hub.errors import HubError

log = logging.getLogger("fieldpact.hub.loop_thread")

Main = Callable[[Callable[[], None]], Awaitable[None]]

RECANCEL_S = 5.0
"""How long `stop` waits before repeating its cancellation: long enough for a real teardown (the
embedded broker closing 1,000 sessions takes seconds on a loaded host), which a repeated
cancellation would interrupt, short enough that a swallowed one is not waited out for long."""


class LoopThreadError(HubError, RuntimeError):
    """The thread's loop did not start or stop in time."""


class LoopThread:
    def __init__(self, name: str, *, recancel_s: float = RECANCEL_S) -> None:
        self.name, self._recancel_s = name, recancel_s
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._main: Main | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    @property
    def running(self) -> bool:
        """Started and not yet ended (the thread itself may take a moment more to exit)."""
        return self._thread.ident is not None and not self._done.done()

    async def start(self, main: Main, timeout_s: float) -> None:
        """Run `main(ready)` in the thread; return when it called `ready()`. Raises what `main`
        raised before that, or LoopThreadError after `timeout_s`."""
        self._main = main
        self._thread.start()
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.wrap_future(self._ready)
        except TimeoutError:
            await self._stop_quietly(timeout_s)
            raise LoopThreadError(f"{self.name}: not ready within {timeout_s:g} s") from None
        except BaseException:
            await self._stop_quietly(timeout_s)
            raise

    async def stop(self, timeout_s: float) -> None:
        """Cancel `main` and wait for the thread to end. Raises the failure kept in `error`, or
        LoopThreadError if the thread is still running after `timeout_s`."""
        done = asyncio.wrap_future(self._done)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not done.done():
            self._cancel()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.error("loop_thread_stop_timeout name=%s s=%g", self.name, timeout_s)
                raise LoopThreadError(f"{self.name}: still running {timeout_s:g} s after stop")
            await asyncio.wait({done}, timeout=min(self._recancel_s, left))
        if self.error is not None:
            raise self.error

    async def _stop_quietly(self, timeout_s: float) -> None:
        try:
            await self.stop(timeout_s)
        except Exception:  # the start error being raised is the one that matters
            log.exception("loop_thread_stop_failed name=%s", self.name)

    def _cancel(self) -> None:
        loop, task = self.loop, self._task
        if loop is None or task is None:
            return
        try:
            loop.call_soon_threadsafe(task.cancel)
        except RuntimeError:
            pass  # the loop is closed: the thread is ending

    def _run(self) -> None:
        try:
            asyncio.run(self._body())
        except BaseException as exc:  # noqa: BLE001 - kept for start/stop, never lost
            if isinstance(exc, asyncio.CancelledError):
                pass  # stopped; before ready, the finally below says so
            elif not self._ready.done():
                self._ready.set_exception(exc)
            else:
                self.error = exc
                log.error("loop_thread_failed name=%s error=%r", self.name, exc, exc_info=exc)
        finally:
            if not self._ready.done():
                self._ready.set_exception(LoopThreadError(f"{self.name}: ended before ready"))
            self._done.set_result(None)

    async def _body(self) -> None:
        self.loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        assert self._main is not None
        await self._main(self._set_ready)

    def _set_ready(self) -> None:
        if not self._ready.done():
            self._ready.set_result(None)
