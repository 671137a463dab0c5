"""Every `fieldpact ctl` command is documented: in the README's ctl table and in its own --help;
every exit status is in the README. A command added without its docs fails here."""
from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from fieldpact import cli
from fieldpact.ctl_client import MEANING, Exit

README = Path(__file__).resolve().parents[2] / "README.md"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaves(parser: argparse.ArgumentParser, prefix: str) -> Iterator[tuple[str, str | None]]:
    """(command words, its help line in the parent's list) for every runnable ctl command."""
    helps = {a.dest: a.help for action in parser._actions
             if isinstance(action, argparse._SubParsersAction) for a in action._choices_actions}
    for name, sub in _subcommands(parser).items():
        words = f"{prefix} {name}".strip()
        if _subcommands(sub):
            yield from _leaves(sub, words)
        else:
            yield words, helps.get(name)


def ctl_commands() -> list[tuple[str, str | None]]:
    return list(_leaves(_subcommands(cli.build_parser())["ctl"], ""))


def _readme_ctl_section() -> str:
    text = README.read_text()
    start = text.index("## Operating the fleet: `fieldpact ctl`")
    return text[start:text.index("\n## ", start + 1)]


def test_the_ctl_tree_has_every_command_of_issue_12() -> None:
    names = {words for words, _ in ctl_commands()}
    assert {"devices", "device", "contracts", "alarms", "ack", "resume", "hold", "abort",
            "designs", "snapshot create", "snapshot list", "snapshot diff", "plan",
            "drift"} <= names


def test_the_ctl_tree_has_every_deploy_command_of_issue_13() -> None:
    names = {words for words, _ in ctl_commands()}
    assert {f"deploy {verb}" for verb in ("start", "list", "status", "pause", "resume", "approve",
                                          "rollback", "retry")} <= names


@pytest.mark.parametrize(("words", "help_line"), ctl_commands(), ids=lambda v: str(v))
def test_every_ctl_command_has_help_and_a_readme_row(words: str, help_line: str | None,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert help_line, f"`ctl {words}` has no help line"
    section = _readme_ctl_section()
    assert re.search(rf"^\| `fieldpact ctl {re.escape(words)}[ `]", section, re.M), (
        f"README's ctl table has no row for `fieldpact ctl {words}`")
    assert cli.main(["ctl", *words.split(), "--help"]) == 0
    out = capsys.readouterr().out
    assert help_line in " ".join(out.split()) and "exit status:" in out


def test_every_exit_status_is_in_the_readme_and_in_help(
        capsys: pytest.CaptureFixture[str]) -> None:
    section = _readme_ctl_section()
    assert cli.main(["ctl", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    for code in Exit:
        assert re.search(rf"^\| {code.value} \| `{code.name}` \|", section, re.M), code
        assert f"{code.value} {MEANING[code]}" in shown, code
