"""The person index: the role PDS plays nationally (SPEC §5 CPR01/02/03/05, issue 4)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

from cpis.model.persons import IndexPerson, LoadResult, PersonQuery


class PersonIndex(Protocol):
    """What a person index says about NHS numbers and the people they identify.

    Adapters raise :class:`cpis.errors.PersonIndexUnavailable` when the index
    cannot answer (an upload then gets CPF05 and changes nothing).
    """

    name: str

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        """The index's record for each number it knows; unknown numbers are absent."""

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        """Candidates for tracing: people who plausibly match ``query`` (blocking only;
        the caller decides with :mod:`cpis.matching`)."""


class IndexCheckStore(Protocol):
    """What the index check and an index load (``cpis.services.person_index``) read
    and queue."""

    async def plan_subjects(
        self, *, after: bytes | None, limit: int
    ) -> Sequence[tuple[bytes, str]]:
        """Up to ``limit`` plan subjects as (subject key, NHS number), in key order,
        after ``after``."""

    async def queue_inactive(self, people: Sequence[IndexPerson], *, now: datetime) -> int:
        """One ``nhs-number-inactive`` notification per LA holding plans for each
        retired number, unless queued before; how many were new."""


# Loads an extract into the local index, in one transaction: the file's bytes in, what
# changed out. Raises cpis.errors.IndexFileRejected (nothing changed) for a bad file.
LoadIndex = Callable[[bytes], Awaitable[LoadResult]]
