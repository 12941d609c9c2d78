"""What the fuzzers (``test_openapi_fuzz``, ``test_fhir_fuzz``) found, pinned request by request.

Each test is one finding: the request that showed it and the answer it must get now.
"""

from __future__ import annotations

import json

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, LA_NORTH_CLIENT, NHS_SYSTEM, error_code
from tests.e2e.test_subscriptions_api import subscription_body

(NUMBER,) = synthetic_numbers(1, start=9300)


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
