"""``cpis trace FILE``: find NHS numbers for an LA's children and measure the match rate.

An LA may not go live until 95% of its children are matched to an NHS number
(issue 4), and finding the numbers is its biggest pain. It runs this on a file
in the upload format (``schemas/uploads.md``), with or without NHS numbers:

- a record *with* a number is checked as an upload would be: the index's
  record for that number must exist, be in use, not be sensitive, and be
  confirmed by the LA's name and birth date as ``cpis.services.verification``
  confirms it (a "match", or a "possible" the index finds no rival for:
  ``verified``), else ``number-rejected`` with the reason. A superseded number
  whose old record matches is ``certain``, proposing the number that replaced it;
- a record *without* one is traced: ``index.search`` finds candidates, and
  :mod:`cpis.matching.trace` decides ``certain``, ``possible`` or ``none``.

Each record gets one review row (:class:`~cpis.model.tracing.ReviewRow`): the
status, a proposed NHS number (certain and possible only), the score and
reason codes, never the index's names or birth dates. Deletes are skipped.

Slow is not down (issue 11). A search that runs out of time
(:class:`~cpis.errors.IndexSearchTimedOut`) makes that record ``not-searched``
(reason ``search-timed-out``) and the trace carries on: the same search again
would be as slow. An index that cannot answer at all
(:class:`~cpis.errors.PersonIndexUnavailable`) is asked again ``RETRIES``
times, after ``RETRY_DELAYS``, before the trace gives up: a failover or a
restart is over in seconds.

A trace file may carry the child's ``sex`` and ``postcode`` beyond the upload
format: a postcode that agrees adds evidence (a child whose surname changed is
certain only with it), a stated sex that differs rules a candidate out. The
file, its tolerant reader and the review CSV are :mod:`cpis.formats.trace_file`;
writing the review and printing the summary are the command line's.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from cpis.errors import IndexSearchTimedOut, PersonIndexUnavailable
from cpis.formats.trace_file import read_trace_file
from cpis.matching import nhs_number
from cpis.matching.demographics import Person, compare
from cpis.matching.trace import TraceDecision, as_person, decide, resolve
from cpis.model.persons import IndexPerson, PersonQuery
from cpis.model.tracing import (
    STATUSES,
    ReviewRow,
    TraceRecord,
    TraceSummary,
)
from cpis.ports.person_index import PersonIndex
from cpis.services.verification import confirms, needs_rivals, rival_query

SEARCH_LIMIT = 50
CONCURRENCY = 8
"""Index requests in flight at once: enough to hide a network round trip."""

RETRY_DELAYS = (0.5, 2.0, 5.0)
"""Seconds to wait before asking an unavailable index again, once per retry."""

_T = TypeVar("_T")


async def _asking_again(
    request: Callable[[], Awaitable[_T]], delays: Sequence[float] = RETRY_DELAYS
) -> _T:
    """``request()``, asked again after each of ``delays`` while the index is unavailable."""
    for delay in delays:
        try:
            return await request()
        except PersonIndexUnavailable:
            await asyncio.sleep(delay)
    return await request()


# --- deciding ---------------------------------------------------------------------------------


def _person(rec: TraceRecord) -> Person:
    return Person(
        rec.given_name or "", rec.family_name or "", rec.birth_date, rec.sex, rec.postcode
    )


def verify_number(
    rec: TraceRecord,
    number: str,
    found: IndexPerson | None,
    known: Mapping[str, IndexPerson],
    rivals: Sequence[IndexPerson] = (),
) -> ReviewRow:
    """The review row for a record that came with a (well-formed) NHS number;
    ``rivals`` are the index's search results for the record's demographics,
    which an upload would use to confirm a "possible" (``cpis.services.verification``)."""

    def rejected(*reasons: str, score: float | None = None) -> ReviewRow:
        return ReviewRow(
            rec.record, rec.plan_id, "number-rejected", None, score, (*reasons, *rec.problems)
        )

    if found is None:
        return rejected("nhs-number-not-found")
    current = resolve(found, known)
    if current is None:
        return rejected("nhs-number-inactive")
    if found.sensitive or current.sensitive:
        return rejected("sensitive-record")
    if rec.birth_date is None and not rec.given_name and not rec.family_name:
        return rejected("no-demographics")
    la = _person(rec)
    result = compare(la, as_person(found))
    if not confirms(la, result, {found.nhs_number, current.nhs_number}, rivals):
        extra = ("another-person-matches-as-well",) if needs_rivals(result) else ()
        return rejected(*result.reasons, *extra, score=result.score)
    if current.nhs_number != number:
        return ReviewRow(
            rec.record,
            rec.plan_id,
            "certain",
            current.nhs_number,
            result.score,
            ("nhs-number-superseded", *result.reasons, *rec.problems),
        )
    return ReviewRow(
        rec.record, rec.plan_id, "verified", None, result.score, (*result.reasons, *rec.problems)
    )


def _traced_row(rec: TraceRecord, decision: TraceDecision) -> ReviewRow:
    return ReviewRow(
        rec.record,
        rec.plan_id,
        decision.status,
        decision.nhs_number,
        decision.score,
        (*decision.reasons, *rec.problems),
    )


async def _successors(
    index: PersonIndex,
    records: Sequence[IndexPerson],
    known: Mapping[str, IndexPerson],
    delays: Sequence[float] = RETRY_DELAYS,
) -> dict[str, IndexPerson]:
    """Index records for the numbers that superseded ``records``, a few merges deep."""
    found: dict[str, IndexPerson] = {}
    frontier = list(records)
    for _ in range(3):
        wanted = sorted(
            {
                r.superseded_by
                for r in frontier
                if r.superseded_by and r.superseded_by not in known and r.superseded_by not in found
            }
        )
        if not wanted:
            break
        got = await _asking_again(functools.partial(index.get_many, wanted), delays)
        found.update(got)
        frontier = list(got.values())
    return found


def _not_searched(rec: TraceRecord) -> ReviewRow:
    return ReviewRow(
        rec.record, rec.plan_id, "not-searched", None, None, ("search-timed-out", *rec.problems)
    )


async def _trace_one(
    index: PersonIndex, rec: TraceRecord, delays: Sequence[float] = RETRY_DELAYS
) -> ReviewRow:
    if rec.birth_date is None and not rec.given_name and not rec.family_name:
        return ReviewRow(rec.record, rec.plan_id, "none", None, None, ("no-demographics",))
    query = PersonQuery(
        family_name=rec.family_name,
        given_names=rec.given_name,
        birth_date=rec.birth_date,
        sex=rec.sex,
        postcode=rec.postcode,
    )
    try:
        candidates = await _asking_again(
            functools.partial(index.search, query, limit=SEARCH_LIMIT), delays
        )
    except IndexSearchTimedOut:
        return _not_searched(rec)
    known = {c.nhs_number: c for c in candidates}
    successors = await _successors(index, candidates, known, delays)
    return _traced_row(rec, decide(_person(rec), candidates, successors=successors))


async def review(
    index: PersonIndex,
    records: Sequence[TraceRecord],
    *,
    progress: Callable[[int], None] | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> list[ReviewRow]:
    """One review row per record, in file order.

    Raises :class:`cpis.errors.PersonIndexUnavailable` if the index still cannot
    answer after ``retry_delays``; a search that times out only makes its
    record ``not-searched``.
    """
    delays = retry_delays
    rows: list[ReviewRow | None] = [None] * len(records)
    to_verify: list[tuple[int, TraceRecord, str]] = []
    to_trace: list[int] = []
    for i, rec in enumerate(records):
        if rec.nhs_number is None:
            to_trace.append(i)
            continue
        checked = nhs_number.check(rec.nhs_number)
        if checked.value is None:
            rows[i] = ReviewRow(
                rec.record, rec.plan_id, "number-rejected", None, None, ("nhs-number-invalid",)
            )
        else:
            to_verify.append((i, rec, checked.value))

    done = len(records) - len(to_verify) - len(to_trace)
    gate = asyncio.Semaphore(CONCURRENCY)
    if to_verify:
        numbers = sorted({n for _, _, n in to_verify})
        found = await _asking_again(functools.partial(index.get_many, numbers), delays)
        successors = await _successors(index, list(found.values()), found, delays)
        known = {**found, **successors}
        rivals: dict[int, Sequence[IndexPerson]] = {}
        timed_out: set[int] = set()

        async def search_rivals(i: int, rec: TraceRecord) -> None:
            async with gate:
                query = rival_query(_person(rec))
                try:
                    rivals[i] = await _asking_again(
                        functools.partial(index.search, query, limit=SEARCH_LIMIT), delays
                    )
                except IndexSearchTimedOut:
                    timed_out.add(i)

        wanted = [
            (i, rec)
            for i, rec, number in to_verify
            if (person := found.get(number)) is not None
            and needs_rivals(compare(_person(rec), as_person(person)))
        ]
        await _all(search_rivals(i, rec) for i, rec in wanted)
        for i, rec, number in to_verify:
            if i in timed_out:
                rows[i] = _not_searched(rec)
            else:
                rows[i] = verify_number(rec, number, found.get(number), known, rivals.get(i, ()))
        done += len(to_verify)
    if progress is not None:
        progress(done)

    async def trace(i: int) -> None:
        nonlocal done
        async with gate:
            rows[i] = await _trace_one(index, records[i], delays)
        done += 1
        if progress is not None:
            progress(done)

    await _all(trace(i) for i in to_trace)
    return [row for row in rows if row is not None]


async def _all(jobs: Iterable[Coroutine[Any, Any, None]]) -> None:
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except ExceptionGroup as failed:
        # The first failure (say the index going away) is the one to report,
        # as the exception the caller expects rather than a group of them.
        raise failed.exceptions[0] from None


def summarise(rows: Sequence[ReviewRow], *, skipped_deletes: int = 0) -> TraceSummary:
    counts = dict.fromkeys(STATUSES, 0)
    for row in rows:
        counts[row.status] += 1
    return TraceSummary(counts, skipped_deletes)


async def trace(
    index: PersonIndex,
    data: bytes,
    *,
    filename: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    retry_delays: Sequence[float] = RETRY_DELAYS,
) -> tuple[list[ReviewRow], TraceSummary]:
    """Read ``data`` (a trace file, :mod:`cpis.formats.trace_file`), decide every
    record, and summarise: the review rows in file order, and the counts.

    ``progress`` is told ``(records decided, records in the file)`` once the file
    is read and then as records are decided. Raises
    :class:`cpis.errors.TraceFileError` for an unreadable file and
    :class:`cpis.errors.PersonIndexUnavailable` when the index cannot answer.
    """
    read = read_trace_file(data, filename=filename)
    report: Callable[[int], None] | None = None
    if progress is not None:
        total = len(read.records)
        progress(0, total)
        report = functools.partial(_progress, progress, total)
    rows = await review(index, read.records, progress=report, retry_delays=retry_delays)
    return rows, summarise(rows, skipped_deletes=read.deletes)


def _progress(progress: Callable[[int, int], None], total: int, done: int) -> None:
    progress(done, total)
