"""The web pages people use (issue 12): server-rendered HTML in the GOV.UK Design
System, signed in with each organisation's own OpenID Connect provider.

A page module holds its handlers, each wrapped by :func:`~cpis.web.pages._site.page`
(who may see it, CSRF on POST, the audit line naming the person), renders one
template of ``cpis/web/templates/`` on ``base.html``, and offers itself in the
navigation (:mod:`~cpis.web.pages.nav`). :func:`add_routes` registers them all,
named ``page_*`` (so the error middleware knows them for pages), under the base
URL's path, with GOV.UK Frontend's files and ours at ``/assets/``.
:mod:`~cpis.web.pages.events` streams server-sent events to a page left open.

Adding a page (the LA's inbox, say): a module here with its handlers under
``@page(roles=[WebRole.CASEWORKER, WebRole.MANAGER])``, a template extending
``base.html`` (its forms with ``csrf_token``), ``offer("Inbox", "/inbox",
...)`` for the navigation, and its routes below, named ``page_*``.
"""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from cpis.model.web import WebRole
from cpis.services.web_sign_in import SignInServices
from cpis.web.pages import la, lookup, sign_in
from cpis.web.pages._site import ISSUER_ORIGINS, SIGN_IN, STATIC, pages_middleware, setup
from cpis.web.pages.nav import offer

__all__ = ["add_routes", "pages_middleware"]

_ENGLAND = ZoneInfo("Europe/London")


def _england_time(at: datetime) -> str:
    local = at.astimezone(_ENGLAND)
    hour = local.strftime("%I").lstrip("0")
    return f"{local.day} {local:%B %Y} at {hour}:{local:%M}{local:%p}".replace("AM", "am").replace(
        "PM", "pm"
    )


def _england_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def add_routes(app: web.Application, *, prefix: str, sign_in_services: SignInServices) -> None:
    app[SIGN_IN] = sign_in_services
    app[ISSUER_ORIGINS] = {}
    setup(app, prefix=prefix)
    env = aiohttp_jinja2.get_env(app)
    env.filters["england_time"] = _england_time
    env.filters["england_date"] = _england_date
    offer("Look up a child", lookup.PATH, WebRole.CLINICIAN)
    r = app.router
    r.add_get(prefix + "/", sign_in.start, name="page_start")
    r.add_get(prefix + "/sign-in", sign_in.choose, name="page_sign_in")
    r.add_get(prefix + "/sign-in/{org}", sign_in.begin, name="page_sign_in_begin")
    r.add_get(prefix + "/auth/callback", sign_in.callback, name="page_sign_in_callback")
    r.add_post(prefix + "/sign-out", sign_in.sign_out, name="page_sign_out")
    r.add_get(prefix + "/signed-out", sign_in.signed_out, name="page_signed_out")
    r.add_get(prefix + lookup.PATH, lookup.form, name="page_lookup")
    r.add_post(prefix + lookup.PATH, lookup.look_up, name="page_lookup_result")
    la.add_routes(app, prefix=prefix)
    r.add_static(prefix + "/assets/", STATIC, name="page_asset", append_version=False)
