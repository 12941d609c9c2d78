"""A tiny relying party for browser tests of the demo OpenID provider.

It does what the service's web pages will do, and no more: ``/start`` sends the
browser to the provider with a PKCE (S256) authorization request, ``/callback``
checks the state and ``iss``, redeems the code and shows the ID token's claims,
``/sign-out`` starts RP-initiated logout and ``/signed-out`` is where the
provider sends the person back. Test-only: it keeps its requests in memory and
trusts one provider.

Usage::

    async with running_relying_party() as rp:           # on 127.0.0.1, a free port
        async with running_oidc_provider([rp.client]) as op:
            rp.provider = op
            await page.goto(rp.url("/start"))
"""

from __future__ import annotations

import html
import json
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.oidc_provider import (
    AuthorizationFailed,
    AuthorizationRequest,
    LocalOidcProvider,
    OidcClient,
    Tokens,
    authorization_request,
    redeem_code,
)
from tests.ports import listening_socket, port_of

PAGE = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - test relying party</title></head>
<body style="font-family: Arial, sans-serif; margin: 2em; max-width: 50em">
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>"""


@dataclass
class RelyingParty:
    base_url: str
    client: OidcClient
    provider: LocalOidcProvider | None = None
    scope: str = "openid profile email"
    pending: dict[str, AuthorizationRequest] = field(default_factory=dict)
    signed_in: list[Tokens] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(
        text=PAGE.format(title=html.escape(title), body=body),
        status=status,
        content_type="text/html",
    )


def _app(rp: RelyingParty) -> web.Application:
    async def start(_request: web.Request) -> web.Response:
        assert rp.provider is not None
        auth = authorization_request(rp.provider, rp.client, scope=rp.scope)
        rp.pending[auth.state] = auth
        raise web.HTTPFound(auth.url)

    async def callback(request: web.Request) -> web.Response:
        assert rp.provider is not None
        query = request.query
        if "error" in query:
            return _page("Sign-in failed", f"<p>{html.escape(query['error'])}</p>", 400)
        auth = rp.pending.pop(query.get("state", ""), None)
        if auth is None or query.get("iss") != rp.provider.issuer:
            return _page("Sign-in failed", "<p>Unknown state or issuer.</p>", 400)
        async with aiohttp.ClientSession() as session:
            try:
                tokens = await redeem_code(
                    rp.provider, rp.client, auth, query["code"], session=session
                )
            except AuthorizationFailed as failed:
                return _page("Sign-in failed", f"<p>{html.escape(str(failed))}</p>", 400)
        rp.signed_in.append(tokens)
        rows = "\n".join(
            f"<tr><th scope='row'>{html.escape(name)}</th>"
            f"<td><code>{html.escape(json.dumps(value))}</code></td></tr>"
            for name, value in tokens.id_token_claims.items()
        )
        logout = rp.url(f"/sign-out?{urlencode({'n': len(rp.signed_in) - 1})}")
        return _page(
            "Signed in",
            f"<p>Signed in as <strong>{html.escape(tokens.id_token_claims.get('name', ''))}"
            "</strong>.</p>"
            f"<table><caption>Claims in the ID token</caption>"
            f"<thead><tr><th scope='col'>Claim</th><th scope='col'>Value</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
            f"<p><a href='{html.escape(logout)}'>Sign out</a></p>",
        )

    async def sign_out(request: web.Request) -> web.Response:
        assert rp.provider is not None
        tokens = rp.signed_in[int(request.query["n"])]
        params = {
            "id_token_hint": tokens.id_token,
            "post_logout_redirect_uri": rp.url("/signed-out"),
            "state": secrets.token_urlsafe(8),
        }
        raise web.HTTPFound(f"{rp.provider.discovery['end_session_endpoint']}?{urlencode(params)}")

    async def signed_out(_request: web.Request) -> web.Response:
        return _page("Signed out", f"<p><a href='{html.escape(rp.url('/start'))}'>Sign in</a></p>")

    app = web.Application()
    app.router.add_get("/start", start)
    app.router.add_get("/callback", callback)
    app.router.add_get("/sign-out", sign_out)
    app.router.add_get("/signed-out", signed_out)
    return app


@asynccontextmanager
async def running_relying_party(client_id: str = "test-rp") -> AsyncIterator[RelyingParty]:
    # Bound before the app is built, so its redirect URIs can name the port.
    sock = listening_socket()
    base = f"http://127.0.0.1:{port_of(sock)}"
    client = OidcClient.public(
        client_id,
        redirect_uri=f"{base}/callback",
        post_logout_redirect_uris=(f"{base}/signed-out",),
        client_name="the test relying party",
    )
    rp = RelyingParty(base, client)
    runner = web.AppRunner(_app(rp), access_log=None)
    await runner.setup()
    try:
        await web.SockSite(runner, sock).start()
        yield rp
    finally:
        await runner.cleanup()
