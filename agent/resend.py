"""When the agent resends its journal: a pure decision on the hub's acks (time is an argument).

Rules (invariant 5; issue 8):
- The hub's ack is the only evidence of delivery. The agent resends from the ack whenever entries
  it sent are unacknowledged and the ack has not advanced for `timeout_s`. Local appends never
  restart that timer: it runs from the last ack advance, from the moment something became
  outstanding after nothing was, or from the last rewind — whichever is latest.
- A duplicate ack (the same seq again) while more is outstanding means the hub holds later batches
  it cannot link (one was lost): resend at once (fast retransmit), once per ack value, so QoS 1
  duplicates of one ack do not resend the window twice; the timer covers a lost retransmit.
- A (re)connect of either side or a hub birth rewinds too (`rewind`).
- Deafness: the ack timing out DEAF_AFTER times in a row, with entries outstanding each time, says
  the agent's session hears nothing from the hub (a broker that silently dropped its subscription,
  a half-dead connection): `deaf` tells the uplink to force a new MQTT session, which subscribes
  afresh. An ack that advances resets the count.
- Every rewind bumps `epoch`: a publish that was in flight across a rewind must not move `sent`
  forward again (`on_sent` with a stale epoch is ignored).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace

ACK_TIMEOUT_S = 5.0
"""Long enough for a hub to ingest a full window on a slow SD card, short enough to resend soon
after a lost message (the broker may drop QoS1 messages under load)."""


DEAF_AFTER = 3
"""Consecutive ack timeouts before the session is presumed deaf: one or two lost acks or batches
(QoS 1 is not trusted) are resent without dropping a working session; three timeouts (15 s at the
default ack_timeout_s) are not a lost message any more."""


class Reason(enum.StrEnum):
    """Why the agent resends from the ack; logged as `journal_resend reason=…`."""

    ACK_TIMEOUT = "ack_timeout"
    DUPLICATE_ACK = "duplicate_ack"
    CONNECT = "connect"
    HUB_BIRTH = "hub_birth"
    HUB_RESTART = "hub_restart"


@dataclass(frozen=True, kw_only=True)
class Resend:
    """Send again from `from_seq` (the hub's ack + 1)."""

    from_seq: int
    reason: Reason


@dataclass(frozen=True, kw_only=True)
class SendState:
    """The sender's view: `acked` (hub's word), `sent` (highest published since the last rewind),
    `since_s` (when the resend timer started), `fast_for` (ack already fast-retransmitted from)."""

    acked: int = 0
    sent: int = 0
    since_s: float = 0.0
    fast_for: int = -1
    epoch: int = 0
    timeouts: int = 0
    """Ack timeouts in a row since the ack last advanced."""

    @property
    def outstanding(self) -> bool:
        return self.sent > self.acked


def on_sent(s: SendState, to_seq: int, epoch: int, now_s: float) -> SendState:
    """A batch through `to_seq` was published under `epoch`."""
    if epoch != s.epoch or to_seq <= s.sent:
        return s
    since = s.since_s if s.outstanding else now_s
    return replace(s, sent=to_seq, since_s=since)


def on_ack(s: SendState, seq: int, now_s: float) -> tuple[SendState, Resend | None]:
    """The hub acked `seq` (already checked against the journal's head by the caller)."""
    if seq > s.acked:
        return replace(s, acked=seq, sent=max(s.sent, seq), since_s=now_s, fast_for=-1,
                       timeouts=0), None
    if seq == s.acked and s.outstanding and s.fast_for != seq:
        s, resend = rewind(s, Reason.DUPLICATE_ACK, now_s)
        return replace(s, fast_for=seq), resend
    return s, None


def due(s: SendState, now_s: float, timeout_s: float) -> Resend | None:
    """A resend if entries are outstanding and the ack has not advanced for `timeout_s`."""
    if s.outstanding and now_s - s.since_s >= timeout_s:
        return Resend(from_seq=s.acked + 1, reason=Reason.ACK_TIMEOUT)
    return None


def wait_s(s: SendState, now_s: float, timeout_s: float) -> float:
    """How long the sender may sleep before `due` can fire (the full timeout when idle)."""
    if not s.outstanding:
        return timeout_s
    return max(0.0, timeout_s - (now_s - s.since_s))


def rewind(s: SendState, reason: Reason, now_s: float) -> tuple[SendState, Resend]:
    """Forget what was sent beyond the ack; the timer restarts now. An ack timeout counts
    towards `deaf`."""
    timeouts = s.timeouts + 1 if reason is Reason.ACK_TIMEOUT else s.timeouts
    return (replace(s, sent=s.acked, since_s=now_s, epoch=s.epoch + 1, timeouts=timeouts),
            Resend(from_seq=s.acked + 1, reason=reason))


def deaf(s: SendState, after: int = DEAF_AFTER) -> bool:
    """Whether the ack has timed out `after` times in a row: time for a new session."""
    return s.timeouts >= after


def heard_again(s: SendState) -> SendState:
    """A new session was forced: count ack timeouts afresh."""
    return replace(s, timeouts=0)
