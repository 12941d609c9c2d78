"""The plan API with a person index: a real-time plan is held to the same checks as an
uploaded one (a plan on the wrong child is worse than none, whichever way it comes)."""

from __future__ import annotations

from typing import Any

import pytest

from cpis.adapters.postgres import load_person_index
from tests.e2e.conftest import E2E, LA_NORTH_CLIENT

# Everything synthetic: 999-range numbers, invented names.
EXTRACT = (
    "nhs_number,family_name,given_names,birth_date,sex,postcode,sensitive,superseded_by,active\n"
    "9990000018,Testchild,Alexander James,2016-07-14,male,LS1 4AP,N,,\n"
    "9990000107,Sensitivechild,Robin,2019-02-11,,,Y,,\n"
    "9990000123,Mergedchild,Jordan,2017-05-20,male,,N,9990000131,\n"
    "9990000131,Mergedchild,Jordan,2017-05-20,male,,N,,\n"
)
PLAN = {"plan_type": "CPP", "start_date": "2026-03-02"}


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    return {"person_index": "local"}


@pytest.fixture
async def indexed(e2e: E2E) -> E2E:
    await load_person_index(e2e.runtime.pool, e2e.runtime.vault, EXTRACT.encode())
    return e2e


async def test_a_matching_child_is_accepted(indexed: E2E) -> None:
    await indexed.put_plan(
        LA_NORTH_CLIENT, "P-1", expect=201, nhs_number="9990000018", birth_date="2016-07-14",
        family_name="Testchild", given_name="Alex", **PLAN,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("nhs", "demographics", "code"),
    [
        ("9990000026", {"birth_date": "2016-07-14", "family_name": "Testchild"}, "CPR01"),
        ("9990000107", {"birth_date": "2019-02-11", "family_name": "Sensitivechild"}, "CPR02"),
        ("9990000018", {"birth_date": "2012-01-05", "family_name": "Otherfamily"}, "CPR03"),
        ("9990000018", {}, "CPR03"),
        ("9990000123", {"birth_date": "2017-05-20", "family_name": "Mergedchild"}, "CPR05"),
    ],
)
async def test_the_index_refuses_with_the_record_code_and_nothing_is_stored(
    indexed: E2E, nhs: str, demographics: dict[str, str], code: str
) -> None:
    reply = await indexed.put_plan(
        LA_NORTH_CLIENT, "P-2", expect=422, nhs_number=nhs, given_name="Robin", **demographics,
        **PLAN,
    )  # fmt: skip
    outcome = reply.json()
    assert outcome["resourceType"] == "OperationOutcome"
    diagnostics = outcome["issue"][0]["diagnostics"]
    assert diagnostics.startswith(f"{code}: ")
    assert nhs not in diagnostics and "9990000131" not in diagnostics
    assert await indexed.db.fetchval("SELECT count(*) FROM plan") == 0
