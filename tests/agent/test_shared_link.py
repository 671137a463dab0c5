"""Several contracts' actuators on one link: a hurry request is a vote, not an override."""
from __future__ import annotations

from agent.link import MemoryLink
from agent.shared_link import HurryVotes, SharedLink


class _Recording(MemoryLink):
    def __init__(self) -> None:
        super().__init__()
        self.hurried: list[float | None] = []

    def hurry(self, interval_s: float | None) -> None:
        self.hurried.append(interval_s)


def test_one_contract_confirming_its_safe_state_does_not_cancel_anothers_hurry() -> None:
    link = _Recording()
    votes = HurryVotes(link)
    pump, valve = SharedLink(votes, "tank-pump"), SharedLink(votes, "tank-valve")
    pump.hurry(0.1)      # tank-pump tripped: its safe state is not confirmed yet
    valve.hurry(None)    # tank-valve runs on, nothing to confirm
    valve.hurry(0.05)    # then tank-valve trips as well, with a faster scan
    pump.hurry(None)     # tank-pump confirmed; tank-valve still asks
    votes.withdraw("tank-valve")  # tank-valve retired
    assert link.hurried == [0.1, 0.1, 0.05, 0.05, None]


def test_a_vote_for_some_endpoints_hurries_only_those() -> None:
    """Endpoint a's device does not answer tank-pump's read-backs; endpoint b answers: b must not
    be hurried (a hurried endpoint leaves the rest of a read BAD after one slow reply)."""
    from agent.endpoints import EndpointSet
    from agent.modbus import ModbusLink
    link = EndpointSet({"a": ModbusLink("127.0.0.1", 1), "b": ModbusLink("127.0.0.1", 2)},
                       default="b")
    votes = HurryVotes(link)
    pump, valve = SharedLink(votes, "tank-pump"), SharedLink(votes, "tank-valve")

    def hurried() -> dict[str, float | None]:
        return {n: link.link(n).prober.interval_s for n in link.names}  # type: ignore[attr-defined]

    pump.hurry(0.1, frozenset({"a"}))
    assert hurried() == {"a": 0.1, "b": None}
    valve.hurry(0.05, frozenset({None}))  # a point naming no endpoint: the default, b
    assert hurried() == {"a": 0.1, "b": 0.05}
    valve.hurry(0.02)  # no endpoints named: all of them
    assert hurried() == {"a": 0.02, "b": 0.02}
    valve.hurry(None)
    pump.hurry(None, frozenset())
    assert hurried() == {"a": None, "b": None}
