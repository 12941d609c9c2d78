"""The service with its web pages, and the demo OpenID provider its people sign in at.

:func:`running_web_service` serves the application on a free port (as ``cpis
serve`` does), starts ``demo/oidc`` with the service's web client registered at
that port's ``/auth/callback``, and registers the demo's organisations to sign
in there: Demoshire County Council (XDM01: ``social.worker`` is a caseworker,
``manager`` a manager) and its ED (XED01: ``clinician``, by her CIS2 role), with
plans for three synthetic children.

:class:`WebUser` is a person's browser without a browser (a cookie jar):
:meth:`WebUser.sign_in` goes through the service's sign-in, the provider's form
and back, as Chromium would.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
from aiohttp import web
from joserfc.jwk import ECKey

from cpis.app import Runtime, Start, build, create_app
from cpis.model import (
    LocalAuthority,
    Organisation,
    PlanFields,
    PlanType,
    Principal,
    Role,
    SettingType,
)
from cpis.model.web import OrgKind, SignInConfig, WebRole
from cpis.services import plans, web_sign_in
from cpis.settings import Secret, Settings
from cpis.web.server import serving
from tests.oidc_provider import (
    DemoAccount,
    LocalOidcProvider,
    OidcClient,
    _only_form,
    running_oidc_provider,
)
from tests.ports import listening_socket, port_of

DEMO_LA = LocalAuthority(
    ods_code="XDM01",
    name="Demoshire County Council",
    office_phone="01632 960000",
    edt_phone="01632 960999",
    repeat_window_hours=24,
)
DEMO_ED = Organisation("XED01", "Demoshire General Hospital Emergency Department", SettingType.ED)
# Synthetic (999-range) NHS numbers with valid check digits: a CPP, a LAC, none.
CHILD_CPP = "9990000018"
CHILD_LAC = "9990000026"
UNKNOWN_CHILD = "9990000042"
WEB_CLIENT = "cpis-test-web"
SIGNED_WEB_CLIENT = "cpis-test-web-signed"


@dataclass
class WebService:
    runtime: Runtime
    settings: Settings
    app: web.Application
    provider: LocalOidcProvider

    @property
    def base(self) -> str:
        return self.settings.public_base_url

    def url(self, path: str) -> str:
        return self.base + path

    def account(self, role: str) -> DemoAccount:
        return self.provider.account(role)


async def _world(rt: Runtime, issuer: str) -> None:
    await rt.db.upsert_la(DEMO_LA)
    await rt.db.upsert_organisation(DEMO_ED)
    for config in (
        SignInConfig(
            org_ods=DEMO_LA.ods_code,
            kind=OrgKind.LA,
            issuer=issuer,
            client_id=WEB_CLIENT,
            role_values={"caseworker": WebRole.CASEWORKER, "manager": WebRole.MANAGER},
        ),
        SignInConfig(
            org_ods=DEMO_ED.ods_code,
            kind=OrgKind.HEALTH,
            issuer=issuer,
            client_id=WEB_CLIENT,
            roles_claim="selected_roleid",
        ),
    ):
        assert await web_sign_in.register_sign_in(rt.db, rt.web_sessions, config) == config
    la = Principal(client_id="test-la", role=Role.LA, ods_codes=(DEMO_LA.ods_code,))
    for nhs, plan_type, plan_id in (
        (CHILD_CPP, PlanType.CPP, "P-CPP-1"),
        (CHILD_LAC, PlanType.LAC, "P-LAC-1"),
    ):
        await plans.put_plan(
            rt.db,
            rt.clock,
            principal=la,
            la_ods=DEMO_LA.ods_code,
            la_plan_id=plan_id,
            fields=PlanFields(nhs, plan_type, date(2026, 1, 5), birth_date=date(2015, 4, 1)),
            if_match=None,
        )


@asynccontextmanager
async def running_web_service(
    tmp_path: Path, database_url: str, *, base_path: str = "", **overrides: Any
) -> AsyncIterator[WebService]:
    """Served at ``http://127.0.0.1:{port}{base_path}``; ``overrides`` go to ``build``."""
    sock = listening_socket()
    port = port_of(sock)
    base = f"http://127.0.0.1:{port}{base_path}"
    settings = Settings(
        data_dir=tmp_path,
        database_url=Secret(database_url),
        host="127.0.0.1",
        port=port,
        public_base_url=base,
        rate_limit_per_second=100_000,
        rate_limit_burst=100_000,
        source_rate_limit_per_second=100_000,
        source_rate_limit_burst=100_000,
        db_pool_min=1,
        db_pool_max=4,
        workers_in_serve=False,
    )
    client = OidcClient.public(
        WEB_CLIENT,
        redirect_uri=f"{base}/auth/callback",
        post_logout_redirect_uris=(f"{base}/signed-out",),
        client_name="CP-IS",
    )
    async with build(settings, start=Start.SERVE, **overrides) as runtime:
        # The same service as a confidential client, authenticating with a JWT signed
        # by its own key (private_key_jwt), registered with the key its JWKS publishes.
        key = ECKey.import_key(runtime.keys.signing_key)
        signed = OidcClient(
            SIGNED_WEB_CLIENT,
            (f"{base}/auth/callback",),
            (f"{base}/signed-out",),
            token_endpoint_auth_method="private_key_jwt",
            private_key=ECKey.import_key(
                runtime.keys.signing_key, parameters={"kid": key.thumbprint()}
            ),
            client_name="CP-IS",
        )
        async with running_oidc_provider([client, signed]) as provider:
            await _world(runtime, provider.issuer)
            app = create_app(runtime)
            async with serving(app, settings, sock=sock):
                yield WebService(runtime, settings, app, provider)


class WebUser:
    """A person at a browser, without the browser: a cookie jar, redirects by hand."""

    def __init__(self, service: WebService) -> None:
        self.service = service
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=15),
        )

    async def __aenter__(self) -> WebUser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()

    async def sign_in(self, role: str, org: str | None = None) -> str:
        """Sign in as the demo account with ``role``; the URL the service lands on."""
        account = self.service.account(role)
        org = org or (DEMO_ED.ods_code if role == "clinician" else DEMO_LA.ods_code)
        url = self.service.url(f"/sign-in/{org}")
        for _hop in range(15):
            async with self.http.get(url, allow_redirects=False) as resp:
                body = await resp.text()
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    continue
            if url.startswith(self.service.base):
                return url
            form = _only_form(body, url)
            fields = {**form.fields, "username": account.login, "password": account.password}
            async with self.http.post(form.action, data=fields, allow_redirects=False) as resp:
                url = urljoin(form.action, resp.headers["Location"])
        raise AssertionError("too many redirects signing in")

    def cookie(self, name: str) -> str | None:
        for morsel in self.http.cookie_jar:
            if morsel.key == name:
                return morsel.value
        return None

    async def page(self, path: str) -> tuple[int, str, dict[str, str]]:
        async with self.http.get(self.service.url(path), allow_redirects=False) as resp:
            return resp.status, await resp.text(), dict(resp.headers)

    async def csrf(self, path: str = "/lookup") -> str:
        _status, body, _headers = await self.page(path)
        found = re.search(r'name="csrf_token" value="([^"]+)"', body)
        assert found, body[:500]
        return found.group(1)

    async def post(self, path: str, data: dict[str, str]) -> tuple[int, str, dict[str, str]]:
        async with self.http.post(self.service.url(path), data=data, allow_redirects=False) as resp:
            return resp.status, await resp.text(), dict(resp.headers)
