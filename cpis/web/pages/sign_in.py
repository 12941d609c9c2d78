"""The start page, choosing an organisation to sign in with, the provider's callback,
and signing out (issue 12, item 2)."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from cpis.model.web import OrgKind, WebRole
from cpis.services import web_sign_in
from cpis.web.pages._site import (
    SESSION,
    SESSION_ID,
    SIGN_IN,
    absolute,
    clear_cookie,
    flow_cookie,
    page,
    render,
    see_other,
    session_cookie,
    set_cookie,
    url,
)
from cpis.web.pages.nav import home_of, nav_for

_FLOW_SECONDS = 600


def safe_return_path(raw: str, prefix: str) -> str:
    """``raw`` if it is a path of this service (under ``prefix``), else nothing, so a
    link to the sign-in page cannot send a person elsewhere afterwards. Browsers drop
    tabs and newlines from URLs (``/\t/evil.example`` becomes ``//evil.example``) and
    read ``\\`` as ``/``, so neither may appear."""
    if not raw.startswith(prefix + "/") or raw.startswith("//") or len(raw) > 200:
        return ""
    if "\\" in raw or not raw.isprintable() or any(c.isspace() for c in raw):
        return ""
    return raw


def _next(request: web.Request) -> str:
    """The page to return to after signing in (the ``next`` query parameter)."""
    return safe_return_path(request.query.get("next", ""), url(request, ""))


@page()
async def start(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    return render(
        request,
        "start.html",
        {"title": "Child Protection - Information Sharing", **nav_for(session, "/")},
    )


@page()
async def choose(request: web.Request) -> web.StreamResponse:
    options = await web_sign_in.options(request.app[SIGN_IN])
    back = _next(request)
    groups = [
        ("Local authorities", [(o, n) for o, n, k in options if k is OrgKind.LA]),
        ("Health organisations", [(o, n) for o, n, k in options if k is OrgKind.HEALTH]),
    ]
    return render(
        request,
        "sign_in.html",
        {
            "title": "Sign in",
            "groups": groups,
            "next_query": f"?{urlencode({'next': back})}" if back else "",
            **nav_for(request.get(SESSION), "/sign-in"),
        },
    )


@page()
async def begin(request: web.Request) -> web.StreamResponse:
    org = request.match_info["org"].upper()
    flow, provider_url = await web_sign_in.begin(
        request.app[SIGN_IN],
        org_ods=org,
        redirect_uri=absolute(request, "/auth/callback"),
        return_to=_next(request),
    )
    response = see_other(provider_url)
    set_cookie(request, response, flow_cookie(request), flow, max_age=_FLOW_SECONDS)
    return response


@page(audit=False)  # the sign-in writes its own audit line, naming the person
async def callback(request: web.Request) -> web.StreamResponse:
    flow = request.cookies.get(flow_cookie(request))
    session_id, session, back = await web_sign_in.finish(
        request.app[SIGN_IN], flow=flow, params=dict(request.query)
    )
    response = see_other(back or url(request, home_of(session.user.role)))
    clear_cookie(request, response, flow_cookie(request))
    limits = request.app[SIGN_IN].limits
    set_cookie(
        request,
        response,
        session_cookie(request),
        session_id,
        max_age=int(limits.lifetime.total_seconds()),
    )
    return response


@page(roles=tuple(WebRole), audit=False)  # the sign-out writes its own audit line
async def sign_out(request: web.Request) -> web.StreamResponse:
    svc = request.app[SIGN_IN]
    provider = await web_sign_in.sign_out(
        svc, request[SESSION_ID], post_logout_redirect_uri=absolute(request, "/signed-out")
    )
    response = see_other(provider or url(request, "/signed-out"))
    clear_cookie(request, response, session_cookie(request))
    return response


@page()
async def signed_out(request: web.Request) -> web.StreamResponse:
    return render(request, "signed_out.html", {"title": "You have signed out", **nav_for(None, "")})
