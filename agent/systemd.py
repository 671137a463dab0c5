"""sd_notify(3) without libsystemd: READY=1, WATCHDOG=1 and STATUS= over NOTIFY_SOCKET.

WATCHDOG=1 is sent only from healthy scan cycles, at most every half WATCHDOG_USEC: if the loop
stalls, systemd stops hearing from us and restarts the unit (WatchdogSec= in the unit file). The
drive's own comms-loss timeout covers the time until the restarted agent asserts outputs again.
"""
from __future__ import annotations

import os
import socket
import time


class Notifier:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ) if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        usec = int(env.get("WATCHDOG_USEC", "0") or 0)
        self.watchdog_interval_s = usec / 2_000_000 if usec else 0.0
        self._last_watchdog = 0.0
        self.ready_sent = False

    @property
    def enabled(self) -> bool:
        return bool(self._addr)

    def _send(self, message: str) -> None:
        if not self._addr:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(message.encode(), self._addr)
            except OSError:
                pass  # systemd gone (shutdown) or not listening: nothing useful to do

    def ready(self, status: str) -> None:
        if not self.ready_sent:
            self._send(f"READY=1\nSTATUS={status}")
            self.ready_sent = True

    def status(self, status: str) -> None:
        self._send(f"STATUS={status}")

    def healthy_cycle(self, now_mono: float | None = None) -> None:
        """Call after each healthy cycle; pets the watchdog at most every half interval."""
        if not self.watchdog_interval_s:
            return
        now = time.monotonic() if now_mono is None else now_mono
        if now - self._last_watchdog >= self.watchdog_interval_s:
            self._last_watchdog = now
            self._send("WATCHDOG=1")

    def stopping(self) -> None:
        self._send("STOPPING=1")
