"""The hub's request for a commissioning report and the agent's reply — MQTT payloads.

Hub to agent on `…/commission`: CommissionRequest {id, seconds}; agent to hub on
`…/commission/report`: CommissionReply {id, report | refused}. Both are codec envelopes with a
version (STYLE 3), bounded in size before they are decoded and checked field by field on decode
(the report by contracts/commission_report.py), errors naming the field (invariant 10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Self

from contracts.codec import decode_message, encode_message
from contracts.commission_report import (
    MAX_SECONDS, REPORT_VERSION, CommissionReport, ReportError, ReportReader,
)
from contracts.limits import quote

MAX_REQUEST_ID = 64
MAX_REPORT_BYTES = 1 << 20
"""MAX_POINTS points at ~300 B each fit in well under a megabyte."""
MAX_REQUEST_BYTES = 1024


@dataclass(frozen=True, kw_only=True)
class CommissionRequest:
    """Hub to agent: poll every point for `seconds` (read-only) and answer with request `id`."""

    KIND = "commission_request"
    id: str
    seconds: float

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not 0 < len(self.id) <= MAX_REQUEST_ID:
            raise ReportError(f"commission_request.id: must be 1..{MAX_REQUEST_ID} characters, "
                              f"got {quote(self.id)}")
        ok = isinstance(self.seconds, (int, float)) and not isinstance(self.seconds, bool)
        if not ok or not 0 < self.seconds <= MAX_SECONDS:
            raise ReportError(f"commission_request.seconds: must be within 0..{MAX_SECONDS} s, "
                              f"got {quote(self.seconds)}")

    def to_bytes(self) -> bytes:
        return encode_message(self.KIND, REPORT_VERSION, {"id": self.id, "seconds": self.seconds})

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Raises EncodingError (ReportError for a bad field)."""
        body = decode_message(_bounded(data, MAX_REQUEST_BYTES), cls.KIND, REPORT_VERSION)
        r = ReportReader(body, cls.KIND)
        r.done({"id", "seconds"})
        return cls(id=r.get("id", str), seconds=r.number("seconds"))


@dataclass(frozen=True, kw_only=True)
class CommissionReply:
    """Agent to hub: the report for request `id`, or why there is none (`refused`)."""

    KIND = "commission_reply"
    id: str
    report: CommissionReport | None = None
    refused: str | None = None

    def to_bytes(self) -> bytes:
        report = self.report.to_mapping() if self.report is not None else None
        return encode_message(self.KIND, REPORT_VERSION,
                              {"id": self.id, "report": report, "refused": self.refused})

    @classmethod
    def from_bytes(cls, data: bytes) -> Self:
        """Raises EncodingError (ReportError for a bad field)."""
        body = decode_message(_bounded(data, MAX_REPORT_BYTES), cls.KIND, REPORT_VERSION)
        r = ReportReader(body, cls.KIND)
        r.done({"id", "report", "refused"})
        rid = r.get("id", str)
        if not 0 < len(rid) <= MAX_REQUEST_ID:
            raise r.bad("id", f"must be 1..{MAX_REQUEST_ID} characters")
        report = None if body.get("report") is None else CommissionReport.from_mapping(body["report"])
        refused = None if body.get("refused") is None else r.text("refused")
        if (report is None) == (refused is None):
            raise r.bad("report", "a reply carries a report or a refusal, exactly one")
        return cls(id=rid, report=report, refused=refused)


def _bounded(data: bytes, most: int) -> bytes:
    if len(data) > most:
        raise ReportError(f"commissioning message: {len(data)} bytes is larger than {most}")
    return data
