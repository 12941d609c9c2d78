"""Operational endpoints: liveness, readiness, metrics and the public signing keys."""

from __future__ import annotations

from aiohttp import web

from cpis.web.render import json_response
from cpis.web.state import SERVICES


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    db = request.app[SERVICES].db
    if not await db.ping():
        return json_response(
            {"status": "unavailable", "database": "unreachable"},
            status=503,
            headers={"Retry-After": "5"},
        )
    if not await db.migrations_current():
        return json_response({"status": "unavailable", "migrations": "pending"}, status=503)
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    body = request.app[SERVICES].metrics.render()
    return web.Response(body=body, content_type="text/plain", charset="utf-8")


async def jwks(request: web.Request) -> web.Response:
    return json_response(request.app[SERVICES].tokens.public_jwks())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/healthz", healthz, name="healthz")
    r.add_get("/readyz", readyz, name="readyz")
    r.add_get("/metrics", metrics, name="metrics")
    r.add_get("/.well-known/jwks.json", jwks, name="jwks")
