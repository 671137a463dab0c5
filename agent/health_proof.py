"""The health proof: a rollout contract journals a KEYFRAME in its first cycle at or after the end
of its health window, so the hub's proof arrives within one scan period of the window's end.

Why: the hub proves a rollout contract healthy only once the device's journal holds an entry
stamped at or after the window's end (contracts/rollout_health.py: the journal is gapless and
ingested in seq order, so nothing inside the window is still to come). A process at rest journals
little — a keyframe a minute (agent/scan.py KEYFRAME_MS) — so without this the proof, and every
deployment gate waiting for it, lagged the window by up to a minute.

Rules:
- Only a contract with a `rollout` key (contracts/schema.py Rollout) has a window. It runs from the
  contract's first BOOT on this device (by content hash; the BOOT's time, its t0) for
  `health_window_ms`, as agent/fallback.py and the hub measure it. A later BOOT of the same
  contract (a restart's resumed one, a journal recovery) does not reopen it.
- The first cycle of that contract at or after the end journals a keyframe (the scan loop's own
  keyframe, so replay is unchanged: agent/scan.py). Once it is committed the window is proven; a
  cycle whose commit failed proves nothing, and the next one tries again.
- Restart-safe: the windows are a journal checkpoint (`rollout:proof`, by content hash), saved at
  a first BOOT and when proven, so a restart inside the window still keyframes at its end and one
  after it does not again. At most MAX_KEPT windows are kept (the newest first BOOTs).
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from contracts.codec import canonical_dumps, loads
from contracts.schema import Contract
from contracts.types import EpochMs

log = logging.getLogger("fieldpact.agent.health_proof")

CHECKPOINT = "rollout:proof"

MAX_KEPT = 64
"""Windows kept in the checkpoint: a device runs a few contracts, each replaced now and then."""


class _Journal(Protocol):
    async def head(self) -> tuple[int, bytes]: ...
    async def save_checkpoint(self, name: str, data: bytes, seq: int, ts_ms: int) -> None: ...
    async def load_checkpoint(self, name: str) -> tuple[bytes, int, int] | None: ...


class HealthWindows:
    """Every rollout contract's health window on this agent, and whether it is proven."""

    def __init__(self, journal: _Journal) -> None:
        self._journal = journal
        self.windows: dict[str, dict[str, Any]] = {}  # hash -> {"boot_ms", "end_ms", "proven"}

    async def load(self) -> None:
        found = await self._journal.load_checkpoint(CHECKPOINT)
        if found is None:
            return
        try:
            self.windows = {str(h): dict(w) for h, w in loads(found[0]).items()}
        except Exception:  # noqa: BLE001 - an unreadable checkpoint must not stop the scan loop
            log.exception("health_proof_checkpoint_unreadable")  # only earlier windows' proofs lost

    async def booted(self, contract: Contract, digest: str, boot_ms: EpochMs) -> None:
        """A BOOT of `contract` (content hash `digest`) was journaled at `boot_ms`: its first
        opens its window."""
        if contract.rollout is None or digest in self.windows:
            return
        self.windows[digest] = {"boot_ms": boot_ms, "proven": False,
                                "end_ms": boot_ms + contract.rollout.health_window_ms}
        if len(self.windows) > MAX_KEPT:
            newest = sorted(self.windows.items(), key=lambda kv: kv[1]["boot_ms"])[-MAX_KEPT:]
            self.windows = dict(newest)
        await self._save(boot_ms)

    def due(self, digest: str, now_ms: EpochMs) -> bool:
        """Whether the cycle at `now_ms` of the contract `digest` must journal the proof."""
        w = self.windows.get(digest)
        return w is not None and not w["proven"] and now_ms >= w["end_ms"]

    async def proven(self, digest: str, now_ms: EpochMs) -> None:
        """The cycle at `now_ms` committed its keyframe."""
        self.windows[digest]["proven"] = True
        await self._save(now_ms)

    async def _save(self, ts_ms: EpochMs) -> None:
        seq, _ = await self._journal.head()
        await self._journal.save_checkpoint(CHECKPOINT, canonical_dumps(self.windows), seq, ts_ms)
