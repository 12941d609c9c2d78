"""Delivery in its own process: `cpis serve` with CPIS_WORKERS_IN_SERVE=false answers
lookups, `cpis worker` delivers and serves the probes and the queue metrics; and an
operator lists a dead delivery with
`cpis notifications failed` and puts it back with `cpis notifications retry`."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from cpis.matching.nhs_number import synthetic_numbers
from tests.ports import served_port
from tests.reliability.conftest import (
    CPIS,
    Receiver,
    Server,
    base_env,
    cpis,
    lookup,
    put_plans,
    register,
    subscribe,
    tokens,
    wait_until,
)


async def test_a_separate_worker_delivers_and_operators_can_retry_dead_deliveries(
    database_url: str, tmp_path: Path, receiver: Receiver, servers: list[Server]
) -> None:
    """With workers off in serve nothing is delivered until `cpis worker` runs; a delivery
    that went dead is listed by `cpis notifications failed`, and after `retry` the worker
    delivers it."""
    env = base_env(database_url, tmp_path / "data")
    env["CPIS_WORKERS_IN_SERVE"] = "false"
    env["CPIS_DELIVERY_HORIZON_HOURS"] = "1"
    world = await register(env)
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, la_token = await tokens(env, world)
    [child] = synthetic_numbers(1, start=900)
    conn = await asyncpg.connect(database_url)
    worker = None
    try:
        async with aiohttp.ClientSession() as http:
            await put_plans(http, server.base, la_token, [child])
            sub_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint,"
                " payload, timeout_seconds, created_at, updated_at)"
                " VALUES ($1, 'XLA01', 'la', 'requested', 'topic', $2, 'id-only', 5, now(),"
                " now())",
                sub_id,
                receiver.url,
            )
            status = await lookup(
                http, server.base, ed_token, child, trace_id="t-1", user="555000000001"
            )
            assert status == 200
            # serve does not deliver by itself
            assert await conn.fetchval("SELECT state FROM outbox") == "pending"

            # serve holds CPIS_PORT; the worker's probes listen on a port of their own
            worker = await asyncio.create_subprocess_exec(
                *CPIS, "worker", env=env | {"CPIS_PORT": "0"},
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

            # the first notification was fanned out before the handshake made the
            # subscription active, so it reaches the inbox only; the next one is delivered
            await wait_until(lambda: _active(conn, sub_id), limit=30, what="the worker's handshake")
            assert (
                await lookup(
                    http, server.base, ed_token, child, trace_id="t-2", user="555000000002"
                )
                == 200
            )
            await wait_until(
                lambda: _delivered_count(conn, 1), limit=30, what="the worker's delivery"
            )
            assert len(receiver.unique()) >= 1

            # a delivery that was given up on: listed, retried, delivered
            await conn.execute(
                "UPDATE delivery SET state = 'dead', last_error = 'endpoint answered 500'"
            )
            failed = await cpis(env, "notifications", "failed")
            [line] = failed.strip().splitlines()
            delivery_id = line.split("\t")[0]
            assert "endpoint answered 500" in line
            retried = await cpis(env, "notifications", "retry", delivery_id)
            assert "queued again" in retried
            await wait_until(
                lambda: _delivered_count(conn, 1), limit=30, what="the retried delivery"
            )
    finally:
        if worker is not None and worker.returncode is None:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=30)
        await conn.close()
    assert worker is not None and worker.returncode == 0


async def _active(conn: asyncpg.Connection, sub_id: uuid.UUID) -> bool:
    return bool(
        await conn.fetchval("SELECT status = 'active' FROM subscription WHERE id = $1", sub_id)
    )


async def _delivered_count(conn: asyncpg.Connection, n: int) -> bool:
    return bool(await conn.fetchval("SELECT count(*) FROM delivery WHERE state = 'delivered'") == n)


async def test_the_worker_serves_probes_and_the_queue_metrics(
    database_url: str, tmp_path: Path, receiver: Receiver, servers: list[Server]
) -> None:
    """`cpis worker` answers /healthz and /readyz and serves /metrics on CPIS_PORT, and
    its queue gauges and delivery counters are the ones that move: with the LA's
    endpoint down, the worker's /metrics shows the delivery pending and failed attempts,
    while serve (CPIS_WORKERS_IN_SERVE=false) runs no dispatcher to report them."""
    env = base_env(database_url, tmp_path / "data")
    env["CPIS_WORKERS_IN_SERVE"] = "false"
    world = await register(env)
    server = Server(env)
    servers.append(server)
    await server.start()
    ed_token, la_token = await tokens(env, world)
    [child] = synthetic_numbers(1, start=910)
    worker_env = env | {"CPIS_PORT": "0"}
    out = tmp_path / "worker.out"
    with out.open("wb") as sink:
        worker = await asyncio.create_subprocess_exec(
            *CPIS, "worker", env=worker_env, stdout=sink, stderr=asyncio.subprocess.STDOUT
        )
    try:
        async with aiohttp.ClientSession() as http:

            async def port() -> int | None:
                assert worker.returncode is None, out.read_text()
                return served_port(out.read_text(), "worker_started")

            await wait_until(port, limit=60, what="the worker to listen")
            base = f"http://127.0.0.1:{await port()}"
            for path, status in [("/healthz", "ok"), ("/readyz", "ready")]:
                async with http.get(base + path) as resp:
                    assert resp.status == 200
                    assert (await resp.json())["status"] == status
            async with http.get(base + "/FHIR/R4/metadata") as resp:
                assert resp.status == 404  # the API is serve's alone

            await put_plans(http, server.base, la_token, [child])
            await subscribe(database_url, receiver.url)  # the worker's handshake
            await receiver.stop()
            assert (
                await lookup(
                    http, server.base, ed_token, child, trace_id="t-m", user="555000000003"
                )
                == 200
            )

            async def failing() -> bool:
                async with http.get(base + "/metrics") as resp:
                    text = await resp.text()
                failed = _sample(text, 'cpis_delivery_attempts_total{channel="rest-hook",'
                                 'result="failed"}')  # fmt: skip
                return failed >= 1 and _sample(text, "cpis_deliveries_pending") >= 1

            await wait_until(failing, limit=60, what="the worker's metrics to show the backlog")
            async with http.get(server.base + "/metrics") as resp:
                assert _sample(await resp.text(), "cpis_deliveries_pending") == 0
    finally:
        if worker.returncode is None:
            worker.terminate()
            await asyncio.wait_for(worker.wait(), timeout=30)
    assert worker.returncode == 0, out.read_text()


def _sample(metrics: str, name: str) -> float:
    """The value of one sample in Prometheus's text format (0 when it is absent)."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
