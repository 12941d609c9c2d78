"""Operational endpoints: liveness, readiness, metrics and the public signing keys.

``/healthz``, ``/readyz`` and ``/metrics`` answer both at the server root, where
orchestrator probes and Prometheus reach a pod directly whatever the public base
URL, and under the base URL's path, where the public URL (and a gateway that
forwards only that path) leads. The JWKS is part of the API: it is served under
the prefix only, at ``{CPIS_PUBLIC_BASE_URL}/.well-known/jwks.json``.

``cpis worker`` serves the three probes alone (:func:`add_probe_routes`), and
tells ``/healthz`` through :data:`LIVENESS` whether its background work still
runs, so a worker whose dispatcher died is restarted rather than left idle.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from aiohttp import web

from cpis.web.render import json_response
from cpis.web.state import SERVICES

# What /healthz asks, when set: False once work the process exists for has stopped.
LIVENESS: web.AppKey[Callable[[], bool]] = web.AppKey("liveness")


async def healthz(request: web.Request) -> web.Response:
    alive = request.app.get(LIVENESS)
    if alive is not None and not alive():
        return json_response({"status": "stopped"}, status=503)
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


def _root_or(prefix: str) -> str:
    """The start of a route path that matches both ``/…`` and ``{prefix}/…``.

    One route for both paths, not two, so that each endpoint keeps its one route
    name: the middleware's audit exemption and the metrics labels go by name.
    ``prefix`` is plain segments (Settings checks it), so it is safe in a pattern.
    """
    if not prefix:
        return "/"
    return "/{root_or_prefix:(?:" + re.escape(prefix.removeprefix("/")) + "/)?}"


def add_probe_routes(app: web.Application, *, prefix: str = "") -> None:
    """``/healthz``, ``/readyz`` and ``/metrics``, at the root and under ``prefix``."""
    r = app.router
    either = _root_or(prefix)
    r.add_get(either + "healthz", healthz, name="healthz")
    r.add_get(either + "readyz", readyz, name="readyz")
    r.add_get(either + "metrics", metrics, name="metrics")


def add_routes(app: web.Application, *, prefix: str) -> None:
    add_probe_routes(app, prefix=prefix)
    app.router.add_get(prefix + "/.well-known/jwks.json", jwks, name="jwks")
