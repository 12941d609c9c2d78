"""Two `cpis serve` replicas on one database never deliver one notification twice at once."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import aiohttp

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

LOOKUPS = 120
EXTRA = 5


async def test_two_replicas_never_deliver_one_notification_twice_at_once(
    database_url: str,
    tmp_path: Path,
    receiver: Receiver,
    servers: list[Server],
    shared_keys: dict[str, str],
) -> None:
    """With lookups spread over two replicas (each running its dispatcher) and a healthy
    endpoint, every notification arrives exactly once: no overlap, no redelivery."""
    envs = [base_env(database_url, tmp_path / f"data-{n}") | shared_keys for n in range(2)]
    world = await register(envs[0])
    replicas = [Server(env) for env in envs]
    servers.extend(replicas)
    await asyncio.gather(*(r.start() for r in replicas))
    ed_tokens = [(await tokens(env, world))[0] for env in envs]
    _ed, la_token = await tokens(envs[0], world)
    children = synthetic_numbers(4, start=900)
    receiver.hold = 0.02  # an endpoint that takes a moment: widens any overlap window
    async with aiohttp.ClientSession() as http:
        await put_plans(http, replicas[0].base, la_token, children)
        await subscribe(database_url, receiver.url)
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> int:
            async with gate:
                return await lookup(
                    http, replicas[i % 2].base, ed_tokens[i % 2], children[i % len(children)],
                    trace_id=str(uuid.uuid4()), user=f"5550000{i:05d}",
                )  # fmt: skip

        statuses = await asyncio.gather(*(one(i) for i in range(LOOKUPS)))
        assert statuses == [200] * LOOKUPS
        await wait_until(
            lambda: delivered_everything(database_url, receiver), limit=40, what="every delivery"
        )

        # Replica 0 may well have won every claim (one target is delivered one row at a
        # time); stop it and check replica 1's dispatcher was live all along.
        await replicas[0].kill(signal.SIGTERM)
        for i in range(LOOKUPS, LOOKUPS + EXTRA):
            status = await lookup(
                http, replicas[1].base, ed_tokens[1], children[0],
                trace_id=str(uuid.uuid4()), user=f"5550000{i:05d}",
            )  # fmt: skip
            assert status == 200
        await wait_until(
            lambda: delivered_everything(database_url, receiver), limit=40, what="replica 1"
        )

    total = LOOKUPS + EXTRA
    assert receiver.overlaps == []
    ids = [a.id for a in receiver.events]
    assert len(set(ids)) == total
    assert len(ids) == total, "a notification was delivered more than once"
    numbers = [a.event_number for a in receiver.events]
    assert sorted(numbers) == list(range(1, total + 1))
    assert '"delivery_succeeded"' in replicas[1].log()
