"""An ED client written from NHS England's consumer guide alone, against the running service.

The client (:mod:`tests.conformance.nhs_consumer`) imports nothing from this
service; a nurse signs in with (a local stand-in for) CIS2 and the client does
what the guide says. What it shows is what a nurse would see at 3 a.m.
"""

from __future__ import annotations

import aiohttp

from cpis.matching.nhs_number import synthetic_numbers
from tests.cis2_issuer import LocalCis2
from tests.conformance.nhs_consumer import CpisConsumer, CpisError
from tests.e2e.conftest import CLIENTS, E2E, ED, ED_CLIENT, LA_NORTH, LA_NORTH_CLIENT

CHILD, UNKNOWN = synthetic_numbers(2, start=801)
AUD = CLIENTS[ED_CLIENT].cis2_client_id


async def signed_in(
    e2e: E2E, cis2: LocalCis2, http: aiohttp.ClientSession, **who: str
) -> CpisConsumer:
    consumer = CpisConsumer(http, e2e.fhir_base, e2e.settings.token_url)
    await consumer.sign_in(
        client_assertion=e2e.assertion(ED_CLIENT),
        cis2_id_token=cis2.id_token(cis2.nurse(audience=AUD, **who)),
    )
    return consumer


async def test_the_nurse_sees_the_plan_the_edt_number_and_who_looked_before(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """A CPP for the child: the guide's client shows the plan type, dates and LA, the office
    hours number (use work) and the emergency duty team's (use mobile); after a second
    nurse's look, the history names both viewers with role and organisation, newest first."""
    await e2e.put_plan(
        LA_NORTH_CLIENT, "C-1", nhs_number=CHILD, plan_type="CPP", start_date="2026-01-05"
    )
    async with aiohttp.ClientSession() as http:
        first = await signed_in(e2e, cis2, http)
        (plan,) = await first.child_protection(CHILD)
        assert plan.plan_type == "Subject to child protection plan"
        assert plan.start == "2026-01-05"
        assert plan.local_authority.startswith(LA_NORTH.name)
        assert plan.office_hours_phone == LA_NORTH.office_phone
        assert plan.emergency_duty_phone == LA_NORTH.edt_phone

        second = await signed_in(
            e2e,
            cis2,
            http,
            sub="555000000555",
            nhsid_useruid="555000000555",
            name="Sam Registrar",
        )
        await second.child_protection(CHILD)
        views = await second.previously_viewed_by(CHILD)
    assert [(v.viewer_name, v.role, v.organisation) for v in views] == [
        ("Sam Registrar", "Nurse Access Role", f"{ED.name} ({ED.ods_code})"),
        ("Robin Cardholder", "Nurse Access Role", f"{ED.name} ({ED.ods_code})"),
    ]
    assert views[0].when >= views[1].when


async def test_no_record_is_an_empty_list_not_an_error(e2e: E2E, cis2: LocalCis2) -> None:
    """A child with no plan: an empty searchset (no error), and no history to show."""
    async with aiohttp.ClientSession() as http:
        consumer = await signed_in(e2e, cis2, http)
        assert await consumer.child_protection(UNKNOWN) == []
        assert await consumer.previously_viewed_by(UNKNOWN) == []


async def test_a_scheduled_look_is_not_a_visit(e2e: E2E, cis2: LocalCis2) -> None:
    """IsUnscheduledAccessEvent false (scheduled care): the plan is shown, nothing is added to
    the access history and no LA is told."""
    await e2e.put_plan(
        LA_NORTH_CLIENT, "C-2", nhs_number=CHILD, plan_type="LAC", start_date="2026-01-05"
    )
    async with aiohttp.ClientSession() as http:
        consumer = await signed_in(e2e, cis2, http)
        assert len(await consumer.child_protection(CHILD, unscheduled=False)) == 1
        assert await consumer.previously_viewed_by(CHILD) == []
    assert await e2e.counts("access_event", "outbox") == {"access_event": 0, "outbox": 0}


async def test_errors_are_told_apart_by_their_code(e2e: E2E, cis2: LocalCis2) -> None:
    """The guide's error table as its client meets it: a bad NHS number is 400
    INVALID_SEARCH_DATA (invalid), a missing header 400 PRECONDITION_FAILED (invalid), and a
    client that may not search 403 ACCESS_DENIED (forbidden); no token is 401."""
    async with aiohttp.ClientSession() as http:
        consumer = await signed_in(e2e, cis2, http)
        try:
            await consumer.child_protection(CHILD[:9] + str((int(CHILD[9]) + 1) % 10))
        except CpisError as err:
            assert (err.status, err.code, err.issue_type) == (400, "INVALID_SEARCH_DATA", "invalid")
        else:
            raise AssertionError("a wrong check digit was accepted")

        url = f"{e2e.fhir_base}/CareTeam"
        query = {"patient:identifier": f"https://fhir.nhs.uk/Id/nhs-number|{CHILD}"}
        no_trace = {"Authorization": consumer._headers(True)["Authorization"]}
        async with http.get(url, params=query, headers=no_trace) as resp:
            issue = (await resp.json(content_type=None))["issue"][0]
            assert (resp.status, issue["details"]["coding"][0]["code"], issue["code"]) == (
                400,
                "PRECONDITION_FAILED",
                "invalid",
            )
        la = {**await e2e.auth(LA_NORTH_CLIENT), "TraceID": "t-1"}
        async with http.get(url, params=query, headers=la) as resp:
            issue = (await resp.json(content_type=None))["issue"][0]
            assert (resp.status, issue["details"]["coding"][0]["code"], issue["code"]) == (
                403,
                "ACCESS_DENIED",
                "forbidden",
            )
        async with http.get(url, params=query, headers={"TraceID": "t-2"}) as resp:
            issue = (await resp.json(content_type=None))["issue"][0]
            assert (resp.status, issue["details"]["coding"][0]["code"]) == (401, "ACCESS_DENIED")
