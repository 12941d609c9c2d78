"""The service behind a public base URL with a path, as NHS England serves CP-IS
(``https://int.api.service.nhs.uk/cpis/FHIR/R4``), with no proxy rewriting paths.

Here ``CPIS_PUBLIC_BASE_URL`` is ``http://127.0.0.1:{port}/cpis``: every API route
answers under ``/cpis``, every link the service renders leads back to it, and the
same paths without the prefix are 404 OperationOutcomes.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import (
    ASSERTION_TYPE,
    E2E,
    ED_CLIENT,
    LA_NORTH_CLIENT,
    error_code,
    identifier,
    user_headers,
)

(CHILD,) = synthetic_numbers(1, start=870)
PREFIX = "/cpis"
PROBES = ("healthz", "readyz", "metrics")


@pytest.fixture
def e2e_base_path() -> str:
    return PREFIX


def jwt_part(token: str, index: int) -> dict[str, Any]:
    """A JWT's header (0) or claims (1), unverified: what the test sent or was given."""
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def test_a_lookup_through_the_prefixed_base_url_and_every_link_it_renders(
    e2e: E2E,
) -> None:
    """With a base URL carrying a path: a token from the prefixed token URL for an
    assertion whose ``aud`` is that URL; CareTeam and AuditEvent searches under the
    prefixed FHIR base; each bundle's ``self`` link and each entry's ``fullUrl`` (and the
    CareTeam's managing Organization) answer when followed; /metadata names the prefixed
    base and token URL; the JWKS under the prefix holds the key that signed the token."""
    fhir = f"{e2e.root}{PREFIX}/FHIR/R4"
    token_url = f"{e2e.root}{PREFIX}/oauth2/token"
    assert e2e.settings.fhir_base_url == fhir
    assert e2e.settings.token_url == token_url
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-CPP-870", nhs_number=CHILD, plan_type="CPP", start_date="2025-01-06"
    )

    assertion = e2e.assertion(ED_CLIENT)
    assert jwt_part(assertion, 1)["aud"] == token_url
    reply = await e2e.request(
        "POST",
        token_url,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert reply.status == 200, reply.text
    token = reply.json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    # Following a link reads again, silently: it is the link under test, not another visit.
    follow = {**auth, "TraceID": str(uuid.uuid4()), "IsUnscheduledAccessEvent": "false"}
    query = {"patient:identifier": identifier(CHILD)}

    search = await e2e.request(
        "GET", f"{fhir}/CareTeam", headers={**auth, **user_headers()}, params=query
    )
    assert search.status == 200, search.text
    bundle = search.fhir()
    assert bundle["total"] == 1
    self_link = bundle["link"][0]["url"]
    assert self_link.startswith(f"{fhir}/CareTeam?")
    again = (await e2e.request("GET", self_link, headers=follow)).fhir()
    assert again["link"][0]["url"] == self_link
    assert [e["fullUrl"] for e in again["entry"]] == [e["fullUrl"] for e in bundle["entry"]]
    entry = bundle["entry"][0]
    assert entry["fullUrl"].startswith(f"{fhir}/CareTeam/")
    care_team = (await e2e.request("GET", entry["fullUrl"], headers=auth)).fhir()
    assert care_team == entry["resource"]
    organization_url = care_team["managingOrganization"][0]["reference"]
    assert organization_url == f"{fhir}/Organization/XLA01"
    organization = (await e2e.request("GET", organization_url, headers=auth)).fhir()
    assert organization["resourceType"] == "Organization"

    visits = await e2e.request(
        "GET", f"{fhir}/AuditEvent", headers={**auth, **user_headers()}, params=query
    )
    assert visits.status == 200, visits.text
    history = visits.fhir()
    assert history["total"] == 1
    assert history["link"][0]["url"].startswith(f"{fhir}/AuditEvent?")
    again = (await e2e.request("GET", history["link"][0]["url"], headers=follow)).fhir()
    assert again["total"] == 1
    event_url = history["entry"][0]["fullUrl"]
    assert event_url.startswith(f"{fhir}/AuditEvent/")
    event = (await e2e.request("GET", event_url, headers=auth)).fhir()
    assert event["id"] == history["entry"][0]["resource"]["id"]

    metadata = (await e2e.request("GET", f"{fhir}/metadata")).fhir()
    assert metadata["implementation"]["url"] == fhir
    security = metadata["rest"][0]["security"]["extension"][0]["extension"]
    assert {"url": "token", "valueUri": token_url} in security

    jwks = await e2e.request("GET", f"{e2e.root}{PREFIX}/.well-known/jwks.json")
    assert jwks.status == 200
    assert jwt_part(token, 0)["kid"] in {key["kid"] for key in jwks.json()["keys"]}


async def test_the_la_api_and_subscriptions_answer_under_the_prefix(e2e: E2E) -> None:
    """An LA's plan read and Subscription search go to the prefixed paths too."""
    la = await e2e.auth(LA_NORTH_CLIENT)
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-LAC-870", nhs_number=CHILD, plan_type="LAC", start_date="2025-02-03"
    )
    plan = await e2e.request("GET", f"{e2e.root}{PREFIX}/la/v1/plans/N-LAC-870", headers=la)
    assert plan.status == 200, plan.text
    assert plan.json()["nhs_number"] == CHILD
    subscriptions = await e2e.request(
        "GET", f"{e2e.root}{PREFIX}/FHIR/R4/Subscription", headers={**la, "TraceID": "t-870"}
    )
    assert subscriptions.status == 200, subscriptions.text
    assert subscriptions.fhir()["total"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/FHIR/R4/metadata"),
        ("GET", "/FHIR/R4/CareTeam"),
        ("POST", "/oauth2/token"),
        ("GET", "/la/v1/plans/N-CPP-870"),
        ("GET", "/.well-known/jwks.json"),
    ],
)
async def test_api_paths_without_the_prefix_are_not_found(e2e: E2E, method: str, path: str) -> None:
    """The API is only under the base URL's path: the same path at the server root, even
    with a valid token, is the usual 404 OperationOutcome (RESOURCE_NOT_FOUND)."""
    headers = {**await e2e.auth(ED_CLIENT), **user_headers()}
    params = {"patient:identifier": identifier(CHILD)} if path.endswith("CareTeam") else None
    reply = await e2e.request(method, f"{e2e.root}{path}", headers=headers, params=params)
    assert reply.status == 404, reply.text
    outcome = reply.fhir()
    assert outcome["resourceType"] == "OperationOutcome"
    assert error_code(outcome) == "RESOURCE_NOT_FOUND"


