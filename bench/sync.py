"""Benchmark of the hub's sync side over a real broker, store and HTTP API. Prints, never asserts.

Run: .venv/bin/python -m bench.sync [--entries 100000] [--devices 1000] [--quick]

1. ingest: a HubRuntime (embedded amqtt on port 0, SQLite hub db in a temp dir); device `d1` logs
   in over aiomqtt with its own password and publishes a pre-built hash-chained journal as
   JournalBatch messages of BATCH entries (QoS 1, resent from the hub's ack if the broker drops
   any, as the agent does). Timed from the first publish to acked_seq == E in the store. Then the
   in-process path alone (decode, DeviceIngest.add, rows, store.journal.insert), to show where the
   time goes.
2. reconcile: the hub sees d1 live (birth, telemetry with an engine state), then its last will, on
   an injected clock 24 h in the past, so it projects the device; the clock moves to now; d1
   publishes a new birth and 24 h of journal at 1 Hz (86,400 entries). Timed from the birth to the
   reconciliation record.
3. fleet: 1,000 devices' births and 1 Hz telemetry over MQTT from a load generator in ANOTHER
   process (a few aiomqtt clients with a hub-role login on a broker we start), while this process
   times GET /api/devices/{id} and GET /api/devices over real HTTP. RSS is this process's: the hub
   plus the HTTP client, not the load generator.

The phases are bench/sync_ingest.py, sync_reconcile.py and sync_fleet.py (their hub and brokers in
sync_fleet_hub.py, their child processes in sync_journal.py and sync_load.py, what they share in
sync_hub.py); this module is the command line, and the child processes run through it too.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.sync_fleet import bench_fleet
from bench.sync_fleet_hub import run_amqtt
from bench.sync_hub import FLEET, OWN_PROCESS
from bench.sync_ingest import bench_ingest
from bench.sync_journal import WIRE, run_journal_sender
from bench.sync_load import poll_api, run_loadgen
from bench.sync_reconcile import bench_reconcile
from contracts.journal_wire import ROWS_VERSION


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=100_000, help="journal ingest size")
    parser.add_argument("--offline-hours", type=float, default=24.0)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--api-seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k entries, 1 h offline, 100 devices")
    parser.add_argument("--only", choices=["ingest", "reconcile", "fleet"])
    parser.add_argument("--broker", choices=["amqtt", "amqtt-inproc", "mosquitto", "amqtt-process"],
                        default="amqtt",
                        help="broker for the fleet run (amqtt = the embedded default, in its own "
                             "process; amqtt-inproc = on the hub's MQTT thread, as before)")
    parser.add_argument("--wire", type=int, choices=[1, 2], default=ROWS_VERSION,
                        help="journal batch form to send (2: rows, as agents do; 1: older agents)")
    parser.add_argument("--inproc-broker", action="store_true",
                        help="ingest/reconcile: the embedded broker on the hub's MQTT thread")
    parser.add_argument("--loadgen", metavar="MQTT_URL", help=argparse.SUPPRESS)
    parser.add_argument("--api-poller", metavar="BASE_URL", help=argparse.SUPPRESS)
    parser.add_argument("--amqtt-broker", metavar="PORT", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--journal-sender", metavar="MQTT_URL", help=argparse.SUPPRESS)
    parser.add_argument("--msgs-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--last-seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    WIRE[0], OWN_PROCESS[0], FLEET[0] = args.wire, not args.inproc_broker, args.devices
    logging.basicConfig(level=logging.ERROR)  # figures only; the hub's info/warnings are noise here
    # aiomqtt's "mqtt" logger sets its own level (WARNING), so the root's does not reach it: the
    # load generator's 250 concurrent publishes per client logged "There are N pending publish
    # calls" ~1,000 times a second to stderr, burying the figures.
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    if args.loadgen:
        asyncio.run(run_loadgen(args.loadgen, args.devices))
        return
    if args.journal_sender:
        asyncio.run(run_journal_sender(args.journal_sender, args.msgs_file, args.last_seq))
        return
    if args.amqtt_broker:
        asyncio.run(run_amqtt(args.amqtt_broker))
        return
    if args.api_poller:
        print(json.dumps(asyncio.run(poll_api(args.api_poller, os.environ["BENCH_API_TOKEN"],
                                               args.devices, args.api_seconds))))
        return
    if args.quick:
        args.entries, args.offline_hours, args.devices, args.api_seconds, args.repeats = \
            10_000, 1.0, 100, 5.0, 1
    started = time.monotonic()
    if args.only in (None, "ingest"):
        asyncio.run(bench_ingest(args.entries, args.repeats))
    if args.only in (None, "reconcile"):
        asyncio.run(bench_reconcile(int(args.offline_hours * 3600), args.repeats))
    if args.only == "fleet":
        asyncio.run(bench_fleet(args.devices, args.api_seconds, args.broker))
    elif args.only is None:  # a fresh process, so its RSS is not the ingest fixtures' peak
        subprocess.run([sys.executable, "-m", "bench.sync", "--only", "fleet", "--devices",
                        str(args.devices), "--api-seconds", str(args.api_seconds),
                        "--broker", args.broker], check=True)
    print(f"done in {time.monotonic() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
