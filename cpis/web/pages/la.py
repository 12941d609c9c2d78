"""The local authority's pages (issue 12, item 3), in the order of their navigation:
the inbox (an LA person's home after sign-in), a child's record, uploads, failed
deliveries (managers) and settings."""

from __future__ import annotations

from aiohttp import web

from cpis.model.web import WebRole
from cpis.web.pages import child, deliveries, inbox, settings, uploads
from cpis.web.pages._la import LA_ROLES
from cpis.web.pages.nav import offer


def add_routes(app: web.Application, *, prefix: str) -> None:
    offer("Inbox", inbox.PATH, *LA_ROLES)
    offer("Find a child", child.PATH, *LA_ROLES)
    offer("Uploads", uploads.PATH, *LA_ROLES)
    offer("Failed deliveries", deliveries.PATH, WebRole.MANAGER)
    offer("Settings", settings.PATH, *LA_ROLES)
    for module in (inbox, child, uploads, deliveries, settings):
        module.add_routes(app, prefix)