async def test_probes_and_metrics_answer_at_the_root_and_under_the_prefix(e2e: E2E) -> None:
    """/healthz, /readyz and /metrics answer at the server root (where probes and Prometheus
    reach a pod) and under the prefix (where the public URL leads), as one route each:
    counted under one route name, and not written to the security audit log."""
    for probe in PROBES:
        for url in (f"{e2e.root}/{probe}", f"{e2e.root}{PREFIX}/{probe}"):
            assert (await e2e.request("GET", url)).status == 200, url
    for probe in ("healthz", "readyz"):
        assert (await e2e.request("GET", f"{e2e.root}/x{PREFIX}/{probe}")).status == 404
    metrics = (await e2e.request("GET", f"{e2e.root}/metrics")).text
    assert 'cpis_http_requests_total{route="healthz",status="200"} 2.0' in metrics
    audited = await e2e.fetch("SELECT action FROM audit_log WHERE action = ANY($1)", list(PROBES))
    assert audited == []


async def test_every_route_but_the_probes_is_under_the_prefix(e2e: E2E) -> None:
    """No API route is left at the server root: each one the app registers starts with
    the base URL's path, except the probes, which match both, and names stay unique."""
    app = e2e.app
    assert app is not None
    names = [resource.name for resource in app.router.resources()]
    assert len(names) == len(set(names))
    for resource in app.router.resources():
        if resource.name in PROBES:
            assert resource.canonical.endswith(resource.name)
        else:
            assert resource.canonical.startswith(f"{PREFIX}/"), resource.canonical
