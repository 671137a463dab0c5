"""The health gate's cost at the hub: HealthJudge over 1,000 devices' ingested journals.

Each device's journal, in a real hub store (SQLite, the hub's schema, `synchronous=FULL`), is what
an agent writes for a pushed contract: a few older entries, the CONTRACT accepted, the BOOT, then
`--window-s` of cycles at 10 Hz with an INPUT entry on every cycle (a busy process: the upper bound
of what a judge folds) and a KEYFRAME a minute. Measured per device, judged as a wave gate does:
- cold: the first judgement of a push (finds the accept through the BOOT/CONTRACT index, folds
  the whole window) — once per device per push;
- warm: a judgement with nothing new stored since the last (the deployment engine's every tick);
- step: with one second (10 entries) stored since the last.
A gate pass = the warm judgements of every device of the wave, back to back. Medians of 3 runs.
Target: a gate pass over 1,000 devices < 250 ms (the deployment engine's tick, hub/rollout_engine.py).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from contracts.chain import GENESIS, Entry, make_entry
from contracts.chain_rows import row_of
from contracts.engine_state import EngineState, Mode
from contracts.journal_events import (Body, BootBody, ContractBody, ContractChange, InputBody,
                                      KeyframeBody, encode)
from contracts.rollout_health import Health, HealthSpec
from hub.health import HealthJudge
from hub.store import HubStore

HASH = "c" * 64
PERIOD = 100
PASS_TARGET_MS = 250.0


class DeviceJournal:
    def __init__(self, store: HubStore, device: str, t0: int) -> None:
        self.store, self.device, self.t0 = store, device, t0
        self.prev, self.seq = GENESIS, 0
        self.rows: list[Entry] = []

    def add(self, ts: int, body: Body) -> None:
        self.seq += 1
        e = make_entry(self.prev, self.seq, ts, body.KIND, encode(body))
        self.prev = e.hash
        self.rows.append(e)

    def cycles(self, ks: range) -> None:
        for k in ks:
            ts = self.t0 + k * PERIOD
            values = {"level": [1.0 + k / 10_000, "good", None], "high_level": [False, "good", None]}
            if k % 600 == 0:
                self.add(ts, KeyframeBody(values=values, outputs={"pump_speed": 1200},
                                          mode=Mode.RUNNING, step="fill", contract="tank-fill"))
            else:
                self.add(ts, InputBody(values={"level": values["level"]}, contract="tank-fill"))

    def flush(self) -> None:
        self.store.journal.insert_rows(self.device, [row_of(e) for e in self.rows])
        self.rows = []


def build(store: HubStore, devices: int, window_s: int, t0: int) -> list[DeviceJournal]:
    out = []
    for i in range(devices):
        j = DeviceJournal(store, f"d{i:04d}", t0)
        for k in range(5):
            j.add(t0 - 10_000 + k, InputBody(values={"level": [0.5, "good", None]}))
        j.add(t0 - 20, ContractBody(event=ContractChange.ACCEPTED, contract="tank-fill",
                                    version=4, hash=HASH))
        j.add(t0, BootBody(boot_id="b", t0_ms=t0, period_ms=PERIOD, contract="tank-fill",
                           version=4, hash=HASH, state=EngineState(mode=Mode.PENDING),
                           resumed=False))
        j.cycles(range(0, window_s * 1000 // PERIOD + 1))
        j.flush()
        out.append(j)
    return out


def run(devices: int, window_s: int) -> tuple[list[float], list[float], list[float], float]:
    with tempfile.TemporaryDirectory() as tmp:
        store = HubStore.open(Path(tmp) / "hub.db")
        t0 = 1_800_000_000_000
        journals = build(store, devices, window_s, t0)
        judge = HealthJudge(store, {})
        spec = HealthSpec(window_ms=window_s * 1000, min_cycles=window_s * 5,
                          telemetry="level >= 1 and level <= 5")
        now = t0 + window_s * 1000 + 1_000

        def once(j: DeviceJournal) -> float:
            started = time.perf_counter()
            v = judge.judge(j.device, "tank-fill@4", HASH, t0 - 100, spec, now, canary=False)
            elapsed = (time.perf_counter() - started) * 1e6
            assert v.health is Health.HEALTHY, v
            return elapsed
        cold = [once(j) for j in journals]
        started = time.perf_counter()
        warm = [once(j) for j in journals]
        pass_ms = (time.perf_counter() - started) * 1000
        k0 = window_s * 1000 // PERIOD + 1
        for j in journals:
            j.cycles(range(k0, k0 + 10))
            j.flush()
        step = [once(j) for j in journals]
        store.close()
    return cold, warm, step, pass_ms


def _p(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=1_000)
    parser.add_argument("--window-s", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="100 devices, one run")
    args = parser.parse_args()
    devices, runs = (100, 1) if args.quick else (args.devices, 3)
    results = [run(devices, args.window_s) for _ in range(runs)]
    for name, index in (("cold (first judgement: find the accept, fold the window)", 0),
                        ("warm (nothing new stored)", 1), ("step (10 new entries)", 2)):
        med = statistics.median(statistics.median(r[index]) for r in results)  # type: ignore[arg-type]
        p99 = statistics.median(_p(r[index], 0.99) for r in results)  # type: ignore[arg-type]
        print(f"judge {name}: median {med:.0f} us, p99 {p99:.0f} us per device "
              f"({devices} devices, {args.window_s} s window at 10 Hz = "
              f"{args.window_s * 10 + 1} entries each)")
    gate = statistics.median(r[3] for r in results)
    verdict = "ok" if gate < PASS_TARGET_MS * devices / 1_000 else "MISS"
    print(f"gate pass over {devices} devices (warm): median {gate:.1f} ms "
          f"(runs: {', '.join(f'{r[3]:.1f}' for r in results)}; target < {PASS_TARGET_MS:.0f} ms "
          f"per 1,000) {verdict}")


if __name__ == "__main__":
    main()
