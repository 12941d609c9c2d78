"""What every page shares: the templates, the session, CSRF, security headers, the
audit line naming the person, and errors answered as HTML pages.

A page handler is wrapped by :func:`page`, which says who may see it: no one
in particular (``roles=None``), or signed-in people with one of ``roles``.
Someone not signed in is sent to sign in (and brought back afterwards); someone
signed in with another role gets a 403 page. A POST must carry the session's
CSRF token (``csrf_token`` in the form), or it is refused before the handler
runs: state changes only by POST, and only with the token (or, from a page's own
script, its ``X-CSRF-Token`` header: a same-origin header no other site can set).

API paths (FHIR, the LA API, tokens, the probes) keep their OperationOutcome
errors; anything else a browser asks for that is not there gets an HTML 404.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
import jinja2
import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from cpis.errors import CpisError, SignInFailed, Unavailable
from cpis.model.web import WebRole, WebSession
from cpis.services import web_sign_in
from cpis.services.web_sign_in import SignInServices
from cpis.web.context import info
from cpis.web.pages.nav import nav_for
from cpis.web.state import SERVICES

log = structlog.get_logger("cpis.web.pages")

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
STATIC = Path(__file__).resolve().parent.parent / "static"

SIGN_IN = web.AppKey("sign_in", SignInServices)
SESSION = web.RequestKey("web_session", WebSession)
SESSION_ID = web.RequestKey("web_session_id", str)

# Paths (under the base URL's prefix) that are the APIs: their errors stay
# OperationOutcomes, whatever the Accept header says.
_API_PATHS = ("/FHIR/", "/la/v1/", "/oauth2/", "/.well-known/", "/openapi.json")
_API_ROOT = ("/healthz", "/readyz", "/metrics")

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
    " font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none';"
    " frame-ancestors 'none'; object-src 'none'; form-action 'self'{targets}"
)
_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    # Pages show personal data: never kept by the browser or a proxy.
    "Cache-Control": "no-store",
}


def cookie_names(secure: bool) -> tuple[str, str]:
    """(session cookie, sign-in flow cookie): ``__Host-`` names where the cookies are
    Secure, so no subdomain or plain-HTTP page can set them (RFC 6265bis §4.1.3.2)."""
    if secure:
        return "__Host-cpis-session", "__Host-cpis-sign-in"
    return "cpis-session", "cpis-sign-in"


def secure_cookies(public_base_url: str) -> bool:
    """Cookies are Secure unless the service is plain HTTP on this machine (the demo)."""
    parts = urlsplit(public_base_url)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    return not (parts.scheme == "http" and local)


def url(request: web.Request, path: str) -> str:
    """``path`` under the base URL's path prefix (for links and redirects)."""
    return request.app[SERVICES].settings.path_prefix + path


def absolute(request: web.Request, path: str) -> str:
    return request.app[SERVICES].settings.public_base_url + path


def setup(app: web.Application, *, prefix: str) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
    )
    env.globals["asset"] = lambda name: f"{prefix}/assets/{name}"
    env.globals["link"] = lambda path: f"{prefix}{path}"


def _context(request: web.Request) -> dict[str, Any]:
    # Not an aiohttp_jinja2 context processor: those run before the handler, before
    # page() has found the session.
    session = request.get(SESSION)
    session_id = request.get(SESSION_ID)
    return {
        "user": session.user if session else None,
        "csrf_token": web_sign_in.csrf_token(session_id) if session_id else "",
        "errors": [],
        **nav_for(session, ""),
    }


def render(
    request: web.Request,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    return aiohttp_jinja2.render_template(
        template, request, {**_context(request), **context}, status=status
    )


def _cookie(request: web.Request, name: str) -> str | None:
    value = request.cookies.get(name)
    return value if value and len(value) <= 128 and value.isascii() else None


def session_cookie(request: web.Request) -> str:
    return cookie_names(secure_cookies(request.app[SERVICES].settings.public_base_url))[0]


def flow_cookie(request: web.Request) -> str:
    return cookie_names(secure_cookies(request.app[SERVICES].settings.public_base_url))[1]


def set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, *, max_age: int
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        secure=secure_cookies(request.app[SERVICES].settings.public_base_url),
        samesite="Lax",
    )


