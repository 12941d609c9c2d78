"""The baseline for ``bench/lookup``: a bare aiohttp + asyncpg endpoint (SPEC §8).

It answers the same URL as the FHIR CareTeam search, and per request does
what the spec's baseline does and no more: in one transaction, one indexed
SELECT and one INSERT, then a small orjson body. It runs with the service's
pool size and event loop (uvloop, as ``cpis serve`` does), so the two
differ only in what the service adds on top.

The driver creates the tables (``SCHEMA``) and seeds them before starting it;
it is configured through the environment: BASELINE_DATABASE_URL,
BASELINE_PORT, BASELINE_HASH_KEY (hex; the subject key is an HMAC of the NHS
number, as the service's is).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal

import asyncpg
import orjson
import uvloop
from aiohttp import web

POOL = web.AppKey("pool", asyncpg.Pool)
HASH_KEY = web.AppKey("hash_key", bytes)
POOL_SIZE = 10  # the service's default CPIS_DB_POOL_MAX
SYSTEM = "https://fhir.nhs.uk/Id/nhs-number|"

SCHEMA = """
CREATE TABLE IF NOT EXISTS plan (
    subject_key bytea PRIMARY KEY,
    payload text NOT NULL
);
CREATE TABLE IF NOT EXISTS event (
    id bigserial PRIMARY KEY,
    subject_key bytea NOT NULL,
    user_id text NOT NULL,
    trace_id text NOT NULL,
    at timestamptz NOT NULL DEFAULT now()
);
"""


def subject_key(key: bytes, nhs_number: str) -> bytes:
    return hmac.new(key, nhs_number.encode(), hashlib.sha256).digest()


async def lookup(request: web.Request) -> web.Response:
    identifier = request.query.get("patient:identifier", "")
    if not identifier.startswith(SYSTEM):
        return web.Response(status=400, body=b'{"error":"patient:identifier"}')
    key = subject_key(request.app[HASH_KEY], identifier.removeprefix(SYSTEM))
    async with request.app[POOL].acquire() as conn, conn.transaction():
        payload = await conn.fetchval("SELECT payload FROM plan WHERE subject_key = $1", key)
        await conn.execute(
            "INSERT INTO event (subject_key, user_id, trace_id) VALUES ($1, $2, $3)",
            key,
            request.headers.get("NHSD-End-User-Id", ""),
            request.headers.get("TraceID", ""),
        )
    body = {"resourceType": "Bundle", "type": "searchset", "total": int(payload is not None)}
    if payload is not None:
        body["entry"] = [{"resource": payload}]
    return web.Response(body=orjson.dumps(body), content_type="application/fhir+json")


async def ready(request: web.Request) -> web.Response:
    return web.Response(body=b'{"status":"ready"}', content_type="application/json")


async def main() -> int:
    dsn = os.environ["BASELINE_DATABASE_URL"]
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=POOL_SIZE)
    assert pool is not None
    app = web.Application()
    app[POOL] = pool
    app[HASH_KEY] = bytes.fromhex(os.environ["BASELINE_HASH_KEY"])
    app.router.add_get("/FHIR/R4/CareTeam", lookup)
    app.router.add_get("/readyz", ready)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(os.environ["BASELINE_PORT"])).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()
    await pool.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(uvloop.run(main()))
