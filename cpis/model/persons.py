"""What a person index (PDS, or the local copy of one) says about people (issue 4).

An upload's records are checked against it (CPR01/02/03/05), ``cpis trace``
finds NHS numbers in it, ``cpis person-index load`` fills the local one from a
file, and the daily index check notices the numbers it no longer uses. The
index's own records are personal data: adapters keep them sealed at rest, and no
log or error ever carries one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True, slots=True)
class IndexPerson:
    """What a person index holds for an NHS number.

    ``given_names`` are space separated, first name first. ``sex`` is one of
    ``male``, ``female``, ``other``, ``unknown`` or None. ``superseded_by`` is the
    number that replaced this one (merged records); ``active`` is False for a
    number that is retired or invalidated with no replacement known.
    """

    nhs_number: str
    family_name: str | None = None
    given_names: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    postcode: str | None = None
    sensitive: bool = False
    superseded_by: str | None = None
    active: bool = True


@dataclass(frozen=True, slots=True)
class PersonQuery:
    """Demographics to trace an NHS number from (``cpis trace``); any may be missing."""

    family_name: str | None = None
    given_names: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class NhsNumberChange:
    """The person index no longer uses ``old_nhs_number``: it was superseded by
    ``new_nhs_number``, or is inactive with no replacement known (None)."""

    old_nhs_number: str
    new_nhs_number: str | None = None


@dataclass(frozen=True, slots=True)
class FileError:
    """One fault in a person index load file: where it is (``line`` 1 is the header)
    and what is wrong, never the value."""

    line: int | None
    column: str | None
    reason: str

    def __str__(self) -> str:
        where = [f"line {self.line}"] if self.line is not None else []
        if self.column is not None:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


@dataclass(frozen=True, slots=True)
class IndexFileRow:
    """One data row of a person index load file: the person it states, or the faults
    that stop it being read."""

    line: int
    person: IndexPerson | None
    errors: tuple[FileError, ...] = ()


@dataclass(frozen=True, slots=True)
class LoadResult:
    """What a person index load (``cpis person-index load``) did.

    ``rows`` were in the file; of those ``inserted`` were new numbers,
    ``updated`` changed an existing row and ``unchanged`` matched it exactly.
    ``removed`` rows were dropped because a ``replace`` load did not carry them.
    ``superseded``, ``inactive`` (superseded ones included) and ``sensitive``
    count the file's rows.

    ``newly_inactive`` is every number this load made "no longer in use":
    superseded or retired now, and before the load either absent from the
    index, in use, or superseded by a different number. The LAs holding plans
    on those numbers are told (``nhs-number-inactive`` notifications).
    """

    rows: int
    inserted: int
    updated: int
    unchanged: int
    removed: int
    superseded: int
    inactive: int
    sensitive: int
    newly_inactive: tuple[IndexPerson, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one run of the daily index check found (``cpis.services.person_index``)."""

    subjects: int  # plan subjects looked up in the index
    inactive: int  # of those, superseded or inactive
    queued: int  # notifications queued by this run (not already queued before)
