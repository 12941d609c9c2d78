"""The LA's inbox page (issue 12, item 3): new attendances grouped by child, newest
first, the count of the last 28 days beside each child, where, when and who looked;
acknowledged one or many at a time; filtered new/acknowledged/all; a page at a time.

It is :func:`cpis.services.inbox.page` and :func:`~cpis.services.inbox.acknowledge`,
the services ``GET /la/v1/notifications`` and its acknowledge call, with the
signed-in person as the actor: an acknowledgement records who they are.

An open inbox (the first page of new attendances) gets the new ones as they come
by server-sent events (:func:`events`): the page's script (``inbox.mjs``) puts each
child's section, rendered by the same template as the page's, at the top. The
stream looks again whenever this process records a lookup (the
``NOTIFICATIONS_QUEUED`` signal) and every few seconds for lookups other replicas
record; it ends after a few minutes, and the browser's ``EventSource`` reconnects
with the last event's id, so a signed-out or expired session stops it. The script
does not reconnect once the person has left the page alone for
:data:`LIVE_IDLE_SECONDS`, and says so, so an open inbox does not keep a session
alive on its own.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
from aiohttp import web

from cpis.errors import InvalidRequest
from cpis.model.la import InboxChild, InboxCursor, InboxPage
from cpis.model.notifications import InboxStatus
from cpis.services import inbox
from cpis.web.notifications import INBOX
from cpis.web.pages import events as sse
from cpis.web.pages._la import LA_ROLES, actor, setting_name, spaced
from cpis.web.pages._site import SESSION, PageRefused, page, render, see_other, url
from cpis.web.pages.nav import nav_for
from cpis.web.state import NOTIFICATIONS_QUEUED, SERVICES

PATH = "/inbox"
CHILDREN_PER_PAGE = 25
PER_CHILD = 10
_STATUSES: dict[str, InboxStatus] = {"new": "new", "acknowledged": "acknowledged", "all": "all"}
_FILTERS = (("new", "New"), ("acknowledged", "Acknowledged"), ("all", "All"))

# How often an open inbox looks for attendances other replicas recorded, and how long
# one stream lasts before the browser reconnects (and the session is checked again).
POLL_SECONDS = 5.0
STREAM_SECONDS = 300.0
# Each reconnect is a request that keeps the session alive, so the page's script stops
# reconnecting once the person has not used the page for this long: an inbox left open
# on an empty desk still signs out at the session's idle timeout (30 minutes).
LIVE_IDLE_SECONDS = 20 * 60


class Bell:
    """Wakes every open inbox stream of this process when a lookup queued notifications,
    and when the server shuts down (``closed``: each stream then ends, rather than
    holding the shutdown until its timeout)."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Event] = set()
        self.closed = False

    async def close(self, _app: web.Application) -> None:
        self.closed = True
        self.ring()

    @property
    def waiting(self) -> int:
        """How many streams are waiting for it now."""
        return len(self._waiting)

    def ring(self) -> None:
        for event in self._waiting:
            event.set()

    async def wait(self, seconds: float) -> None:
        """Until the bell rings, or ``seconds`` pass."""
        event = asyncio.Event()
        self._waiting.add(event)
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
        except TimeoutError:
            pass
        finally:
            self._waiting.discard(event)


BELL = web.AppKey("inbox_bell", Bell)


def connect(app: web.Application) -> None:
    """Ring the inbox's bell whenever a lookup in this process queues notifications."""
    app[BELL] = bell = Bell()
    app.on_shutdown.append(bell.close)
    if NOTIFICATIONS_QUEUED in app:
        app[NOTIFICATIONS_QUEUED].connect(app[BELL].ring)


def _status(request: web.Request) -> InboxStatus:
    raw = request.query.get("status", "new")
    status = _STATUSES.get(raw)
    if status is None:
        raise PageRefused(400, "There is a problem", "Choose new, acknowledged or all attendances.")
    return status


def _cursor(raw: str | None) -> InboxCursor | None:
    if raw is None:
        return None
    try:
        return inbox.parse_cursor(raw)
    except InvalidRequest:
        raise PageRefused(
            400,
            "This page of the inbox is out of date",
            "Go back to the first page of the inbox and try again.",
        ) from None


def _count(raw: str | None) -> int | None:
    if raw is None or not (raw.isascii() and raw.isdigit()) or len(raw) > 4:
        return None
    return int(raw)


def child_context(child: InboxChild, *, status: InboxStatus) -> dict[str, Any]:
    """What ``inbox_child.html`` needs to render one child's section."""
    return {"child": child, "status": status, "spaced": spaced, "setting_name": setting_name}


def _link(status: InboxStatus, after: InboxCursor | None = None) -> str:
    query: dict[str, str] = {}
    if status != "new":
        query["status"] = status
    if after is not None:
        query["after"] = inbox.cursor_text(after)
    return PATH + (f"?{urlencode(query)}" if query else "")


