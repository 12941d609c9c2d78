"""Checking an upload's NHS numbers against the person index (SPEC §5 CPR01/02/03/05).

The parser has already checked each number's format and check digit (CPR04).
With a person index configured, every upsert is then checked against what the
index holds for its number, in this order, the first failure deciding:

CPR01  the index does not know the number, or knows it as no longer in use
CPR05  the number was superseded (records merged): the new number is given
       back so the LA can correct its system and resend
CPR02  the index marks the record sensitive: CP-IS does not hold those
CPR03  the LA's name and birth date do not match the index's well enough; a
       record with neither a name nor a birth date cannot be confirmed, so it
       gets CPR03 too, because a plan on the wrong child is worse than none

"Well enough" (:func:`confirms`) is one of:

- ``cpis.matching.demographics.compare`` says "match" and it is *exact*
  (birth date and both names as written, a middle name on one side allowed);
- *confirmed by the index*: ``compare`` says "match" resting on a nickname or
  a slip, or "possible" with nothing contradicting (no different given name,
  birth date or sex) and at least ``CONFIRM_WEIGHT`` of evidence, and there
  is no *rival*: the index, searched with the LA's own name and birth date
  (``PersonIndex.search``), finds nobody else who compares within
  ``RIVAL_MARGIN`` of the numbered person. (Twins are why an imperfect
  "match" is asked too: "Alex" fits Alexander and Alexandra equally.)

Why the second is safe. A wrong number on an LA record is, in practice, a
sibling's (siblings' records get mixed up; a twin's when there is one) or a
mistyped number that still passes the check digit, which lands on a stranger.
A stranger agrees with the LA's child on nothing, so never reaches
``CONFIRM_WEIGHT`` with nothing contradicting. A sibling shares the surname
but not the given name or (unless a twin) the birth date, so is contradicted;
what is left is a record too incomplete to tell the LA's child from the
numbered one (no given name, a changed surname, names the wrong way round
with a slip) *and* the LA's child also in the index. Then the search finds the
LA's child, who compares at least as well as the numbered person, and the
record is refused. So "no given name, but no other child in the index with
this surname and birth date" applies, and a twin's number does not.
``bench/matching`` measures it (bench/README.md); the search is asked only for
records that ``compare`` alone does not settle.

A rival search that runs out of time (:class:`cpis.errors.IndexSearchTimedOut`)
refuses that one record with CPR07 (resend it); it is not an outage, so the
rest of the file is decided as usual rather than the whole file getting CPF05.

Deletes are not checked: they name the LA's own plan id, not a person.
Reasons carry codes (``compare``'s reasons), never names or dates.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Collection, Iterable, Mapping, Sequence

from cpis.errors import IndexSearchTimedOut
from cpis.matching.demographics import MatchResult, Person, compare
from cpis.matching.trace import as_person
from cpis.model import PlanFields
from cpis.model.persons import IndexPerson, PersonQuery
from cpis.model.uploads import RecordAction, RecordRejection, RecordResult
from cpis.ports.person_index import PersonIndex

CONFIRM_WEIGHT = 3.5
"""The evidence weight a record short of "match" needs before the index may
confirm it: two parts agreeing, one of them perhaps with a slip (a surname and
a birth date a year out; a given name and a surname). A birth date alone (3)
or a given name alone (3) never is."""

RIVAL_MARGIN = 1.5
"""How far ahead of everyone else the index finds the numbered person must be:
as much as an exact birth date is ahead of one with a slip. Half tracing's
margin (``cpis.matching.trace.CERTAIN_MARGIN``) because the LA's number
already points at this person; a rival as good, or nearly (a twin when the
given name is missing, the real child behind a sibling's number), still
refuses the record."""

RIVAL_SEARCH_LIMIT = 20

SEARCH_TIMED_OUT = RecordRejection(
    "CPR07", "the person index could not be searched in time to confirm the NHS number: resend"
)
CONCURRENCY = 8
"""Index searches in flight at once: enough to hide a network round trip."""


def _to_check(record: RecordResult) -> PlanFields | None:
    if record.rejection is not None or record.action is not RecordAction.UPSERT:
        return None
    return record.fields


def la_person(fields: PlanFields) -> Person:
    """The LA's side of the comparison: what an upload record says about the child."""
    return Person(
        given_name=fields.given_name or "",
        family_name=fields.family_name or "",
        birth_date=fields.birth_date,
    )


def needs_rivals(result: MatchResult) -> bool:
    """Whether only the index can settle ``result``: anything but an exact match
    that is worth confirming. A "match" resting on a nickname or a slip is
    asked too: "Alex" is as good a match for a twin Alexandra as for Alexander,
    so a twin's number sent for the other twin would otherwise be applied."""
    if result.exact or result.contradicted:
        return False
    return result.decision == "match" or result.weight >= CONFIRM_WEIGHT


def confirms(
    la: Person,
    result: MatchResult,
    numbers: Collection[str],
    rivals: Iterable[IndexPerson] | None,
) -> bool:
    """Whether ``result`` (the LA's child against the index's record) is good
    enough to hold a plan against that record's number; ``numbers`` are that
    person's numbers (the one sent, and the one that superseded it); ``rivals``
    are what the index found for the LA's demographics (the person's own
    record among them or not), None when it was not asked."""
    if result.decision == "match" and result.exact:
        return True
    if rivals is None or not needs_rivals(result):
        return False  # not searched: only an exact match stands on its own
    return all(
        result.weight - compare(la, as_person(rival)).weight >= RIVAL_MARGIN
        for rival in rivals
        if rival.nhs_number not in numbers
    )


def rival_query(la: Person) -> PersonQuery:
    return PersonQuery(
        family_name=la.family_name or None,
        given_names=la.given_name or None,
        birth_date=la.birth_date,
    )


def check_against_index(
    fields: PlanFields, person: IndexPerson | None, rivals: Sequence[IndexPerson] | None = None
) -> RecordRejection | None:
    """The index's verdict on one upsert; None means it may be applied.

    ``rivals`` are the index's search results for the LA's demographics (see
    :func:`verify_records`); an empty sequence means the index found nobody
    else, None that it was not asked (then only an exact match is applied).
    """
    if person is None:
        return RecordRejection("CPR01", "NHS number not found in the person index")
    if person.superseded_by is not None:
        return RecordRejection(
            "CPR05",
            "NHS number superseded in the person index: resend the record with the new number",
            new_nhs_number=person.superseded_by,
        )
    if not person.active:
        return RecordRejection("CPR01", "NHS number is no longer in use in the person index")
    if person.sensitive:
        return RecordRejection("CPR02", "sensitive record in the person index: not applied")
    if fields.birth_date is None and not fields.family_name and not fields.given_name:
        return RecordRejection(
            "CPR03", "no name or birth date was sent to confirm the NHS number against"
        )
    la = la_person(fields)
    result = compare(la, as_person(person))
    if confirms(la, result, (person.nhs_number,), rivals):
        return None
    reasons = list(result.reasons)
    if needs_rivals(result) and rivals is not None:
        reasons.append("another-person-matches-as-well")
    return RecordRejection(
        "CPR03",
        f"demographics do not match the NHS number well enough ({result.decision}, "
        f"score {result.score:.2f}: {', '.join(reasons)})",
    )


async def verify_records(
    index: PersonIndex | None, records: Sequence[RecordResult]
) -> tuple[RecordResult, ...]:
    """``records`` with the index's rejections added; unchanged without an index.

    Raises :class:`cpis.errors.PersonIndexUnavailable` when the index cannot
    answer: the caller answers CPF05 and applies nothing.
    """
    if index is None:
        return tuple(records)
    numbers = sorted({f.nhs_number for r in records if (f := _to_check(r)) is not None})
    known = await index.get_many(numbers) if numbers else {}
    rivals, timed_out = await _rivals(index, records, known)
    out: list[RecordResult] = []
    for i, record in enumerate(records):
        fields = _to_check(record)
        rejection = (
            None
            if fields is None
            else SEARCH_TIMED_OUT
            if i in timed_out
            else check_against_index(fields, known.get(fields.nhs_number), rivals.get(i))
        )
        out.append(
            record if rejection is None else dataclasses.replace(record, rejection=rejection)
        )
    return tuple(out)


async def _rivals(
    index: PersonIndex, records: Sequence[RecordResult], known: Mapping[str, IndexPerson]
) -> tuple[dict[int, Sequence[IndexPerson]], set[int]]:
    """The index's search results for each record only the index can settle, and
    the records whose search ran out of time."""
    wanted: dict[int, Person] = {}
    for i, record in enumerate(records):
        fields = _to_check(record)
        person = None if fields is None else known.get(fields.nhs_number)
        if fields is None or person is None:
            continue
        if person.superseded_by is not None or not person.active or person.sensitive:
            continue
        la = la_person(fields)
        if needs_rivals(compare(la, as_person(person))):
            wanted[i] = la
    found: dict[int, Sequence[IndexPerson]] = {}
    timed_out: set[int] = set()
    gate = asyncio.Semaphore(CONCURRENCY)

    async def search(i: int, la: Person) -> None:
        async with gate:
            try:
                found[i] = await index.search(rival_query(la), limit=RIVAL_SEARCH_LIMIT)
            except IndexSearchTimedOut:
                timed_out.add(i)

    try:
        async with asyncio.TaskGroup() as group:
            for i, la in wanted.items():
                group.create_task(search(i, la))
    except ExceptionGroup as failed:
        # The first failure (the index going away) is the one the caller expects.
        raise failed.exceptions[0] from None
    return found, timed_out


async def verify_plan(index: PersonIndex, fields: PlanFields) -> RecordRejection | None:
    """The same checks for one plan from the plan API; None means it may be stored."""
    (checked,) = await verify_records(index, [RecordResult(1, None, RecordAction.UPSERT, fields)])
    return checked.rejection
