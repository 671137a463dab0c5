"""Transition → ack (hub/sync/outbound.py), alone: acks are held until their batch commits."""
from __future__ import annotations

from contracts.wire import Ack
from hub.sync.outbound import HeldAcks, ack_for


def test_acks_are_published_only_after_commit_newest_seq_per_device_and_once() -> None:
    acks = HeldAcks()
    acks.hold("s1", "d1", 10)
    acks.hold("s1", "d1", 20)
    acks.hold("s1", "d2", 5)
    assert acks.take() == {} and acks.devices() == {"d1", "d2"}
    acks.committed()
    assert acks.take() == {("s1", "d1"): 20, ("s1", "d2"): 5}
    assert acks.take() == {}


def test_a_rolled_back_batch_acks_nothing_but_what_committed_before_stays_ready() -> None:
    acks = HeldAcks()
    acks.hold("s1", "d1", 10)
    acks.committed()
    acks.hold("s1", "d1", 30)
    acks.rolled_back()
    assert acks.devices() == set() and acks.take() == {("s1", "d1"): 10}


def test_no_ack_before_the_first_entry() -> None:
    assert ack_for(0) is None and ack_for(7) == Ack(seq=7)
