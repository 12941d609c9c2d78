"""The person index's verdicts on uploaded records (SPEC §5 CPR01/02/03/05).

Every NHS number here is from the 999 range and every name is invented.
"""

from __future__ import annotations

from datetime import date

import pytest

from cpis.model import PlanFields, PlanType
from cpis.ports import IndexPerson
from cpis.uploads import RecordAction, RecordRejection, RecordResult
from cpis.uploads.verify import check_against_index, verify_records

NHS, NEW = "9990000018", "9990000026"
BORN = date(2016, 4, 3)


def fields(**overrides: object) -> PlanFields:
    base: dict[str, object] = {
        "nhs_number": NHS,
        "plan_type": PlanType.CPP,
        "start_date": date(2026, 1, 5),
        "birth_date": BORN,
        "family_name": "Testerton",
        "given_name": "Jonathan",
    }
    return PlanFields(**(base | overrides))  # type: ignore[arg-type]


def person(**overrides: object) -> IndexPerson:
    base: dict[str, object] = {
        "nhs_number": NHS,
        "family_name": "Testerton",
        "given_names": "Jonathan Peter",
        "birth_date": BORN,
        "sex": "male",
        "postcode": "LS1 4AP",
    }
    return IndexPerson(**(base | overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sent", "indexed", "code"),
    [
        (fields(), person(), None),
        (fields(given_name="Jon"), person(), None),  # nickname: one fuzzy part
        (fields(birth_date=date(2016, 3, 4)), person(), None),  # day/month transposed
        (fields(family_name="Testerten"), person(), None),  # one typo
        (fields(), None, "CPR01"),
        (fields(), person(active=False), "CPR01"),
        (fields(), person(superseded_by=NEW), "CPR05"),
        (fields(), person(sensitive=True, postcode=None), "CPR02"),
        (fields(family_name="Unrelated", given_name="Mary"), person(), "CPR03"),
        (fields(birth_date=date(2012, 9, 30)), person(), "CPR03"),
        (fields(birth_date=None), person(), "CPR03"),  # names alone are not enough
        (fields(birth_date=None, family_name=None, given_name=None), person(), "CPR03"),
        (fields(given_name="Jon", family_name="Testerten"), person(), None),  # two small slips
        (fields(given_name="Jon", family_name="Unrelated"), person(), "CPR03"),
    ],
)
def test_each_verdict(sent: PlanFields, indexed: IndexPerson | None, code: str | None) -> None:
    rejection = check_against_index(sent, indexed)
    assert (None if rejection is None else rejection.code) == code


def test_superseded_gives_the_new_number_and_no_personal_data_in_reasons() -> None:
    rejection = check_against_index(fields(), person(superseded_by=NEW))
    assert rejection == RecordRejection("CPR05", rejection.reason, new_nhs_number=NEW)
    for sent, indexed in [
        (fields(family_name="Unrelated"), person()),
        (fields(birth_date=None, family_name=None, given_name=None), person()),
        (fields(), None),
    ]:
        found = check_against_index(sent, indexed)
        assert found is not None
        for secret in (NHS, "Testerton", "Unrelated", "Jonathan", "2016", "LS1"):
            assert secret not in found.reason


async def test_without_an_index_nothing_changes() -> None:
    records = (
        RecordResult(1, "P-1", RecordAction.UPSERT, fields()),
        RecordResult(2, "P-2", RecordAction.DELETE),
        RecordResult(3, None, None, rejection=RecordRejection("CPR04", "bad")),
    )
    assert await verify_records(None, records) == records