def clear_cookie(request: web.Request, response: web.StreamResponse, name: str) -> None:
    set_cookie(request, response, name, "", max_age=0)


def see_other(location: str) -> web.Response:
    """A redirect to GET ``location`` (returned, so cookies can be set on it)."""
    return web.Response(status=303, headers={"Location": location})


PageHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(
    *, roles: Iterable[WebRole] | None = None, audit: bool = True
) -> Callable[[PageHandler], PageHandler]:
    """A page handler, shown to ``roles`` only (module docstring)."""
    allowed = frozenset(roles) if roles is not None else None

    def wrap(handler: PageHandler) -> PageHandler:
        @functools.wraps(handler)
        async def run(request: web.Request) -> web.StreamResponse:
            svc = request.app[SIGN_IN]
            session_id = _cookie(request, session_cookie(request))
            session = await web_sign_in.current(svc, session_id)
            if session is not None and session_id is not None:
                request[SESSION] = session
                request[SESSION_ID] = session_id
                await _allow_sign_out_target(request, session)
            if allowed is not None and session is None:
                back = request.rel_url.path if request.method == "GET" else ""
                raise web.HTTPSeeOther(_sign_in_url(request, back))
            try:
                if allowed is not None and session and session.user.role not in allowed:
                    raise PageRefused(403, "You cannot use this page", _ROLE_REFUSAL)
                if request.method == "POST":
                    # A page's own script (an upload with a progress bar) may send the
                    # token as a header, so the body need not be parsed as a form here.
                    token: object = request.headers.get("X-CSRF-Token")
                    if token is None:
                        token = (await request.post()).get("csrf_token")
                    if session_id is None or not web_sign_in.csrf_ok(
                        session_id, token if isinstance(token, str) else None
                    ):
                        raise PageRefused(403, "This form has expired", _CSRF_REFUSAL)
                response = await handler(request)
            except PageRefused as refused:
                # A refusal of someone signed in names them too, not only the address.
                if session is not None:
                    await _audit(request, session, refused.status)
                raise
            if audit and session is not None and not info(request).audited:
                await _audit(request, session, response.status)
            return response

        return run

    return wrap


_ROLE_REFUSAL = (
    "Your role does not let you use this page. If you think it should, ask the person"
    " who manages access to CP-IS at your organisation."
)
_CSRF_REFUSAL = (
    "The form you sent was out of date or did not come from this service, so nothing"
    " was changed. Go back, reload the page and try again."
)


def _sign_in_url(request: web.Request, back: str) -> str:
    target = url(request, "/sign-in")
    return f"{target}?{urlencode({'next': back})}" if back else target


async def _audit(request: web.Request, session: WebSession, status: int) -> None:
    ri = info(request)
    services = request.app[SERVICES]
    resource = request.match_info.route.resource
    entry = dataclasses.replace(
        web_sign_in.audit_entry(session.user, ri.action, outcome=status, method=request.method),
        resource=resource.canonical if resource else None,
        trace_id=ri.trace_id,
    )
    try:
        await services.db.append_audit(entry, services.clock.now())
    except Unavailable:
        raise
    except Exception:
        services.metrics.audit_failures.inc()
        log.error("audit_write_failed", action=ri.action, status=status)
        return
    ri.audited = True


class PageRefused(Exception):
    """An HTML error page: its status, heading and the sentence saying what to do."""

    def __init__(self, status: int, heading: str, body: str) -> None:
        super().__init__(heading)
        self.status = status
        self.heading = heading
        self.body = body


