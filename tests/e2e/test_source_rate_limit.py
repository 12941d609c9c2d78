"""Requests are limited per source address before authentication, and refused requests do
not fill the audit log (SPEC §6; cpis/web/auth.py SourceLimiter, cpis/web/refusals.py).

Every test client here connects from 127.0.0.1. X-Forwarded-For is believed only
when 127.0.0.0/8 is named a trusted proxy; then its addresses stand for clients
behind that proxy.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from cpis.matching.nhs_number import synthetic_numbers
from cpis.settings import Settings
from cpis.web.middleware import REFUSALS
from tests.e2e.conftest import E2E, ED_CLIENT, error_code, identifier, user_headers

(CHILD,) = synthetic_numbers(1, start=971)
DEFAULTS = Settings()
BURST = 20


@pytest.fixture
def e2e_overrides() -> dict[str, Any]:
    # Refilling slowly enough that no test here sees a token come back.
    return {"source_rate_limit_per_second": 1, "source_rate_limit_burst": BURST}


def bad_token_lookup(forwarded_for: str | None = None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer not-a-token-{uuid.uuid4()}", **user_headers()}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return headers


async def lookup(e2e: E2E, headers: dict[str, str]) -> int:
    reply = await e2e.request(
        "GET",
        "/FHIR/R4/CareTeam",
        headers=headers,
        params=[("patient:identifier", identifier(CHILD))],
    )
    return reply.status


async def audit_rows(e2e: E2E) -> list[dict[str, Any]]:
    """The audit log, after the refusals of the current window are written."""
    assert e2e.app is not None
    await e2e.app[REFUSALS].flush(e2e.runtime.db, e2e.runtime.clock)
    rows = await e2e.fetch(
        "SELECT action, outcome, client_id, trace_id, detail FROM audit_log ORDER BY seq"
    )
    return [{**r, "detail": json.loads(r["detail"])} for r in rows]


async def test_bad_tokens_from_one_address_are_refused_429_before_authentication(
    e2e: E2E,
) -> None:
    """An address sending bad tokens gets 401 up to its burst, then 429
    UNABLE_TO_CALL_SERVICE (throttled, with Retry-After) before any token is looked at;
    the operational probes are still answered."""
    statuses = [await lookup(e2e, bad_token_lookup()) for _ in range(BURST + 30)]
    assert statuses == [401] * BURST + [429] * 30
    refused = e2e.replies[-1]
    outcome = refused.fhir()
    assert error_code(outcome) == "UNABLE_TO_CALL_SERVICE"
    assert outcome["issue"][0]["code"] == "throttled"
    assert int(refused.headers["Retry-After"]) >= 1
    assert (await e2e.request("GET", "/healthz")).status == 200
    assert (await e2e.request("GET", "/readyz")).status == 200


async def test_refused_requests_are_audited_a_few_one_by_one_and_the_rest_summarised(
    e2e: E2E,
) -> None:
    """Of a flood of unauthenticated requests from one address, the first ten are audited
    one by one, with their TraceIDs; the rest, and every 429, are counted into one
    ``refused_requests`` line per outcome for that address, naming the routes."""
    for _ in range(BURST):
        await lookup(e2e, bad_token_lookup())
    for _ in range(15):
        await e2e.request("GET", "/no/such/route")  # refused for its rate: 429 too
    rows = await audit_rows(e2e)
    one_by_one = [r for r in rows if r["action"] != "refused_requests"]
    assert [(r["action"], r["outcome"]) for r in one_by_one] == [("plan_search", 401)] * 10
    assert all(r["trace_id"] for r in one_by_one)
    summaries = {r["outcome"]: r for r in rows if r["action"] == "refused_requests"}
    assert set(summaries) == {401, 429}
    assert summaries[401]["detail"]["requests"] == BURST - 10
    assert summaries[401]["detail"]["actions"] == {"plan_search": BURST - 10}
    assert summaries[429]["detail"]["requests"] == 15
    assert summaries[429]["detail"]["actions"] == {"unmatched": 15}
    for summary in summaries.values():
        assert summary["detail"]["source"] == "127.0.0.1"
        assert summary["client_id"] is None
    assert await audit_rows(e2e) == rows  # nothing more to write until new refusals


async def test_x_forwarded_for_is_not_believed_unless_the_proxy_is_trusted(e2e: E2E) -> None:
    """With no trusted proxy, X-Forwarded-For changes nothing: requests naming other
    addresses in it share the connection's budget."""
    statuses = [
        await lookup(e2e, bad_token_lookup(forwarded_for=f"203.0.113.{i}"))
        for i in range(BURST + 1)
    ]
    assert statuses == [401] * BURST + [429]


