"""The agent's journal key and seals (agent/journal_signing.py), and the CLI around them."""
from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest

from agent.journal import SqliteJournal
from agent.journal_signing import JournalSigner, load_or_create_key, verify_seals
from contracts.chain import EntryKind
from contracts.journal_sig import parse_public_key, verify_head
from contracts.wire import JournalBatch
from fieldpact.cli import main
from hub.config import ConfigError, parse_config
from tests.hub.sync_helpers import batch

T0 = 1_795_500_000_000


def test_the_key_is_made_once_with_mode_0600_and_never_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state" / "journal.ed25519"
    first = load_or_create_key(path)
    again = load_or_create_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert first.private_bytes_raw() == again.private_bytes_raw()


def test_agent_keygen_and_pubkey_print_the_key_an_admin_pins(tmp_path: Path, capsys: Any) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text('device = "d1"\nsite = "s1"\njournal = "j/journal.db"\ntrusted_key = "hub.pub"\n'
                   '[modbus]\nhost = "127.0.0.1"\nport = 502\n')
    assert main(["agent", "pubkey", "--config", str(cfg)]) == 1  # none yet: says so
    assert main(["agent", "keygen", "--config", str(cfg)]) == 0
    made = capsys.readouterr().out.strip()
    assert main(["agent", "pubkey", "--config", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == made
    assert (tmp_path / "j" / "journal.ed25519").exists()  # default: beside the journal
    parse_public_key(made)


def test_seals_are_kept_at_most_once_a_second_and_verify(tmp_path: Path) -> None:
    key = load_or_create_key(tmp_path / "k.ed25519")
    signer = JournalSigner(key, "d1")
    with SqliteJournal(tmp_path / "journal.db") as j:
        j.append_many([(EntryKind.INPUT, {"n": s}, T0 + s * 100) for s in range(1, 101)])
        sent = [signer.sign(j, JournalBatch.from_bytes(batch("d1", j.read(lo, 5))))
                for lo in range(1, 101, 5)]
        report = verify_seals(j, key.public_key())
    assert all(b.sig is not None and verify_head(b.signed_head(), b.sig, key.public_key())
               for b in sent)
    assert report.broken is None and report.checked == 10 and report.last_sealed == 95


def test_hub_toml_pins_a_journal_key_and_a_bad_one_names_the_key() -> None:
    key = _key_text()
    base = {"db": "h.db", "key": "h.key"}
    cfg = parse_config({**base, "require_signed_journals": True, "devices": [
        {"id": "d1", "site": "s1", "password_hash": "x", "journal_key": key,
         "labels": {"area": "tanks"}}]})
    assert cfg.devices[0].journal_key == key and cfg.require_signed_journals
    with pytest.raises(ConfigError, match=r"devices\[0\]\.journal_key"):
        parse_config({**base, "devices": [{"id": "d1", "site": "s1", "password_hash": "x",
                                           "journal_key": "ed25519:short"}]})


def _key_text() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from contracts.journal_sig import public_key_text
    return public_key_text(Ed25519PrivateKey.generate().public_key())
