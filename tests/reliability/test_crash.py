"""A `cpis serve` killed with SIGKILL mid-burst loses no notification it promised."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from cpis.matching.nhs_number import synthetic_numbers
from tests.reliability.conftest import (
    Receiver,
    Server,
    base_env,
    delivered_everything,
    lookup,
    put_plans,
    register,
    subscribe,
    tokens,
    wait_until,
)

LOOKUPS = 200
CONCURRENCY = 20


async def test_sigkill_mid_burst_loses_nothing(
    database_url: str, tmp_path: Path, receiver: Receiver, servers: list[Server]
) -> None:
    """Every lookup answered 200 before the kill has its access event and exactly one
    notification (after de-duplicating by notification id) once a new process is up;
    what arrives is exactly the outbox, nothing more."""
    env = base_env(database_url, tmp_path / "data")
    world = await register(env)
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, la_token = await tokens(env, world)
    children = synthetic_numbers(5, start=700)
    async with aiohttp.ClientSession() as http:
        await put_plans(http, server.base, la_token, children)
        await subscribe(database_url, receiver.url)

        answered: dict[str, int] = {}
        done = asyncio.Event()
        gate = asyncio.Semaphore(CONCURRENCY)

        async def one(i: int) -> None:
            trace = str(uuid.uuid4())
            async with gate:
                if done.is_set():
                    return
                try:
                    status = await lookup(
                        http, server.base, ed_token, children[i % len(children)],
                        trace_id=trace, user=f"5550000{i:05d}",
                    )  # fmt: skip
                except (TimeoutError, aiohttp.ClientError):
                    return
            answered[trace] = status
            if len(answered) >= LOOKUPS // 2 and not done.is_set():
                done.set()
                await server.kill()

        await asyncio.gather(*(one(i) for i in range(LOOKUPS)))
    assert server.proc is not None and server.proc.returncode is not None
    ok = {t for t, s in answered.items() if s == 200}
    assert len(ok) >= LOOKUPS // 2 - CONCURRENCY, answered

    started = time.monotonic()
    restarted = Server(env)
    servers.append(restarted)
    await restarted.start()
    await wait_until(
        lambda: delivered_everything(database_url, receiver), limit=40, what="every delivery"
    )

    conn = await asyncpg.connect(database_url)
    try:
        traces = {r[0] for r in await conn.fetch("SELECT trace_id FROM access_event")}
        outbox = {str(r[0]) for r in await conn.fetch("SELECT notification_id FROM outbox")}
        by_trace = {
            r["trace_id"]: str(r["notification_id"])
            for r in await conn.fetch(
                "SELECT e.trace_id, o.notification_id FROM outbox o"
                " JOIN access_event e ON e.id = o.access_event_id"
            )
        }
    finally:
        await conn.close()
    assert ok <= traces, ok - traces
    arrivals = [a.id for a in receiver.events]
    unique = {a.id for a in receiver.unique()}
    assert ok <= by_trace.keys(), ok - by_trace.keys()
    assert all(by_trace[t] in unique for t in ok)
    assert unique == outbox
    assert len(outbox) >= len(ok)
    print(
        f"answered 200: {len(ok)}, outbox: {len(outbox)}, posts: {len(arrivals)},"
        f" redelivered: {len(arrivals) - len(unique)},"
        f" recovery: {time.monotonic() - started:.1f}s"
    )
