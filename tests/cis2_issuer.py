"""A local OpenID provider that issues ID tokens as NHS CIS2 does, for tests.

Usage::

    from tests.cis2_issuer import running_cis2

    async with running_cis2() as cis2:
        settings = Settings(..., cis2_issuers=(cis2.issuer,))
        id_token = cis2.id_token(cis2.nurse(audience="ed-system.apps.national"))
        cis2.rotate_key()             # publish a new key (and sign with it) from now on
        cis2.down = True              # discovery and keys answer 503 from now on

It is a real HTTP server on 127.0.0.1 publishing
``{issuer}/.well-known/openid-configuration`` and the key set it names, the
two things a relying party reads from CIS2; ID tokens are signed by
:class:`cpis.demo_identity.DemoIssuer` with CIS2's claims. The issuer URL has
a realm path, as CIS2's has. ``requests`` counts what was fetched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from cpis.demo_identity import DemoIssuer, new_key

REALM = "/openam/oauth2/realms/root/realms/oidc"


class LocalCis2:
    def __init__(self, issuer: str) -> None:
        self.issuer = issuer
        self.signer = DemoIssuer(issuer, new_key())
        self.down = False
        self.requests: list[str] = []

    def rotate_key(self) -> None:
        self.signer = DemoIssuer(self.issuer, new_key())

    def id_token(self, claims: dict[str, Any], **kwargs: Any) -> str:
        return self.signer.id_token(claims, **kwargs)

    def nurse(self, *, audience: str, org_code: str = "XED01", **overrides: Any) -> dict[str, Any]:
        """A smartcard nurse who selected her one role, at ``org_code``; synthetic."""
        claims = self.signer.clinician_claims(
            audience=audience,
            user_id="555000000777",
            name="Robin Cardholder",
            role_profile_id="555000000888",
            org_code=org_code,
            org_name="Trust Emergency Department",
        )
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    async def _discovery(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self.down:
            return web.Response(status=503)
        return web.json_response(self.signer.discovery())

    async def _jwks(self, request: web.Request) -> web.Response:
        self.requests.append(request.path)
        if self.down:
            return web.Response(status=503)
        return web.json_response(self.signer.jwks())


@asynccontextmanager
async def running_cis2() -> AsyncIterator[LocalCis2]:
    app = web.Application()
    holder: list[LocalCis2] = []

    async def discovery(request: web.Request) -> web.Response:
        return await holder[0]._discovery(request)

    async def jwks(request: web.Request) -> web.Response:
        return await holder[0]._jwks(request)

    app.router.add_get(f"{REALM}/.well-known/openid-configuration", discovery)
    app.router.add_get(f"{REALM}/jwks", jwks)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        holder.append(LocalCis2(str(server.make_url(REALM))))
        yield holder[0]
    finally:
        await server.close()
