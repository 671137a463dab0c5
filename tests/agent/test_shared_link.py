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
