"""``cpis trace`` (issue 4): an LA's records, what the person index says of each, and
the match rate against the go-live target.

An LA may not go live until :data:`GO_LIVE_TARGET` of its children are matched
to an NHS number. A review row never carries the index's names or birth
dates, so a review can be handed to anyone on the LA's side.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

GO_LIVE_TARGET = 0.95
"""The share of children an LA must have matched before going live."""

# A review row's status, best first: only ``verified`` and ``certain`` count as matched.
# ``not-searched``: the index search for that record ran out of time (issue 11);
# run the trace again for those records later, or look them up by hand.
STATUSES = ("verified", "certain", "possible", "none", "number-rejected", "not-searched")


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One record of a trace file, as far as it could be read."""

    record: int
    plan_id: str | None
    nhs_number: str | None
    given_name: str | None
    family_name: str | None
    birth_date: date | None
    problems: tuple[str, ...] = ()
    sex: str | None = None
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class TraceFile:
    """The records of a trace file, and how many deletes it had (they are skipped)."""

    records: tuple[TraceRecord, ...]
    deletes: int = 0


@dataclass(frozen=True, slots=True)
class ReviewRow:
    """One record's outcome: a proposed NHS number for ``certain`` and ``possible``."""

    record: int
    plan_id: str | None
    status: str
    proposed_nhs_number: str | None
    score: float | None
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TraceSummary:
    """Counts per status and the match rate against the go-live target."""

    counts: Mapping[str, int]
    skipped_deletes: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def match_rate(self) -> float:
        """(verified + certain) / total; 0 for an empty file."""
        if not self.total:
            return 0.0
        return (self.counts.get("verified", 0) + self.counts.get("certain", 0)) / self.total

    @property
    def meets_target(self) -> bool:
        return self.total > 0 and self.match_rate >= GO_LIVE_TARGET
