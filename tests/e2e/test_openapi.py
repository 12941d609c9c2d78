"""``/openapi.json`` and the router: the document describes exactly the routes there are.

Every route the application registers is either health-facing FHIR (described
by the CapabilityStatement, listed in :data:`FHIR_HEALTH_ROUTES`) or an
operation of the document, with the route's name as its ``operationId``; and
every documented operation is a route that a request for it reaches. Checked
with the service at the root and under a base URL path, so a route added
without documentation, or documentation left for a route removed, fails here.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from cpis.web.openapi import load_document
from tests.e2e.conftest import E2E

# The health-facing FHIR API: its routes are described by /FHIR/R4/metadata, not here.
FHIR_HEALTH_ROUTES = frozenset(
    {"metadata", "plan_search", "audit_event_search", "read", "vread", "unknown_type"}
)
METHODS = ("get", "put", "post", "delete", "patch", "options", "head", "trace")
# A value for each path parameter, to send a request for a documented path.
PATH_VALUES = {
    "plan_id": "N-CPP-0001",
    "id": str(uuid.uuid4()),
    "nhs_number": "9990000018",
    "sequence": "1",
    "delivery_id": "1",
}
# ops.py serves the probes at the root and under the prefix with one route each.
ROOT_OR_PREFIX = "/{root_or_prefix}"


def documented(document: dict[str, Any]) -> dict[tuple[str, str], str]:
    """``(METHOD, path) -> operationId`` for every operation in the document."""
    return {
        (method.upper(), path): operation["operationId"]
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    }


def routed(app: web.Application, prefix: str) -> dict[tuple[str, str], str]:
    """``(METHOD, path under the prefix) -> route name`` for every route but FHIR's own
    and the web pages' (``page_*``: HTML for people, not an API).

    HEAD is left out: aiohttp adds it to every GET route by itself.
    """
    found: dict[tuple[str, str], str] = {}
    for route in app.router.routes():
        if route.method == "HEAD" or route.name in FHIR_HEALTH_ROUTES:
            continue
        if route.name is not None and route.name.startswith("page_"):
            continue
        assert route.resource is not None and route.name is not None, route
        canonical = route.resource.canonical
        if canonical.startswith(ROOT_OR_PREFIX):
            path = "/" + canonical.removeprefix(ROOT_OR_PREFIX)
        else:
            assert canonical.startswith(prefix + "/"), f"{canonical} is outside {prefix!r}"
            path = canonical.removeprefix(prefix)
        found[(route.method, path)] = route.name
    return found


async def reached(app: web.Application, method: str, path: str) -> str | None:
    """The name of the route a request for ``path`` (parameters filled in) reaches."""
    concrete = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)
    match = await app.router.resolve(make_mocked_request(method, concrete, app=app))
    return match.route.name if match.http_exception is None else None


@pytest.mark.parametrize("e2e_base_path", ["", "/cpis"])
async def test_every_route_is_documented_and_every_documented_operation_is_a_route(
    e2e: E2E, e2e_base_path: str
) -> None:
    """Router and document agree both ways on method, path template under the base URL's
    path, and name (operationId); and a request for each documented operation, at its
    path under the prefix, reaches that route (not one registered before it)."""
    assert e2e.app is not None
    prefix = e2e.settings.path_prefix
    assert prefix == e2e_base_path
    document = load_document(e2e.base)
    in_document = documented(document)
    in_router = routed(e2e.app, prefix)

    undocumented = sorted(set(in_router) - set(in_document))
    assert not undocumented, f"routes missing from cpis/web/openapi.json: {undocumented}"
    unrouted = sorted(set(in_document) - set(in_router))
    assert not unrouted, f"documented operations with no route: {unrouted}"
    assert in_document == in_router, "operationIds must be the route names"
    for (method, path), name in in_document.items():
        assert await reached(e2e.app, method, prefix + path) == name, (method, path)


async def test_the_document_is_served_without_a_token_naming_the_public_base_url(
    e2e: E2E,
) -> None:
    """GET {base}/openapi.json needs no token, is JSON, is a valid OpenAPI 3.1 document,
    and names this deployment's public base URL as its server and in its examples."""
    reply = await e2e.request("GET", "/openapi.json")
    assert reply.status == 200, reply.text
    assert reply.headers["Content-Type"].startswith("application/json")
    document = reply.json()
    assert document == load_document(e2e.base)
    assert document["openapi"].startswith("3.1.")
    assert document["servers"] == [{"url": e2e.base, "description": "This deployment"}]
    assert "{CPIS_PUBLIC_BASE_URL}" not in reply.text
    example = document["components"]["requestBodies"]["Subscription"]["content"][
        "application/fhir+json"
    ]["example"]
    assert example["criteria"] == f"{e2e.fhir_base}/SubscriptionTopic/cpis-attendance"
    schemathesis.openapi.from_dict(document).validate()