async def _page(request: web.Request, status: InboxStatus, after: InboxCursor | None) -> InboxPage:
    return await inbox.page(
        request.app[INBOX],
        request.app[SERVICES].clock,
        actor=actor(request),
        status=status,
        after=after,
        children=CHILDREN_PER_PAGE,
        per_child=PER_CHILD,
    )


def _render(
    request: web.Request,
    found: InboxPage,
    *,
    first: bool,
    errors: list[tuple[str, str]] | None = None,
    acknowledged: int | None = None,
    changes: bool = False,
    status_code: int = 200,
) -> web.Response:
    status = found.status
    live = status == "new" and first
    since = found.children[0].cursor if found.children else None
    events = url(request, PATH + "/events")
    if since is not None:
        events += "?" + urlencode({"since": inbox.cursor_text(since)})
    return render(
        request,
        "inbox.html",
        {
            "title": "Inbox",
            "found": found,
            "status": status,
            "first": first,
            "filters": [(value, label, _link(_STATUSES[value])) for value, label in _FILTERS],
            "next_link": None if found.next is None else _link(status, found.next),
            "first_link": _link(status),
            "events_url": events if live else None,
            "live_idle_seconds": LIVE_IDLE_SECONDS,
            "acknowledged": acknowledged,
            "acknowledged_what": "NHS number change" if changes else "attendance",
            "spaced": spaced,
            "setting_name": setting_name,
            **({"errors": errors} if errors else {}),
            **nav_for(request[SESSION], PATH),
        },
        status=status_code,
    )


@page(roles=LA_ROLES)
async def show(request: web.Request) -> web.StreamResponse:
    status = _status(request)
    after = _cursor(request.query.get("after"))
    found = await _page(request, status, after)
    return _render(
        request,
        found,
        first=after is None,
        acknowledged=_count(request.query.get("acknowledged")),
        changes=request.query.get("what") == "changes",
    )


@page(roles=LA_ROLES)
async def acknowledge(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    status = _STATUSES.get(str(form.get("status", "new")), "new")
    raw = [v for v in form.getall("ids", []) if isinstance(v, str)]
    try:
        ids = [uuid.UUID(v) for v in raw[: inbox.MAX_ACKNOWLEDGE]]
    except ValueError:
        ids = []
    if not ids:
        found = await _page(request, status, None)
        problem = "Select the attendances you have read, then acknowledge them"
        return _render(
            request, found, first=True, errors=[("inbox-list", problem)], status_code=400
        )
    svc = request.app[SERVICES]
    n = await inbox.acknowledge(request.app[INBOX], svc.clock, actor=actor(request), ids=ids)
    query = {"acknowledged": str(n)} | ({"status": status} if status != "new" else {})
    if form.get("what") == "changes":
        query["what"] = "changes"
    return see_other(url(request, PATH) + "?" + urlencode(query))


def _since(request: web.Request) -> InboxCursor | None:
    # On a reconnect the browser says the last event it had; else the page's newest.
    raw = request.headers.get("Last-Event-ID") or request.query.get("since")
    if not raw:
        return None
    try:
        return inbox.parse_cursor(raw)
    except InvalidRequest:
        return None


def _newer(cursor: InboxCursor, than: InboxCursor | None) -> bool:
    if than is None:
        return True
    return (cursor.at, cursor.notification_id.bytes) > (than.at, than.notification_id.bytes)


def _gone(request: web.Request) -> bool:
    # aiohttp does not cancel a handler whose client went away: a stream with nothing to
    # send would learn of it only at its next heartbeat. Looked at on every wake.
    return request.transport is None or request.transport.is_closing()


async def _new_children(
    request: web.Request, since: InboxCursor | None
) -> AsyncIterator[sse.Event]:
    template = aiohttp_jinja2.get_env(request.app).get_template("inbox_child.html")
    bell = request.app[BELL]
    who = actor(request)
    svc = request.app[SERVICES]
    ends = time.monotonic() + STREAM_SECONDS
    while time.monotonic() < ends and not bell.closed and not _gone(request):
        found = await inbox.page(
            request.app[INBOX],
            svc.clock,
            actor=who,
            status="new",
            children=CHILDREN_PER_PAGE,
            per_child=PER_CHILD,
        )
        # Oldest first: the script puts each at the top, so the newest ends up there.
        for child in reversed([c for c in found.children if _newer(c.cursor, since)]):
            html = template.render(**child_context(child, status="new"))
            since = child.cursor
            yield sse.Event("child", html, id=inbox.cursor_text(child.cursor))
        await bell.wait(min(POLL_SECONDS, max(0.0, ends - time.monotonic())))


@page(roles=LA_ROLES)
async def events(request: web.Request) -> web.StreamResponse:
    return await sse.event_stream(request, _new_children(request, _since(request)))


def add_routes(app: web.Application, prefix: str) -> None:
    connect(app)
    r = app.router
    r.add_get(prefix + PATH, show, name="page_inbox")
    r.add_post(prefix + PATH + "/acknowledge", acknowledge, name="page_inbox_acknowledge")
    r.add_get(prefix + PATH + "/events", events, name="page_inbox_events")
