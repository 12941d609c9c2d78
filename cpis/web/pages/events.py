"""Server-sent events for pages that update while open (issue 12: new attendances
appearing in an open inbox). A page works without them; a small script of the
page's own opens an ``EventSource`` on a route that returns :func:`event_stream`.

The CSP's ``connect-src 'self'`` allows it; the session cookie goes with it
(same origin), so the route is wrapped by :func:`~cpis.web.pages._site.page` like
any page and its view is audited once, when the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

# A comment line this often keeps proxies from closing a quiet stream, and tells the
# server soon when the browser has gone.
HEARTBEAT_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class Event:
    """One event: its name (the ``addEventListener`` type) and its data (text, often
    HTML or JSON the page's script inserts; never more than the page would show)."""

    name: str
    data: str
    id: str | None = None


def _frame(event: Event) -> bytes:
    lines = [f"event: {event.name}"]
    if event.id is not None:
        lines.append(f"id: {event.id}")
    # A newline in the data would end the field: each line is a data line of its own.
    lines += [f"data: {line}" for line in event.data.split("\n")]
    return ("\n".join(lines) + "\n\n").encode()


async def event_stream(
    request: web.Request,
    events: AsyncIterator[Event],
    *,
    heartbeat: float = HEARTBEAT_SECONDS,
) -> web.StreamResponse:
    """Send ``events`` to the browser as they come, until they end or it goes away."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",  # nginx: pass each event on at once
        }
    )
    await response.prepare(request)
    iterator = aiter(events)
    pending: asyncio.Task[Event] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(iterator))
            done, _ = await asyncio.wait({pending}, timeout=heartbeat)
            if not done:
                await response.write(b": keep-alive\n\n")
                continue
            try:
                event = pending.result()
            except StopAsyncIteration:
                break
            pending = None
            await response.write(_frame(event))
    except (ConnectionResetError, asyncio.CancelledError):
        pass  # the browser went away: nothing more to send
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
    return response
