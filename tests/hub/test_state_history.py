"""One state-change path for devices and contracts (hub/store/state_history.py): the same suite runs
over both machines — persisted with history, self-loops silent, retries no-ops, illegal events raise."""
from __future__ import annotations

import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.states import ContractEvent, ContractStatus, DeviceEvent, DeviceState, IllegalTransition
from hub.store import ContractRecord, HubStore, NotFound

T0 = 1_795_500_000_000


@dataclass(frozen=True)
class Case:
    """A subject of one machine and events to move it: `path` moves it on, the last event
    cannot be applied again from where it lands (so applying it again is a retry), `illegal`
    is refused from there, `loop` is a legal self-loop from the first state of `path`."""

    create: Callable[[HubStore], str]
    repo: Callable[[HubStore], Any]
    state: Callable[[HubStore, str], enum.StrEnum]
    since: Callable[[HubStore, str], int]
    path: tuple[tuple[enum.StrEnum, enum.StrEnum], ...]
    illegal: enum.StrEnum
    loop: enum.StrEnum


def _device(store: HubStore) -> str:
    return store.devices.ensure("d1", "s1", T0).id


def _contract(store: HubStore) -> str:
    return store.contracts.insert(ContractRecord(
        id="fill@1", contract="fill", version=1, device="d1", site="s1",
        status=ContractStatus.SUBMITTED, document={}, signed=b"", content_hash="h",
        created_ms=T0, updated_ms=T0)).id


DEVICE = Case(create=_device, repo=lambda s: s.devices,
              state=lambda s, k: s.devices.get(k).state,
              since=lambda s, k: s.devices.get(k).state_since_ms,
              path=((DeviceEvent.TELEMETRY, DeviceState.LIVE),
                    (DeviceEvent.CHAIN_BROKEN, DeviceState.FAULT),
                    (DeviceEvent.RESET, DeviceState.UNKNOWN)),
              illegal=DeviceEvent.JOURNAL_CAUGHT_UP, loop=DeviceEvent.TELEMETRY)
CONTRACT = Case(create=_contract, repo=lambda s: s.contracts,
                state=lambda s, k: s.contracts.get(k).status,
                since=lambda s, k: s.contracts.get(k).updated_ms,
                path=((ContractEvent.PUSH, ContractStatus.PUSHED),
                      (ContractEvent.ACCEPT, ContractStatus.ACCEPTED)),
                illegal=ContractEvent.COMPLETE, loop=ContractEvent.PUSH)


@pytest.fixture(params=[DEVICE, CONTRACT], ids=["device", "contract"])
def case(request: pytest.FixtureRequest) -> Case:
    case: Case = request.param
    return case


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HubStore]:
    with HubStore.open(tmp_path / "hub.db") as s:
        yield s


def _moved(store: HubStore, case: Case) -> str:
    key = case.create(store)
    for i, (event, _) in enumerate(case.path, start=1):
        case.repo(store).apply_event(key, event, T0 + i, f"step {i}")
    return key


def test_each_change_sets_the_state_and_its_time_with_one_history_row(store: HubStore,
                                                                      case: Case) -> None:
    key = _moved(store, case)
    moves = [(t.to_state, t.event, t.ts_ms, t.reason) for t in case.repo(store).transitions(key)]
    n = len(case.path)
    assert moves[-n:] == [(to.value, ev.value, T0 + i, f"step {i}")
                          for i, (ev, to) in enumerate(case.path, start=1)]
    assert (case.state(store, key), case.since(store, key)) == (case.path[-1][1], T0 + n)


def test_applying_the_last_event_again_is_a_no_op(store: HubStore, case: Case) -> None:
    key = _moved(store, case)
    before = case.repo(store).transitions(key)
    changed = case.repo(store).apply_event(key, case.path[-1][0], T0 + 9)
    assert (changed.before, changed.after, changed.written) == (case.path[-1][1],) * 2 + (False,)
    assert case.repo(store).transitions(key) == before
    assert case.since(store, key) == T0 + len(case.path)


def test_an_illegal_event_raises_and_writes_nothing(store: HubStore, case: Case) -> None:
    key = _moved(store, case)
    before = case.repo(store).transitions(key)
    with pytest.raises(IllegalTransition):
        case.repo(store).apply_event(key, case.illegal, T0 + 9)
    assert case.repo(store).transitions(key) == before and case.state(store, key) == case.path[-1][1]


def test_a_self_loop_writes_no_row_and_keeps_the_time(store: HubStore, case: Case) -> None:
    key = case.create(store)
    first = case.path[0]
    case.repo(store).apply_event(key, first[0], T0 + 1)
    changed = case.repo(store).apply_event(key, case.loop, T0 + 5)
    assert changed.written is False and changed.after == changed.before
    assert case.since(store, key) == T0 + 1


def test_an_unknown_subject_is_not_found(store: HubStore, case: Case) -> None:
    with pytest.raises(NotFound):
        case.repo(store).apply_event("nope", case.path[0][0], T0)
