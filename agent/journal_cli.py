"""`fieldpact journal show|verify`: read an agent's journal file from a shell.

Exit codes: 0 success (verify: chain intact), 1 verify found a break, 2 the file cannot be read.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.table import Table

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from agent.errors import JournalError
from agent.journal import SqliteJournal
from agent.journal_signing import SealReport, verify_seals
from contracts.errors import SigningKeyError
from contracts.journal_sig import KEY_PREFIX, parse_public_key
from contracts.limits import clip
from contracts.signing import load_public_key
from contracts.chain import Entry, EntryKind

EXIT_OK, EXIT_BROKEN, EXIT_UNREADABLE = 0, 1, 2
SUMMARY_CHARS = 120
"""Body summaries are cut here: a table row should stay one or two lines on a terminal."""

T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add `journal show` and `journal verify` to an argparse subparsers object. Each sets
    `func` on the parsed namespace: a handler taking the namespace and returning the exit code."""
    journal = subparsers.add_parser("journal", help="inspect an agent journal file")
    commands = journal.add_subparsers(dest="journal_command", required=True)
    show = commands.add_parser("show", help="list entries as a table")
    show.add_argument("--db", required=True, type=Path, help="journal SQLite file")
    show.add_argument("--from", dest="from_seq", type=int, default=1, help="first seq (default 1)")
    show.add_argument("--limit", type=int, default=50, help="most entries to list (default 50)")
    show.add_argument("--kind", choices=[k.value for k in EntryKind], help="only entries of this kind")
    show.set_defaults(func=show_command)
    verify = commands.add_parser("verify", help="check the hash chain (and with --pubkey the "
                                 "agent's signatures); exit 1 on a break")
    verify.add_argument("--db", required=True, type=Path, help="journal SQLite file")
    verify.add_argument("--pubkey", help="the agent's journal public key: `ed25519:<base64>` "
                        "(fieldpact agent pubkey), or a file holding it or a PEM public key")
    verify.set_defaults(func=verify_command)
    register_replay(commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry (tests, `python -m agent.journal_cli`); `fieldpact` calls `register`."""
    parser = argparse.ArgumentParser(prog="fieldpact")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    handler: Handler = args.func
    return handler(args)


def show_command(args: argparse.Namespace) -> int:
    """Print a table of entries: seq, time (UTC), kind, body summary."""
    kinds = None if args.kind is None else {EntryKind(args.kind)}
    entries = _with_journal(args.db, lambda j: j.read(args.from_seq, args.limit, kinds=kinds))
    if entries is None:
        return EXIT_UNREADABLE
    Console().print(_table(entries))
    return EXIT_OK


def verify_command(args: argparse.Namespace) -> int:
    """Print whether the chain is intact; exit 1 naming the first broken seq and why. With
    --pubkey also check the seals (signed chain heads): exit 1 on one that fails, or if there is
    none at all (then nothing on disk is proven to be what the agent signed)."""
    pubkey = None
    if args.pubkey is not None:
        pubkey = _pubkey(args.pubkey)
        if pubkey is None:
            return EXIT_UNREADABLE
    result = _with_journal(args.db, lambda j: (j.verify(), j.low_water(), j.head()[0]))
    if result is None:
        return EXIT_UNREADABLE
    broken, low, head = result
    if broken is not None:
        print(f"chain broken at seq {broken.seq}: {broken.reason}")
        return EXIT_BROKEN
    print(f"chain intact: {head - low + 1} entries, seq {low}..{head}")
    return EXIT_OK if pubkey is None else _verify_seals(args.db, pubkey, head)


def _pubkey(text: str) -> Ed25519PublicKey | None:
    try:
        source = text if text.startswith(KEY_PREFIX) else Path(text).read_text().strip()
        if source.startswith(KEY_PREFIX):
            return parse_public_key(source)
        return load_public_key(text)
    except (OSError, ValueError, SigningKeyError) as exc:
        print(f"fieldpact journal: --pubkey: {exc}", file=sys.stderr)
        return None


def _verify_seals(path: Path, pubkey: Ed25519PublicKey, head: int) -> int:
    report = _with_journal(path, lambda j: _guarded_seals(j, pubkey))
    if report is None:
        return EXIT_UNREADABLE
    if report.broken is not None:
        print(f"signature check failed at seq {report.broken.seq}: {report.broken.reason}")
        return EXIT_BROKEN
    if report.checked == 0:
        print("no signed chain heads in this journal: nothing is proven against the key")
        return EXIT_BROKEN
    print(f"signatures hold: {report.checked} signed heads, last at seq {report.last_sealed}; "
          f"{head - report.last_sealed} later entries are not covered by a signature yet")
    return EXIT_OK


def _guarded_seals(journal: SqliteJournal, pubkey: Ed25519PublicKey) -> SealReport:
    try:
        return verify_seals(journal, pubkey)
    except sqlite3.Error as exc:
        raise JournalError(f"journal {journal.path}: cannot read seals: {exc}") from exc


def _with_journal(path: Path, fn: Callable[[SqliteJournal], T]) -> T | None:
    """Run `fn` on the journal at `path`; None (after saying why on stderr) if it cannot be read.
    A missing file is refused rather than created: a typo must not look like an empty journal."""
    if not path.is_file():
        print(f"fieldpact journal: no journal at {path}", file=sys.stderr)
        return None
    try:
        with SqliteJournal(path) as journal:
            return fn(journal)
    except JournalError as exc:
        print(f"fieldpact journal: {exc}", file=sys.stderr)
        return None


def _table(entries: Sequence[Entry]) -> Table:
    table = Table("seq", "time (UTC)", "kind", "body")
    table.columns[0].justify = "right"
    table.columns[3].overflow = "fold"
    for e in entries:
        table.add_row(str(e.seq), _time(e.ts_ms), e.kind.value, summarize(e.body))
    return table


def _time(ts_ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ts_ms / 1000, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts_ms % 1000:03d}"


def summarize(body: Mapping[str, Any]) -> str:
    """`key=value` pairs in key order, nested maps inline, cut at SUMMARY_CHARS."""
    text = " ".join(f"{k}={_short(v)}" for k, v in sorted(body.items()))
    return clip(text, SUMMARY_CHARS)


def _short(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, bytes):
        return value.hex() if len(value) <= 8 else f"<{len(value)} bytes>"
    return repr(value) if isinstance(value, str) and " " in value else str(value)


if __name__ == "__main__":
    sys.exit(main())


def register_replay(commands: Any) -> None:
    replay = commands.add_parser("replay", help="replay recorded inputs through the engine and "
                                 "prove the recorded outputs; exit 1 on the first mismatch")
    replay.add_argument("--db", required=True, type=Path, help="journal SQLite file")
    replay.set_defaults(func=replay_command)


def replay_command(args: argparse.Namespace) -> int:
    """Replay every scan segment in the journal whose contract it holds, each contract on its
    own (an agent runs several side by side: one line per contract, then the total)."""
    from contracts.journal_replay import contracts_in, replay_by_contract
    entries = _with_journal(args.db, lambda j: j.read(1, 10_000_000))
    if entries is None:
        return EXIT_UNREADABLE
    reports = replay_by_contract(entries, contracts_in(entries).get)
    total = {"segments": 0, "cycles": 0, "writes": 0, "mismatches": 0}
    for cid, report in reports.items():
        for skipped in report.skipped_segments:
            print(f"{cid}: skipped segment at {skipped}")
        for m in report.mismatches[:10]:
            print(f"{cid}: MISMATCH at ts {m.ts_ms}: recorded {m.recorded} replayed {m.replayed}")
        if len(reports) > 1:
            print(f"{cid}: {report.segments} segment(s), {report.cycles} cycles, "
                  f"{report.writes_checked} writes checked, {len(report.mismatches)} mismatches")
        for key, n in (("segments", report.segments), ("cycles", report.cycles),
                       ("writes", report.writes_checked), ("mismatches", len(report.mismatches))):
            total[key] += n
    print(f"replayed {total['segments']} segment(s), {total['cycles']} cycles, "
          f"{total['writes']} writes checked, {total['mismatches']} mismatches")
    return 0 if not total["mismatches"] else 1
