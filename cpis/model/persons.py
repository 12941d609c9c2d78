"""What a person index (PDS, or the local copy of one) says about people (issue 4).

An upload's records are checked against it (CPR01/02/03/05), ``cpis trace``
finds NHS numbers in it, and the daily index check notices the numbers it no
longer uses. The index's own records are personal data: adapters keep them
sealed at rest, and no log or error ever carries one.
"""

from __future__ import annotations

from dataclasses import dataclass
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
