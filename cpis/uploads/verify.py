"""Checking an upload's NHS numbers against the person index (SPEC §5 CPR01/02/03/05).

The parser has already checked each number's format and check digit (CPR04).
With a person index configured, every upsert is then checked against what the
index holds for its number, in this order, the first failure deciding:

CPR01  the index does not know the number, or knows it as no longer in use
CPR05  the number was superseded (records merged): the new number is given
       back so the LA can correct its system and resend
CPR02  the index marks the record sensitive: CP-IS does not hold those
CPR03  the LA's name and birth date do not match the index's well enough
       (``cpis.matching.demographics.compare`` must say "match"); a record
       with neither a name nor a birth date cannot be confirmed, so it gets
       CPR03 too, because a plan on the wrong child is worse than none

Deletes are not checked: they name the LA's own plan id, not a person.
Reasons carry codes (``compare``'s reasons), never names or dates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from cpis.matching.demographics import Person, compare
from cpis.model import PlanFields
from cpis.ports import IndexPerson, PersonIndex
from cpis.uploads.parse import RecordAction, RecordRejection, RecordResult


def _to_check(record: RecordResult) -> PlanFields | None:
    if record.rejection is not None or record.action is not RecordAction.UPSERT:
        return None
    return record.fields


def check_against_index(fields: PlanFields, person: IndexPerson | None) -> RecordRejection | None:
    """The index's verdict on one upsert; None means it may be applied."""
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
    result = compare(
        Person(
            given_name=fields.given_name or "",
            family_name=fields.family_name or "",
            birth_date=fields.birth_date,
        ),
        Person(
            given_name=person.given_names or "",
            family_name=person.family_name or "",
            birth_date=person.birth_date,
            sex=person.sex,
            postcode=person.postcode,
        ),
    )
    if result.decision == "match":
        return None
    return RecordRejection(
        "CPR03",
        f"demographics do not match the NHS number well enough ({result.decision}, "
        f"score {result.score:.2f}: {', '.join(result.reasons)})",
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
    out: list[RecordResult] = []
    for record in records:
        fields = _to_check(record)
        rejection = (
            None if fields is None else check_against_index(fields, known.get(fields.nhs_number))
        )
        out.append(
            record if rejection is None else dataclasses.replace(record, rejection=rejection)
        )
    return tuple(out)
