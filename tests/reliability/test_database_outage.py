"""PostgreSQL stopped under load: lookups answer 503 quickly, then 200 once it is back."""

from __future__ import annotations

import asyncio
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
    free_port,
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
    """While PostgreSQL is down every lookup answers 503 with an OperationOutcome and a
    Retry-After within a few seconds; once it is back the same process answers 200."""
    where, handles = own_postgres
    env = base_env(handles[0].dsn, tmp_path / "data", free_port())
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

        await asyncio.to_thread(handles[0].stop)
        down = await asyncio.gather(
            *(_lookup(http, server.base, ed_token, child, n) for n in range(10, 30))
        )
        for status, headers, body, took in down:
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
