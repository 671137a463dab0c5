"""Bounded waits on a condition, and the ephemeral ports of the servers tests wait for.

The one `eventually` of the tests and the benchmarks (bench/ imports it from here: both are trees of
the checkout, neither is installed, and this module imports nothing of the project). A wait polls a
condition under a deadline and fails naming what it waited for; it is never a sleep to let things
settle (STYLE.md 9). The poll interval only paces the re-checks. A check that raises fails the wait
at once with its own error: a store bug is not turned into a timeout.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")

POLL_S = 0.05
"""Re-check interval: short against the deadlines (seconds) waited on, about one scan period of
the tests' contracts (50 ms), long enough not to take the CPU from the code under test."""


class WaitTimeout(AssertionError):
    """The condition did not hold by the deadline (an AssertionError: a test failure, not an error
    of the code under test)."""


@overload
async def eventually(check: Callable[[], Awaitable[T | None]], timeout_s: float, what: str, *,
                     every_s: float = POLL_S, detail: Callable[[], str] | None = None) -> T: ...


@overload
async def eventually(check: Callable[[], T | None], timeout_s: float, what: str, *,
                     every_s: float = POLL_S, detail: Callable[[], str] | None = None) -> T: ...


async def eventually(check: Callable[[], Any], timeout_s: float, what: str, *,
                     every_s: float = POLL_S, detail: Callable[[], str] | None = None) -> Any:
    """Call `check` (a function or a coroutine function) until it returns something truthy, and
    return that. Raises WaitTimeout naming `what` (and `detail()`, read at the deadline) after
    `timeout_s`; whatever `check` raises."""
    try:
        async with asyncio.timeout(timeout_s):
            while not (result := await _call(check)):
                await asyncio.sleep(every_s)
            return result
    except TimeoutError:
        raise WaitTimeout(_timed_out(timeout_s, what, detail)) from None


def _timed_out(timeout_s: float, what: str, detail: Callable[[], str] | None) -> str:
    return f"timed out after {timeout_s:g} s waiting for {what}" + (f" {detail()}" if detail else "")


async def _call(check: Callable[[], Any]) -> Any:
    result = check()
    return await result if inspect.isawaitable(result) else result


def eventually_blocking(check: Callable[[], T | None], timeout_s: float, what: str, *,
                        every_s: float = POLL_S) -> T:
    """`eventually` for code outside an event loop (fixtures that start processes, threads)."""
    deadline = time.monotonic() + timeout_s
    while not (result := check()):
        if time.monotonic() >= deadline:
            raise WaitTimeout(_timed_out(timeout_s, what, None))
        time.sleep(every_s)
    return result


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral TCP port that was free a moment ago (bind to 0, read, close).

    Only for servers that cannot bind port 0 themselves (mosquitto, a process told its port) and
    for a port nothing listens on; prefer port 0 otherwise.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def listening(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on host:port now."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


def process_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout_s: float, *,
                      host: str = "127.0.0.1") -> None:
    """Wait until the child `proc` accepts connections on host:port. Raises RuntimeError quoting
    its `log` if it exits first, WaitTimeout at the deadline."""
    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited {proc.returncode}: {log.read_text()}")
        return listening(port, host)
    eventually_blocking(up, timeout_s, f"{proc.args!r} listening on {host}:{port}")


def stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 5.0) -> None:
    """SIGTERM `proc` and reap it; SIGKILL if it has not exited after `timeout_s`."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
