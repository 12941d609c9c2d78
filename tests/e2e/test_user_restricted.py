"""User-restricted access: an ED system exchanges its user's CIS2 ID token for an access token.

NHS England's API platform's "separate authentication and authorisation"
pattern, against a local OpenID provider that publishes discovery and keys as
CIS2 does (``tests/cis2_issuer.py``): RFC 8693 token exchange at
``POST /oauth2/token``, then lookups carrying only the CP-IS consumer guide's
headers, with the person, role and organisation taken from the token.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest

from cpis.adapters.postgres import open_viewer
from cpis.matching.nhs_number import synthetic_numbers
from tests.cis2_issuer import LocalCis2
from tests.e2e.conftest import (
    CLIENTS,
    E2E,
    ED,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    SILENT_CLIENT,
    TRUST_CLIENT,
    UTC,
    error_code,
    identifier,
)

CHILD, OTHER = synthetic_numbers(2, start=701)
ED_AUD = CLIENTS[ED_CLIENT].cis2_client_id
TRUST_AUD = CLIENTS[TRUST_CLIENT].cis2_client_id
VIEWER_INCLUDE = (
    "AuditEvent:entity-type=http://terminology.hl7.org/CodeSystem/v3-RoleClass|ASSIGNED"
)


@pytest.fixture
def e2e_overrides(cis2: LocalCis2) -> dict[str, Any]:
    return {"cis2_issuers": (cis2.issuer,)}


async def viewers(e2e: E2E, columns: str) -> list[dict[str, Any]]:
    """Each access event's ``columns`` and its viewer, opened as the service opens it
    (staff data is sealed at rest: tests/integration/test_lookup_storage.py)."""
    rows = await e2e.fetch(f"SELECT viewer_sealed, {columns} FROM access_event")
    out = []
    for r in rows:
        row = dict(r)
        row.update(open_viewer(e2e.runtime.vault, row.pop("viewer_sealed"))._asdict())
        out.append(row)
    return out


async def seed(e2e: E2E) -> None:
    await e2e.put_plan(
        LA_NORTH_CLIENT, "U-1", nhs_number=CHILD, plan_type="CPP", start_date="2024-01-01"
    )


def guide_headers(token: str, **extra: str) -> dict[str, str]:
    """Only what the CP-IS consumer guide has an ED system send."""
    return {
        "Authorization": f"Bearer {token}",
        "TraceID": "4f6c2d55-7f0e-4a0e-9f5a-3b1f5f0e2a11",
        "IsUnscheduledAccessEvent": "true",
        **extra,
    }


async def test_a_signed_in_nurse_looks_up_with_only_the_guides_headers(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """With a user-restricted token the lookup needs no NHSD-End-User-* header; the access
    event, the PractitionerRole and the LA's notification name the CIS2 user, her selected
    role and its organisation."""
    await seed(e2e)
    reply = await e2e.exchange_request(
        e2e.assertion(ED_CLIENT), cis2.id_token(cis2.nurse(audience=ED_AUD))
    )
    assert reply.status == 200, reply.text
    answer = reply.json()
    assert answer["token_type"].lower() == "bearer"
    assert answer["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert answer["expires_in"] == e2e.settings.access_token_ttl
    assert reply.headers["Cache-Control"] == "no-store"
    token = answer["access_token"]

    lookup = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers=guide_headers(token),
        params={"patient:identifier": identifier(CHILD)},
    )
    assert lookup.status == 200, lookup.text
    assert lookup.fhir()["total"] == 1

    (row,) = await viewers(e2e, "user_verified, org_ods, org_name")
    assert row == {
        "user_id": "555000000777",
        "user_name": "Robin Cardholder",
        "user_role": "Nurse Access Role",
        "role_code": "R8001",
        "role_profile_id": "555000000888",
        "user_verified": True,
        "org_ods": ED.ods_code,
        "org_name": ED.name,
    }
    assert await e2e.counts("outbox") == {"outbox": 1}

    history = await e2e.request(
        "GET",
        "/FHIR/R4/AuditEvent",
        headers=guide_headers(token),
        params={"patient:identifier": identifier(CHILD), "_include": VIEWER_INCLUDE},
    )
    bundle = history.fhir()
    (event,) = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "match"]
    (role,) = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert event["agent"][1]["who"]["reference"] == f"PractitionerRole/{role['id']}"
    assert role["practitioner"]["display"] == "Robin Cardholder"
    assert role["identifier"] == [
        {"system": "https://fhir.nhs.uk/Id/sds-role-profile-id", "value": "555000000888"}
    ]
    assert role["code"][0]["coding"][0]["display"] == "Nurse Access Role"
    assert role["organization"]["display"] == f"{ED.name} ({ED.ods_code})"

    inbox = await e2e.request(
        "GET", "/la/v1/notifications", headers=await e2e.auth(LA_NORTH_CLIENT)
    )
    (child,) = inbox.json()["children"]
    assert child["attendances"][0]["user"] == {
        "name": "Robin Cardholder",
        "role": "Nurse Access Role",
        "role_code": "R8001",
        "role_profile_id": "555000000888",
        "verified": True,
    }


async def test_a_user_token_never_acts_for_another_organisation_or_user(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """A trust's client whose nurse selected her role at the ED cannot look up as the UTC, nor
    name another user; headers that agree with the token are accepted, and a lookup refused
    records nothing."""
    await seed(e2e)
    token = await e2e.user_token(
        TRUST_CLIENT, cis2.id_token(cis2.nurse(audience=TRUST_AUD, org_code=ED.ods_code))
    )
    params = {"patient:identifier": identifier(CHILD)}
    for extra in (
        {"NHSD-End-User-Organisation-ODS": UTC.ods_code},
        {"NHSD-End-User-Id": "555000000999"},
    ):
        refused = await e2e.request(
            "GET", "/FHIR/R4/CareTeam", headers=guide_headers(token, **extra), params=params
        )
        assert refused.status == 403, extra
        assert error_code(refused.fhir()) == "ACCESS_DENIED"
    assert await e2e.counts("access_event") == {"access_event": 0}

    agreeing = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers=guide_headers(
            token,
            **{
                "NHSD-End-User-Organisation-ODS": ED.ods_code.lower(),
                "NHSD-End-User-Id": "555000000777",
                "NHSD-End-User-Name": "Someone Else",
            },
        ),
        params=params,
    )
    assert agreeing.status == 200
    (row,) = await viewers(e2e, "org_ods")
    assert (row["org_ods"], row["user_name"]) == (ED.ods_code, "Robin Cardholder")


async def test_the_role_decides_the_organisation_of_a_multi_site_client(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """A client registered for an ED and a UTC acts for the organisation of the user's selected
    role; without the role's organisation in the ID token it cannot tell which, and refuses."""
    await seed(e2e)
    at_utc = await e2e.user_token(
        TRUST_CLIENT, cis2.id_token(cis2.nurse(audience=TRUST_AUD, org_code=UTC.ods_code))
    )
    reply = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers=guide_headers(at_utc),
        params={"patient:identifier": identifier(CHILD)},
    )
    assert reply.status == 200
    (row,) = await e2e.fetch("SELECT org_ods, setting_type FROM access_event")
    assert (row["org_ods"], row["setting_type"]) == (UTC.ods_code, "UTC")

    bare = cis2.nurse(audience=TRUST_AUD, nhsid_nrbac_roles=None, nhsid_user_orgs=None)
    refused = await e2e.exchange_request(e2e.assertion(TRUST_CLIENT), cis2.id_token(bare))
    assert refused.status == 400
    assert refused.json()["error"] == "invalid_grant"


