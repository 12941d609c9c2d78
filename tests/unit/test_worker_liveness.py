"""`cpis worker`'s /healthz follows its background work (cpis.web.ops.LIVENESS): 200
while the dispatcher runs, 503 once it has stopped, so the kubelet restarts the pod
rather than leaving a worker that answers probes and delivers nothing."""

from __future__ import annotations

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from cpis.web.ops import LIVENESS, healthz


def _app(alive: bool | None) -> web.Application:
    app = web.Application()
    app.router.add_get("/healthz", healthz)
    if alive is not None:
        app[LIVENESS] = lambda: alive
    return app


async def _status(app: web.Application) -> int:
    async with (
        TestServer(app) as server,
        aiohttp.ClientSession() as http,
        http.get(server.make_url("/healthz")) as resp,
    ):
        return resp.status


async def test_healthz_answers_503_once_the_work_has_stopped() -> None:
    assert await _status(_app(alive=True)) == 200
    assert await _status(_app(alive=False)) == 503


async def test_healthz_without_a_liveness_check_is_always_ok() -> None:
    """serve has no LIVENESS: its /healthz is 200 whenever it answers at all."""
    assert await _status(_app(alive=None)) == 200
