"""PostgreSQL stopped under load: lookups answer 503 quickly, then 200 once it is back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from cpis.adapters.embedded import EmbeddedPostgres
from cpis.matching.nhs_number import synthetic_numbers
from tests.reliability.conftest import (
    ED_ODS,
    NHS_SYSTEM,
    Server,
    base_env,
    put_plans,
    register,
    tokens,
    wait_until,
)


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[tuple[Path, list[EmbeddedPostgres]]]:
    """A PostgreSQL of this test's own, which it may stop and start again."""
    where = tmp_path / "pg"
    handles = [await asyncio.to_thread(EmbeddedPostgres, where, cleanup="stop")]
    try:
        yield where, handles
    finally:
        await asyncio.to_thread(handles[-1].stop)


async def _lookup(
    http: aiohttp.ClientSession, base: str, token: str, nhs: str, n: int
) -> tuple[int, dict[str, str], dict[str, object], float]:
    started = time.monotonic()
    async with http.get(
        f"{base}/FHIR/R4/CareTeam",
        params=[("patient:identifier", f"{NHS_SYSTEM}|{nhs}")],
        headers={
            "Authorization": f"Bearer {token}",
            "TraceID": str(uuid.uuid4()),
            "NHSD-End-User-Organisation-ODS": ED_ODS,
            "NHSD-End-User-Id": f"5550001{n:05d}",
            "NHSD-End-User-Name": "Nurse",
            "NHSD-End-User-Role": "Staff Nurse",
        },
        timeout=aiohttp.ClientTimeout(total=30),
    ) as resp:
        body = await resp.json(content_type=None)
        return resp.status, dict(resp.headers), body, time.monotonic() - started


async def test_database_stopped_under_load_answers_503_and_recovers(
    tmp_path: Path, own_postgres: tuple[Path, list[EmbeddedPostgres]], servers: list[Server]
) -> None:
    """Lookups keep coming while PostgreSQL stops: those in flight as it goes and the
    first ones after answer 200 or 503, never 500 (the pool's connections die under
    them); once it is down every lookup answers 503 with an OperationOutcome and a
    Retry-After within a few seconds; once it is back the same process answers 200.
    The service logs no unhandled error and no 500."""
    where, handles = own_postgres
    env = base_env(handles[0].dsn, tmp_path / "data")
    env["CPIS_DB_STATEMENT_TIMEOUT_MS"] = "2000"
    world = await register(env)
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, la_token = await tokens(env, world)
    [child] = synthetic_numbers(1, start=950)
    async with aiohttp.ClientSession() as http:
        await put_plans(http, server.base, la_token, [child])
        ok = await asyncio.gather(
            *(_lookup(http, server.base, ed_token, child, n) for n in range(10))
        )
        assert [r[0] for r in ok] == [200] * 10

        stopped = asyncio.Event()
        during: list[tuple[int, dict[str, str], dict[str, object], float]] = []

        async def keep_looking(first: int) -> None:
            n = first
            while not stopped.is_set():
                during.append(await _lookup(http, server.base, ed_token, child, n))
                n += 1

        lookers = [asyncio.create_task(keep_looking(1000 * (k + 1))) for k in range(12)]
        await asyncio.to_thread(handles[0].stop)
        stopped.set()
        first_after = await asyncio.gather(
            *(_lookup(http, server.base, ed_token, child, n) for n in range(10, 30))
        )
        await asyncio.gather(*lookers)
        assert during, "no lookup was in flight while PostgreSQL stopped"
        for status, headers, body, took in during:
            assert status in (200, 503), (status, body)
            assert took < 10, took
            if status == 503:
                assert body["resourceType"] == "OperationOutcome"
                assert int(headers["Retry-After"]) > 0
        for status, headers, body, took in first_after:
            assert status == 503, (status, body)
            assert body["resourceType"] == "OperationOutcome"
            assert int(headers["Retry-After"]) > 0
            assert took < 10, took

        handles.append(await asyncio.to_thread(EmbeddedPostgres, where, cleanup="stop"))
        assert handles[-1].dsn == handles[0].dsn
        counter = iter(range(100, 10_000))

        async def answers() -> bool:
            status, _h, _b, _t = await _lookup(http, server.base, ed_token, child, next(counter))
            return status == 200

        await wait_until(answers, limit=30, what="lookups to answer 200 again")
        again = await asyncio.gather(
            *(_lookup(http, server.base, ed_token, child, next(counter)) for _ in range(10))
        )
        assert [r[0] for r in again] == [200] * 10
    assert server.proc is not None and server.proc.returncode is None
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    assert not [e for e in lines if e.get("event") == "unhandled_error"]
    assert not [e for e in lines if e.get("event") == "request" and e.get("status") == 500]