async def test_an_id_token_with_only_cis2s_own_claims_is_enough_for_a_single_site_client(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """CIS2's ID token itself carries only sub, the assurance levels and selected_roleid: for
    a client registered for one organisation that is the user's organisation; the role's
    name is unknown and left out, never invented."""
    await seed(e2e)
    claims = cis2.nurse(audience=ED_AUD, name=None, nhsid_nrbac_roles=None, nhsid_user_orgs=None)
    claims.pop("nhsid_useruid")
    token = await e2e.user_token(ED_CLIENT, cis2.id_token(claims))
    reply = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers=guide_headers(token),
        params={"patient:identifier": identifier(CHILD)},
    )
    assert reply.status == 200
    (row,) = await viewers(e2e, "org_ods")
    assert row == {
        "user_id": "555000000777",
        "user_name": "",
        "user_role": "",
        "role_code": None,
        "role_profile_id": "555000000888",
        "org_ods": ED.ods_code,
    }


def _refusals(cis2: LocalCis2) -> list[tuple[str, str]]:
    now = int(time.time())
    good = cis2.nurse(audience=ED_AUD)
    sign = cis2.id_token
    other_role = {**good["nhsid_nrbac_roles"][0], "person_roleid": "555000000999"}

    def without(*names: str) -> dict[str, Any]:
        return {k: v for k, v in good.items() if k not in names}

    return [
        ("expired", sign({**good, "exp": now - 120, "iat": now - 720})),
        ("another audience", sign({**good, "aud": "someone-else.cis2"})),
        ("issued in the future", sign({**good, "iat": now + 3600})),
        ("a huge exp", sign({**good, "exp": 10**30})),
        ("exp not a number", sign({**good, "exp": "tomorrow"})),
        ("identity assurance 2", sign({**good, "id_assurance_level": "2"})),
        ("no identity assurance", sign(without("id_assurance_level"))),
        ("authentication assurance 1", sign({**good, "authentication_assurance_level": "1"})),
        ("another issuer", sign({**good, "iss": "https://cis2.example.invalid/realm"})),
        ("no selected role", sign(without("selected_roleid", "nhsid_nrbac_roles"))),
        ("selected role not the user's", sign({**good, "nhsid_nrbac_roles": [other_role]})),
        ("role elsewhere", sign(cis2.nurse(audience=ED_AUD, org_code="XOTHER"))),
        ("an unpublished key", sign(good, header={"kid": "not-published"})),
        ("alg none", _unsigned(good)),
        ("not a JWT", "not-a-jwt"),
        ("tampered", _tampered(sign(good))),
    ]


