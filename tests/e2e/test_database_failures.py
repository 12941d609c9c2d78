"""Every database failure is a 503 OperationOutcome with Retry-After, never a 500 (SPEC §4).

The database is made to fail for real, under the running service: its
connections are terminated as a shutdown or a failover does (the pool still
holds them, so the first requests afterwards meet dead connections), and the
database then turns read-only, as a standby answering after a failover is.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cpis.matching.nhs_number import synthetic_numbers
from tests.e2e.conftest import E2E, ED_CLIENT, LA_NORTH_CLIENT, error_code, identifier, user_headers

(CHILD,) = synthetic_numbers(1, start=981)


async def terminate_service_connections(e2e: E2E) -> int:
    """End every other session on the test's database (the service's pool), as
    ``pg_ctl stop -m fast`` ends each session."""
    return int(
        await e2e.db.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )


async def lookups(e2e: E2E, n: int) -> list[tuple[int, dict[str, Any], dict[str, str]]]:
    auth = await e2e.auth(ED_CLIENT)

    async def one() -> tuple[int, dict[str, Any], dict[str, str]]:
        reply = await e2e.request(
            "GET",
            "/FHIR/R4/CareTeam",
            headers={**auth, **user_headers()},
            params=[("patient:identifier", identifier(CHILD))],
        )
        return reply.status, reply.json(), dict(reply.headers)

    return await asyncio.gather(*(one() for _ in range(n)))


def assert_503s_are_outcomes(answers: list[tuple[int, dict[str, Any], dict[str, str]]]) -> None:
    for status, body, headers in answers:
        if status == 503:
            assert body["resourceType"] == "OperationOutcome"
            assert error_code(body) == "UNABLE_TO_CALL_SERVICE"
            assert int(headers["Retry-After"]) > 0


async def test_requests_meeting_terminated_connections_are_503_never_500(e2e: E2E) -> None:
    """The first lookups after every pooled connection was terminated (each meets a dead
    connection, mid-transaction or at its first statement) answer 200 or 503, never
    500; the pool then reconnects and lookups answer 200."""
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-1", nhs_number=CHILD, plan_type="CPP", start_date="2025-03-03"
    )
    await e2e.token(ED_CLIENT)
    for _ in range(3):
        assert {s for s, _, _ in await lookups(e2e, 8)} == {200}  # the pool is filled
        assert await terminate_service_connections(e2e) > 0
        first = await lookups(e2e, 8)
        assert {s for s, _, _ in first} <= {200, 503}, [s for s, _, _ in first]
        assert_503s_are_outcomes(first)
    assert {s for s, _, _ in await lookups(e2e, 8)} <= {200, 503}
    assert {s for s, _, _ in await lookups(e2e, 4)} == {200}


async def test_a_read_only_database_is_503_for_writes(e2e: E2E) -> None:
    """After a failover to a standby that is not yet promoted, every write fails with
    SQLSTATE 25006: lookups (they record an access event) and plan updates are 503
    with Retry-After; once the database takes writes again they succeed."""
    await e2e.put_plan(
        LA_NORTH_CLIENT, "N-1", nhs_number=CHILD, plan_type="CPP", start_date="2025-03-03"
    )
    await e2e.token(ED_CLIENT)
    name = await e2e.db.fetchval("SELECT current_database()")
    await e2e.db.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    try:
        await terminate_service_connections(e2e)
        answers = await lookups(e2e, 4)
        assert [s for s, _, _ in answers] == [503] * 4
        assert_503s_are_outcomes(answers)
        put = await e2e.put_plan(
            LA_NORTH_CLIENT,
            "N-1",
            expect=503,
            nhs_number=CHILD,
            plan_type="LAC",
            start_date="2025-03-03",
        )
        assert int(put.headers["Retry-After"]) > 0
    finally:
        await e2e.db.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
    await terminate_service_connections(e2e)
    await lookups(e2e, 4)  # the pool meets its dead connections again: 200 or 503
    assert {s for s, _, _ in await lookups(e2e, 4)} == {200}
