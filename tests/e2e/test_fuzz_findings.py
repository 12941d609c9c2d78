"""What the fuzzers (``test_openapi_fuzz``, ``test_fhir_fuzz``) and probing around them found.

Each test is one finding: the requests that showed it and the answer they must get now.
Where a finding was made by hand, the fuzzers were then taught its kind of input (digits
that are not ASCII, bodies that are not UTF-8), so they would have found it too.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cpis.matching.nhs_number import synthetic_numbers
from tests.cis2_issuer import LocalCis2
from tests.e2e.conftest import (
    ASSERTION_TYPE,
    E2E,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    NHS_SYSTEM,
    error_code,
    user_headers,
)
from tests.e2e.test_subscriptions_api import subscription_body

(NUMBER,) = synthetic_numbers(1, start=9300)
SUPERSCRIPT_TWO = "\u00b2"  # str.isdigit() is true of it; int() refuses it
ARABIC_INDIC_ONE = "\u0661"  # str.isdigit() is true of it; int() reads it as 1


@pytest.fixture
def e2e_overrides(cis2: LocalCis2) -> dict[str, Any]:
    return {"workers_in_serve": False, "cis2_issuers": (cis2.issuer,)}


async def test_subscription_routes_do_not_repeat_a_parameter_name_that_is_an_nhs_number(
    e2e: E2E,
) -> None:
    """Found by schemathesis: ``GET /FHIR/R4/Subscription?{NHS number}=1`` answered
    ``unknown parameter: {NHS number}`` (``expression`` the same), as did ``$status`` and
    ``$events``, and for a Parameters body's parameter name; a name with control characters
    made the OperationOutcome invalid FHIR. A name is the caller's free text: now it is
    named back only when shaped like a parameter name (no run of three digits)."""
    auth = {**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/fhir+json"}
    created = await e2e.request(
        "POST", "/FHIR/R4/Subscription", headers=auth, data=json.dumps(subscription_body(e2e))
    )
    assert created.status == 201, created.text
    sub = created.json()["id"]
    for name in (NUMBER, f"{NHS_SYSTEM}|{NUMBER}"):
        for path in (
            "/FHIR/R4/Subscription",
            "/FHIR/R4/Subscription/$status",
            f"/FHIR/R4/Subscription/{sub}/$status",
            f"/FHIR/R4/Subscription/{sub}/$events",
        ):
            reply = await e2e.request("GET", path, headers=auth, params=[(name, "1")])
            assert reply.status == 400, (path, reply.text)
            assert error_code(reply.fhir()) == "INVALID_SEARCH_DATA"
            assert NUMBER[:6] not in reply.text, (path, reply.text)
        for parameter in ({"name": name, "valueString": "1"}, {"name": name}):
            body = {"resourceType": "Parameters", "parameter": [parameter]}
            reply = await e2e.request(
                "POST", f"/FHIR/R4/Subscription/{sub}/$events", headers=auth, data=json.dumps(body)
            )
            assert reply.status == 400, reply.text
            reply.fhir()
            assert NUMBER[:6] not in reply.text, reply.text
    # A name shaped like a parameter name is still named, to help the caller.
    reply = await e2e.request("GET", "/FHIR/R4/Subscription", headers=auth, params={"_count": "1"})
    assert reply.status == 400
    assert reply.json()["issue"][0]["diagnostics"] == "unknown parameter: _count"


async def test_digits_that_are_not_ascii_are_refused_not_a_500(e2e: E2E) -> None:
    """Found by probing, then by both fuzzers once taught such digits: ``limit=²`` on the
    inbox, ``eventsSinceNumber=²`` on $events and a vread of version ``²`` were 500s
    (str.isdigit() said yes, int() said no). Now 400 or 404 like any other bad number; an
    Arabic-Indic one is not version 1 in If-Match either."""
    la = await e2e.auth(LA_NORTH_CLIENT)
    created = await e2e.request(
        "POST",
        "/FHIR/R4/Subscription",
        headers={**la, "Content-Type": "application/fhir+json"},
        data=json.dumps(subscription_body(e2e)),
    )
    sub = created.json()["id"]
    for digit in (SUPERSCRIPT_TWO, ARABIC_INDIC_ONE):
        inbox = await e2e.request(
            "GET", "/la/v1/notifications", headers=la, params={"limit": digit}
        )
        assert inbox.status == 400, inbox.text
        for name in ("eventsSinceNumber", "eventsUntilNumber"):
            events = await e2e.request(
                "GET", f"/FHIR/R4/Subscription/{sub}/$events", headers=la, params={name: digit}
            )
            assert events.status == 400, events.text
        vread = await e2e.request(
            "GET",
            f"/FHIR/R4/Organization/XLA01/_history/{digit}",
            headers={**await e2e.auth(ED_CLIENT), **user_headers()},
        )
        assert vread.status == 404, vread.text
        vread.fhir()
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-9300", nhs_number=NUMBER, plan_type="CPP", start_date="2025-01-06"
    )
    stale = await e2e.request(
        "DELETE", "/la/v1/plans/N-9300", headers={**la, "If-Match": f'W/"{ARABIC_INDIC_ONE}"'}
    )
    assert stale.status == 400, stale.text


async def test_a_token_request_not_in_utf8_is_an_oauth_error_not_a_500(e2e: E2E) -> None:
    """Found by probing, then by schemathesis once taught such bodies: a form with bytes
    that are not UTF-8, or a charset Python does not know, was a 500 (aiohttp decodes the
    form as it reads it). Now RFC 6749's invalid_request."""
    form = "application/x-www-form-urlencoded"
    for content_type, body in (
        (form, b"\xff\xfe=1&grant_type=client_credentials"),
        (f"{form}; charset=no-such-charset", b"grant_type=client_credentials"),
        (f"{form}; charset=utf-16", b"grant_type=client_credentials"),
    ):
        reply = await e2e.request(
            "POST", "/oauth2/token", headers={"Content-Type": content_type}, data=body
        )
        assert reply.status == 400, reply.text
        assert reply.json()["error"] == "invalid_request"


async def test_a_subscription_end_with_no_utc_instant_is_refused_not_a_500(e2e: E2E) -> None:
    """Found by probing: ``end`` 9999-12-31T23:59:59-01:00 is a valid FHIR instant with no
    UTC datetime in Python, and the database driver's OverflowError was a 500. Now 422."""
    body = {**subscription_body(e2e), "end": "9999-12-31T23:59:59-01:00"}
    reply = await e2e.request(
        "POST",
        "/FHIR/R4/Subscription",
        headers={**await e2e.auth(LA_NORTH_CLIENT), "Content-Type": "application/fhir+json"},
        data=json.dumps(body),
    )
    assert reply.status == 422, reply.text
    assert reply.fhir()["issue"][0]["expression"] == ["Subscription.end"]


async def test_an_id_token_assurance_level_in_other_digits_is_refused_not_a_500(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """Found reading the code the fuzzers pointed at: an ID token (from a trusted issuer)
    whose id_assurance_level was "²" made a 500. Now it counts as no level: invalid_grant."""
    id_token = cis2.id_token(
        cis2.nurse(audience=f"{ED_CLIENT}.cis2", id_assurance_level=SUPERSCRIPT_TWO)
    )
    reply = await e2e.request(
        "POST",
        "/oauth2/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
            "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
            "subject_token": id_token,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": e2e.assertion(ED_CLIENT),
        },
    )
    assert reply.status == 400, reply.text
    assert reply.json()["error"] == "invalid_grant"
