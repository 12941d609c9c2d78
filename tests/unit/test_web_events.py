"""The pages' server-sent events helper: each event framed as the EventSource format
says (a data line per line of data), heartbeats while quiet, the stream ended when
the events are."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from cpis.web.pages.events import Event, event_stream
from tests.ports import listening_socket, port_of


async def test_events_are_framed_with_heartbeats_between_them() -> None:
    heard = asyncio.Event()  # the client has read a heartbeat

    async def events() -> AsyncIterator[Event]:
        yield Event("attendance", "one line", id="1")
        await asyncio.wait_for(heard.wait(), 10)
        yield Event("attendance", "two\nlines")

    async def handler(request: web.Request) -> web.StreamResponse:
        return await event_stream(request, events(), heartbeat=0.1)

    app = web.Application()
    app.router.add_get("/events", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = listening_socket()
    try:
        await web.SockSite(runner, sock).start()
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port_of(sock)}/events") as resp,
        ):
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            assert resp.headers["Cache-Control"] == "no-store"
            lines = []
            async for line in resp.content:
                lines.append(line.decode())
                if line == b": keep-alive\n":
                    heard.set()
            body = "".join(lines)
    finally:
        await runner.cleanup()
    assert body.startswith("event: attendance\nid: 1\ndata: one line\n\n")
    assert ": keep-alive\n\n" in body
    assert body.endswith("event: attendance\ndata: two\ndata: lines\n\n")
