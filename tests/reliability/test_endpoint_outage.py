"""An LA endpoint that refuses connections, then fails, then recovers gets everything, in order."""

from __future__ import annotations

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

NOTIFICATIONS = 12


async def _attempts(database_url: str) -> int:
    conn = await asyncpg.connect(database_url)
    try:
        return int(await conn.fetchval("SELECT coalesce(sum(attempts), 0) FROM delivery"))
    finally:
        await conn.close()


async def test_endpoint_down_then_back_everything_arrives_in_order(
    database_url: str, tmp_path: Path, receiver: Receiver, servers: list[Server]
) -> None:
    """Notifications queued while the endpoint refuses connections and then answers 500
    all arrive once it answers 200 again, none dead, and their event numbers rise
    strictly in arrival order (after de-duplicating by notification id)."""
    env = base_env(database_url, tmp_path / "data")
    env["CPIS_DELIVERY_HORIZON_HOURS"] = "1000"
    world = await register(env)
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, la_token = await tokens(env, world)
    children = synthetic_numbers(3, start=800)
    async with aiohttp.ClientSession() as http:
        await put_plans(http, server.base, la_token, children)
        await subscribe(database_url, receiver.url)

        await receiver.stop()  # connections refused
        for i in range(NOTIFICATIONS // 2):
            status = await lookup(
                http, server.base, ed_token, children[i % 3],
                trace_id=str(uuid.uuid4()), user=f"55500000{i:04d}",
            )  # fmt: skip
            assert status == 200
        await wait_until(lambda: _has_attempts(database_url, 1), limit=20, what="a refused attempt")

        receiver.mode = "error"  # back up, but answering 500
        await receiver.start()
        for i in range(NOTIFICATIONS // 2, NOTIFICATIONS):
            status = await lookup(
                http, server.base, ed_token, children[i % 3],
                trace_id=str(uuid.uuid4()), user=f"55500000{i:04d}",
            )  # fmt: skip
            assert status == 200

        async def answered_500() -> bool:
            return receiver.posts > 0

        await wait_until(answered_500, limit=20, what="an attempt answered 500")
        receiver.mode = "ok"
        await wait_until(
            lambda: delivered_everything(database_url, receiver), limit=45, what="every delivery"
        )

    unique = receiver.unique()
    assert len(unique) == NOTIFICATIONS
    numbers = [a.event_number for a in unique]
    assert numbers == sorted(set(numbers)), numbers
    conn = await asyncpg.connect(database_url)
    try:
        dead = await conn.fetchval("SELECT count(*) FROM delivery WHERE state = 'dead'")
        retried = await conn.fetchval("SELECT max(attempts) FROM delivery")
    finally:
        await conn.close()
    assert dead == 0
    assert retried >= 2  # the head of the queue really was refused and then answered 500


async def _has_attempts(database_url: str, n: int) -> bool:
    return await _attempts(database_url) >= n
