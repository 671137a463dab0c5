"""The pure resend decision (agent/resend.py): time is an argument, no broker, no clock."""
from __future__ import annotations

from hypothesis import given, strategies as st

from agent import resend
from agent.resend import Reason, SendState

T = 5.0


def sent(state: SendState, to_seq: int, now: float) -> SendState:
    return resend.on_sent(state, to_seq, state.epoch, now)


def test_local_appends_never_postpone_the_resend_timer() -> None:
    s = sent(SendState(acked=10, sent=10), 60, now=100.0)
    for i, to_seq in enumerate(range(70, 200, 10)):  # new batches every 0.3 s, no ack
        s = sent(s, to_seq, now=100.3 + i * 0.3)
        assert resend.due(s, 100.3 + i * 0.3, T) is None
    r = resend.due(s, 105.0, T)
    assert r == resend.Resend(from_seq=11, reason=Reason.ACK_TIMEOUT)


def test_an_advancing_ack_restarts_the_timer_and_a_stalled_one_does_not() -> None:
    s = sent(SendState(acked=0, sent=0), 100, now=0.0)
    s, r = resend.on_ack(s, 50, now_s=4.0)
    assert r is None and resend.due(s, 8.9, T) is None
    assert resend.due(s, 9.0, T) == resend.Resend(from_seq=51, reason=Reason.ACK_TIMEOUT)


def test_nothing_outstanding_never_resends_however_long_idle() -> None:
    s = SendState(acked=40, sent=40, since_s=0.0)
    assert resend.due(s, 10_000.0, T) is None
    s = sent(s, 41, now=10_000.0)  # the timer starts when something becomes outstanding
    assert resend.due(s, 10_004.9, T) is None and resend.due(s, 10_005.0, T) is not None


def test_duplicate_ack_with_more_outstanding_resends_at_once_but_once_per_ack() -> None:
    s = sent(SendState(acked=10, sent=10), 200, now=0.0)
    s, r = resend.on_ack(s, 10, now_s=0.5)
    assert r == resend.Resend(from_seq=11, reason=Reason.DUPLICATE_ACK)
    assert s.sent == 10
    s = sent(s, 200, now=0.6)
    s, again = resend.on_ack(s, 10, now_s=0.7)  # a QoS 1 duplicate of the same ack
    assert again is None
    s, _ = resend.on_ack(s, 60, now_s=1.0)
    s, later = resend.on_ack(s, 60, now_s=1.1)  # a new stall, at a new ack: fast retransmit again
    assert later == resend.Resend(from_seq=61, reason=Reason.DUPLICATE_ACK)


def test_duplicate_ack_with_nothing_outstanding_is_ignored() -> None:
    s = SendState(acked=10, sent=10)
    assert resend.on_ack(s, 10, now_s=1.0) == (s, None)


def test_a_publish_in_flight_across_a_rewind_does_not_undo_it() -> None:
    s = sent(SendState(acked=0, sent=0), 100, now=0.0)
    epoch_before = s.epoch
    s, _ = resend.rewind(s, Reason.HUB_BIRTH, 1.0)
    s = resend.on_sent(s, 150, epoch_before, 1.1)  # the batch published before the rewind
    assert s.sent == 0


def test_wait_is_bounded_by_the_remaining_timeout() -> None:
    s = sent(SendState(acked=0, sent=0), 10, now=0.0)
    assert resend.wait_s(s, 3.0, T) == 2.0
    assert resend.wait_s(s, 7.0, T) == 0.0
    assert resend.wait_s(SendState(), 7.0, T) == T


@given(st.lists(st.tuples(st.sampled_from(["send", "ack", "tick"]), st.integers(0, 50),
                          st.floats(0, 3)), max_size=60))
def test_outstanding_entries_are_resent_within_the_timeout_whatever_happens(
        steps: list[tuple[str, int, float]]) -> None:
    """Liveness: with entries outstanding, at most T passes without an ack advance or a resend."""
    s, now = SendState(), 0.0
    for op, n, dt in steps:
        now += dt
        if op == "send":
            s = sent(s, s.sent + n + 1, now)
        elif op == "ack":
            s, _ = resend.on_ack(s, min(s.acked + n % 3, s.sent), now)
        elif (r := resend.due(s, now, T)) is not None:
            s, _ = resend.rewind(s, r.reason, now)
        assert not s.outstanding or now - s.since_s < T or resend.due(s, now, T) is not None
        assert s.sent >= s.acked


def test_ack_timeouts_in_a_row_make_the_session_deaf_and_an_advancing_ack_clears_it() -> None:
    s = sent(SendState(acked=10, sent=10), 60, now=0.0)
    for k in range(1, resend.DEAF_AFTER + 1):
        assert not resend.deaf(s)
        s, _ = resend.rewind(s, Reason.ACK_TIMEOUT, now_s=5.0 * k)
        s = sent(s, 60, now=5.0 * k)
    assert resend.deaf(s)
    assert not resend.deaf(resend.heard_again(s))
    s, _ = resend.rewind(s, Reason.CONNECT, now_s=30.0)  # other rewinds do not count
    assert s.timeouts == resend.DEAF_AFTER
    s, _ = resend.on_ack(s, 20, now_s=31.0)
    assert not resend.deaf(s) and s.timeouts == 0
