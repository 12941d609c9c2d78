"""The person index's verdicts on uploaded records (SPEC §5 CPR01/02/03/05).

Every NHS number here is from the 999 range and every name is invented.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pytest

from cpis.errors import PersonIndexUnavailable
from cpis.matching.blocking import MemoryIndex
from cpis.model import PlanFields, PlanType
from cpis.model.persons import IndexPerson, PersonQuery
from cpis.model.uploads import RecordAction, RecordRejection, RecordResult
from cpis.services.verification import check_against_index, verify_records

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


TWIN = "9990000034"


@pytest.mark.parametrize(
    ("sent", "indexed", "rivals", "code"),
    [
        (fields(), person(), (), None),
        (fields(given_name="Jon"), person(), (), None),  # nickname: one fuzzy part
        (fields(birth_date=date(2016, 3, 4)), person(), (), None),  # day/month transposed
        (fields(family_name="Testerten"), person(), (), None),  # one typo
        (fields(), None, (), "CPR01"),
        (fields(), person(active=False), (), "CPR01"),
        (fields(), person(superseded_by=NEW), (), "CPR05"),
        (fields(), person(sensitive=True, postcode=None), (), "CPR02"),
        (fields(family_name="Unrelated", given_name="Mary"), person(), (), "CPR03"),
        (fields(birth_date=date(2012, 9, 30)), person(), (), "CPR03"),
        (fields(birth_date=None, family_name=None, given_name=None), person(), (), "CPR03"),
        (fields(given_name="Jon", family_name="Testerten"), person(), (), None),  # two small slips
        # Short of "match", but nobody else in the index comes close: confirmed.
        (fields(birth_date=None), person(), (), None),  # both names, no birth date
        (fields(given_name="Jon", family_name="Unrelated"), person(), (), None),  # new surname
        (fields(given_name=None), person(), (), None),  # no given name
        # ... unless someone does: the twin, or a namesake, is as likely the child.
        (
            fields(given_name=None),
            person(),
            (person(nhs_number=TWIN, given_names="Mary"),),
            "CPR03",
        ),
        (fields(birth_date=None), person(), (person(nhs_number=TWIN, birth_date=None),), "CPR03"),
        # A rival one digit of the birth date away does not refuse it.
        (
            fields(given_name=None),
            person(),
            (person(nhs_number=TWIN, given_names="Mary", birth_date=date(2016, 4, 8)),),
            None,
        ),
        # The numbered person's own record among the search results is no rival.
        (fields(given_name=None), person(), (person(),), None),
        # A nickname fits twins alike: "Jon" against Jonathan's number, with a
        # twin John in the index, is not settled; an exact name is.
        (
            fields(given_name="Jon"),
            person(),
            (person(nhs_number=TWIN, given_names="John"),),
            "CPR03",
        ),
        (fields(), person(), (person(nhs_number=TWIN, given_names="John"),), None),
        # Not searched (None): only an exact match stands on its own.
        (fields(), person(), None, None),
        (fields(given_name="Jon"), person(), None, "CPR03"),
        (fields(given_name=None), person(), None, "CPR03"),
        # Never confirmed: a different given name, a birth date alone, a given name alone.
        (fields(given_name="Louise"), person(given_names="Louis"), (), "CPR03"),
        (fields(given_name=None, family_name="Unrelated"), person(), (), "CPR03"),
        (fields(birth_date=None, family_name="Unrelated"), person(), (), "CPR03"),
    ],
)
def test_each_verdict(
    sent: PlanFields,
    indexed: IndexPerson | None,
    rivals: tuple[IndexPerson, ...] | None,
    code: str | None,
) -> None:
    rejection = check_against_index(sent, indexed, rivals)
    assert (None if rejection is None else rejection.code) == code


def test_a_refusal_for_a_rival_says_so_without_personal_data() -> None:
    rival = person(nhs_number=TWIN, given_names="Mary")
    rejection = check_against_index(fields(given_name=None), person(), (rival,))
    assert rejection is not None and "another-person-matches-as-well" in rejection.reason
    for secret in (NHS, TWIN, "Testerton", "Mary", "2016"):
        assert secret not in rejection.reason


def test_superseded_gives_the_new_number_and_no_personal_data_in_reasons() -> None:
    rejection = check_against_index(fields(), person(superseded_by=NEW))
    assert rejection == RecordRejection("CPR05", rejection.reason, new_nhs_number=NEW)
    for sent, indexed in [
        (fields(family_name="Unrelated", given_name="Mary"), person()),
        (fields(birth_date=None, family_name=None, given_name=None), person()),
        (fields(), None),
    ]:
        found = check_against_index(sent, indexed)
        assert found is not None
        for secret in (NHS, "Testerton", "Unrelated", "Jonathan", "Mary", "2016", "LS1"):
            assert secret not in found.reason


async def test_the_index_is_searched_for_rivals_only_when_compare_does_not_settle_it() -> None:
    """No given name: applied while the child is the only one of that surname born
    that day; refused once the index holds a twin. Clear matches cost no search."""
    records = (
        RecordResult(1, "P-1", RecordAction.UPSERT, fields()),
        RecordResult(2, "P-2", RecordAction.UPSERT, fields(given_name=None)),
        RecordResult(3, "P-3", RecordAction.DELETE),
    )
    alone = MemoryIndex([person()])
    checked = await verify_records(alone, records)
    assert [r.rejection for r in checked] == [None, None, None]
    assert alone.searches == 1
    with_twin = MemoryIndex([person(), person(nhs_number=TWIN, given_names="Mary")])
    checked = await verify_records(with_twin, records)
    codes = [None if r.rejection is None else r.rejection.code for r in checked]
    assert codes == [None, "CPR03", None]


async def test_without_an_index_nothing_changes() -> None:
    records = (
        RecordResult(1, "P-1", RecordAction.UPSERT, fields()),
        RecordResult(2, "P-2", RecordAction.DELETE),
        RecordResult(3, None, None, rejection=RecordRejection("CPR04", "bad")),
    )
    assert await verify_records(None, records) == records


class FailingSearch(MemoryIndex):
    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        raise PersonIndexUnavailable("the person index did not answer")


async def test_an_index_outage_during_a_rival_search_is_the_error_the_caller_expects() -> None:
    """The upload path answers CPF05 for it and applies nothing."""
    records = (RecordResult(1, "P-1", RecordAction.UPSERT, fields(given_name=None)),)
    with pytest.raises(PersonIndexUnavailable):
        await verify_records(FailingSearch([person()]), records)
