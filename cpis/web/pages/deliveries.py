"""Deliveries that failed (issue 12, item 3), for the LA's managers: notifications the
dispatcher gave up on sending to one of the LA's channels (a Subscription's endpoint,
its MESH mailbox), and its Subscriptions in error; each delivery can be retried.

It is :mod:`cpis.services.deliveries`, as ``GET /la/v1/notifications/failed`` and
its retry call, for the person's own LA: another LA's delivery id is one that does
not exist. The notifications themselves are always in the inbox.
"""

from __future__ import annotations

from aiohttp import web

from cpis.services import deliveries
from cpis.web.notifications import INBOX
from cpis.web.pages._la import MANAGERS, actor
from cpis.web.pages._site import SESSION, PageRefused, page, render, see_other, url
from cpis.web.pages.nav import nav_for
from cpis.web.state import SERVICES
from cpis.web.subscriptions import SUBSCRIPTION_STORE

PATH = "/deliveries"
CHANNELS = {"rest-hook": "FHIR Subscription", "mesh": "MESH mailbox"}


def _retried(raw: str | None) -> int | None:
    return int(raw) if raw and raw.isascii() and raw.isdigit() and len(raw) <= 18 else None


@page(roles=MANAGERS)
async def listing(request: web.Request) -> web.StreamResponse:
    who = actor(request)
    failed = await deliveries.failed(request.app[INBOX], la_ods=who.la_ods)
    failing = await deliveries.failing_subscriptions(request.app[SUBSCRIPTION_STORE], actor=who)
    return render(
        request,
        "deliveries.html",
        {
            "title": "Failed deliveries",
            "failed": failed,
            "failing": failing,
            "channels": CHANNELS,
            "retried": _retried(request.query.get("retried")),
            **nav_for(request[SESSION], PATH),
        },
    )


@page(roles=MANAGERS)
async def retry(request: web.Request) -> web.StreamResponse:
    delivery_id = _retried(request.match_info["delivery_id"])
    if delivery_id is None or not await deliveries.retry(
        request.app[INBOX],
        request.app[SERVICES].clock,
        delivery_id=delivery_id,
        actor=actor(request),
    ):
        raise PageRefused(
            404,
            "That delivery is not waiting to be retried",
            "It may have been retried already. Go back to failed deliveries to see what is left.",
        )
    return see_other(url(request, f"{PATH}?retried={delivery_id}"))


def add_routes(app: web.Application, prefix: str) -> None:
    app.router.add_get(prefix + PATH, listing, name="page_deliveries")
    app.router.add_post(prefix + PATH + "/{delivery_id}/retry", retry, name="page_delivery_retry")