def _is_api(request: web.Request) -> bool:
    prefix = request.app[SERVICES].settings.path_prefix
    path = request.rel_url.path
    if path in _API_ROOT or (prefix and not path.startswith(prefix + "/") and path != prefix):
        return True
    rest = path[len(prefix) :]
    return rest.startswith(_API_PATHS) or rest in _API_ROOT


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _error_page(request: web.Request, status: int, heading: str, body: str) -> web.Response:
    return render(
        request,
        "error.html",
        {"title": heading, "heading": heading, "body": body},
        status=status,
    )


def _content_security_policy(request: web.Request) -> str:
    # The sign-out form's answer redirects to the person's provider, and Chromium holds
    # every redirect of a form's navigation to form-action: name that provider's origin.
    target = request.get(_FORM_TARGET)
    return CONTENT_SECURITY_POLICY.format(targets=f" {target}" if target else "")


_FORM_TARGET = web.RequestKey("form_target", str)


# Per application (a module-wide cache would outlive an app and its providers in tests).
ISSUER_ORIGINS = web.AppKey("issuer_origins", dict[str, tuple[float, str | None]])
_ISSUER_CACHE_SECONDS = 60.0


async def _allow_sign_out_target(request: web.Request, session: WebSession) -> None:
    """Every signed-in page has the sign-out form, whose answer redirects to the
    person's provider (RP-initiated logout): its origin goes in form-action. The
    provider's logout endpoint is taken to be at its issuer's origin, as it is at
    Entra ID, CIS2 and the demo provider."""
    org = session.user.org_ods
    now = time.monotonic()
    origins = request.app[ISSUER_ORIGINS]
    hit = origins.get(org)
    if hit is None or hit[0] < now:
        config = await request.app[SIGN_IN].store.sign_in_config(org)
        origin = None
        if config is not None:
            parts = urlsplit(config.issuer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if len(origins) > 10_000:
            origins.clear()
        hit = origins[org] = (now + _ISSUER_CACHE_SECONDS, origin)
    if hit[1] is not None:
        request[_FORM_TARGET] = hit[1]


@web.middleware
async def pages_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Security headers on every page; HTML errors for everything but the APIs."""
    if _is_api(request):
        return await handler(request)
    try:
        response = await handler(request)
    except PageRefused as refused:
        response = _error_page(request, refused.status, refused.heading, refused.body)
    except SignInFailed as failed:
        response = _error_page(
            request,
            400,
            "You could not be signed in",
            f"{failed.message[0].upper()}{failed.message[1:]}.",
        )
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if not (exc.status in (404, 405) and _wants_html(request)) and not _is_page(request):
            raise
        response = _http_error_page(request, exc.status)
    except CpisError as err:
        if not (_is_page(request) or _wants_html(request)):
            raise
        if err.status < 500 and not isinstance(err, Unavailable):
            response = _error_page(request, err.status, "There is a problem", err.message)
        else:
            response = _error_page(
                request,
                503 if isinstance(err, Unavailable) else 500,
                "Sorry, there is a problem with the service",
                "Try again in a few minutes. If you need to know about a child now, ring the"
                " local authority's emergency duty team.",
            )
            if isinstance(err, Unavailable):
                response.headers["Retry-After"] = str(err.retry_after)
    if response.content_type == "text/html" or response.status in (302, 303):
        response.headers["Content-Security-Policy"] = _content_security_policy(request)
        for name, value in _HEADERS.items():
            response.headers.setdefault(name, value)
    return response


def _is_page(request: web.Request) -> bool:
    name = request.match_info.route.name or ""
    return name.startswith("page_")


def _http_error_page(request: web.Request, status: int) -> web.Response:
    if status == 404:
        return _error_page(
            request,
            404,
            "Page not found",
            "If you typed the web address, check it is correct. If you pasted it, check you"
            " copied the entire address.",
        )
    if status == 405:
        return _error_page(
            request, 405, "There is a problem", "That page cannot be used in that way."
        )
    return _error_page(request, status, "There is a problem", "Go back and try again.")