@pytest.mark.parametrize(
    "e2e_overrides",
    [
        {
            "source_rate_limit_per_second": 1,
            "source_rate_limit_burst": BURST,
            "trusted_proxies": ("127.0.0.0/8",),
        }
    ],
)
async def test_behind_a_trusted_proxy_each_client_address_has_its_own_budget(
    e2e: E2E,
) -> None:
    """When 127.0.0.0/8 is a trusted proxy, the client is the nearest address in
    X-Forwarded-For that is not one: another client behind it is not limited by the
    first, and addresses the client writes in front of its own change nothing."""
    flooder = "203.0.113.7"
    statuses = [
        await lookup(e2e, bad_token_lookup(forwarded_for=f"198.51.100.{i}, {flooder}"))
        for i in range(BURST + 1)
    ]
    assert statuses == [401] * BURST + [429]
    assert await lookup(e2e, bad_token_lookup(forwarded_for=f"10.1.1.1, {flooder}")) == 429
    assert await lookup(e2e, bad_token_lookup(forwarded_for=f"{flooder}, 127.0.0.2")) == 429
    assert await lookup(e2e, bad_token_lookup(forwarded_for="203.0.113.8")) == 401
    sources = {r["detail"]["source"] for r in await audit_rows(e2e) if r["detail"].get("source")}
    assert sources == {flooder}


@pytest.mark.parametrize("e2e_overrides", [{"rate_limit_per_second": 1, "rate_limit_burst": 2}])
async def test_a_client_over_its_own_rate_is_summarised_not_audited_one_by_one(
    e2e: E2E,
) -> None:
    """429s for an authenticated client's own rate are never written one by one either:
    they are counted into a summary line carrying the client id."""
    auth = {**await e2e.auth(ED_CLIENT), **user_headers()}
    statuses = [await lookup(e2e, auth) for _ in range(5)]
    assert statuses[:2] == [200, 200] and statuses[2:] == [429] * 3
    rows = await audit_rows(e2e)
    assert [r["outcome"] for r in rows if r["action"] == "plan_search"] == [200, 200]
    (summary,) = [r for r in rows if r["action"] == "refused_requests"]
    assert (summary["outcome"], summary["client_id"]) == (429, ED_CLIENT)
    assert summary["detail"]["requests"] == 3


@pytest.mark.parametrize(
    "e2e_overrides",
    [
        {
            "source_rate_limit_per_second": DEFAULTS.source_rate_limit_per_second,
            "source_rate_limit_burst": DEFAULTS.source_rate_limit_burst,
        }
    ],
)
async def test_a_thousand_bad_tokens_with_the_default_limits(e2e: E2E) -> None:
    """The probe's run: 1,000 bad-token lookups from one address as fast as one client
    can send them. With the default limits most are refused 429, and the audit log
    grows by a dozen rows, not a thousand."""
    started = time.monotonic()
    statuses = [await lookup(e2e, bad_token_lookup()) for _ in range(1000)]
    refilled = (time.monotonic() - started) * DEFAULTS.source_rate_limit_per_second
    assert 429 in statuses
    assert statuses.count(401) <= DEFAULTS.source_rate_limit_burst + refilled + 1
    rows = await audit_rows(e2e)
    assert len(rows) == 10 + 2
    assert sum(r["detail"].get("requests", 1) for r in rows) == 1000