def _unsigned(claims: dict[str, Any]) -> str:
    import base64
    import json

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims)}."


def _tampered(token: str) -> str:
    head, body, sig = token.split(".")
    return f"{head}.{body[:-4]}AAAA.{sig}"


async def test_id_tokens_that_must_not_be_trusted_are_invalid_grant(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """Expired, for another client, from another issuer, badly signed, of too low an assurance
    level, without a selected role, or for a role at an organisation the client does not act
    for: 400 invalid_grant, no token, and the message never quotes the token."""
    for why, id_token in _refusals(cis2):
        reply = await e2e.exchange_request(e2e.assertion(ED_CLIENT), id_token)
        assert reply.status == 400, (why, reply.text)
        body = reply.json()
        assert body["error"] == "invalid_grant", (why, body)
        assert "access_token" not in body
        assert id_token[:20] not in body["error_description"]
        assert "555000000777" not in reply.text


async def test_clients_that_may_not_exchange_are_unauthorized_client(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """A health client with no registered CIS2 client id, and an LA client, cannot exchange ID
    tokens (400 unauthorized_client); a bad client assertion is still 401 invalid_client."""
    id_token = cis2.id_token(cis2.nurse(audience=ED_AUD))
    for client in (SILENT_CLIENT, LA_NORTH_CLIENT):
        reply = await e2e.exchange_request(e2e.assertion(client), id_token)
        assert reply.status == 400, client
        assert reply.json()["error"] == "unauthorized_client"
    too_long = e2e.assertion(ED_CLIENT, lifetime=timedelta(minutes=9))
    reply = await e2e.exchange_request(too_long, id_token)
    assert reply.status == 401
    assert reply.json()["error"] == "invalid_client"


async def test_malformed_exchange_requests_are_invalid_request(e2e: E2E, cis2: LocalCis2) -> None:
    """RFC 8693's parameters are checked: an ID token must be said to be one, an access token
    is the only kind issued, and delegation (actor_token) is not offered."""
    id_token = cis2.id_token(cis2.nurse(audience=ED_AUD))
    base = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "subject_token": id_token,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
    }
    for change in (
        {"subject_token_type": "urn:ietf:params:oauth:token-type:access_token"},
        {"subject_token": ""},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"actor_token": id_token, "actor_token_type": "urn:ietf:params:oauth:token-type:id_token"},
    ):
        form = {**base, "client_assertion": e2e.assertion(ED_CLIENT), **change}
        form = {k: v for k, v in form.items() if v != ""}
        reply = await e2e.request("POST", e2e.settings.token_url, data=form)
        assert reply.status == 400, change
        assert reply.json()["error"] == "invalid_request", change


async def test_an_unreachable_identity_provider_is_503_with_retry_after(
    e2e: E2E, cis2: LocalCis2
) -> None:
    """If the issuer's keys cannot be fetched, the exchange is 503 with Retry-After (try
    again), not a refusal of the user; nothing is issued."""
    cis2.down = True
    reply = await e2e.exchange_request(
        e2e.assertion(ED_CLIENT), cis2.id_token(cis2.nurse(audience=ED_AUD))
    )
    assert reply.status == 503
    assert int(reply.headers["Retry-After"]) > 0
    assert error_code(reply.fhir()) == "UNABLE_TO_CALL_SERVICE"


async def test_application_restricted_clients_keep_the_headers(e2e: E2E) -> None:
    """A client_credentials token still needs the NHSD-End-User-* headers on an unscheduled
    lookup (400 PRECONDITION_FAILED without them), and works with them."""
    await seed(e2e)
    token = await e2e.token(ED_CLIENT)
    bare = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers=guide_headers(token),
        params={"patient:identifier": identifier(CHILD)},
    )
    assert bare.status == 400
    assert error_code(bare.fhir()) == "PRECONDITION_FAILED"
    ok = await e2e.search("CareTeam", CHILD)
    assert ok.status == 200
