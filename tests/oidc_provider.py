"""The demo OpenID provider (``demo/oidc``) run for a test, and sign-in without a browser.

Usage, from any test module or conftest::

    from tests.oidc_provider import OidcClient, running_oidc_provider, sign_in_without_browser

    client = OidcClient.public("cpis-web", redirect_uri="http://127.0.0.1:8080/auth/callback")

    @pytest.fixture(scope="module")
    async def op() -> AsyncIterator[LocalOidcProvider]:
        async with running_oidc_provider([client]) as provider:
            yield provider

    tokens = await sign_in_without_browser(op, client, op.account("caseworker"))
    tokens.id_token_claims["roles"]          # ["caseworker"], signature and nonce checked

The provider is ``node demo/oidc/server.mjs`` (oidc-provider), started on
127.0.0.1 with port 0, so the kernel picks a free port and nothing can take it
between choosing and binding; the provider prints its issuer, the demo accounts
and their password in its first line of output, then the fixture polls its
discovery document until it answers. Its clients are given as OpenID client
metadata (:meth:`OidcClient.metadata`): public clients with PKCE, or
confidential ones authenticating by ``client_secret_basic`` or
``private_key_jwt``. PKCE (S256) is required of every client.

:class:`BrowserlessUserAgent` is a person at a browser without the browser: it
keeps cookies, follows redirects by hand, fills in the provider's sign-in form
and stops at the client's redirect URI, so a relying party's callback can be
called with the ``code`` and ``state`` as a browser would call it (or the
code redeemed here with :meth:`BrowserlessUserAgent.redeem`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, quote_plus, urlencode, urljoin, urlsplit

import aiohttp
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from tests.polling import wait_until

REPO = Path(__file__).resolve().parent.parent
SERVER = REPO / "demo" / "oidc" / "server.mjs"
DEFAULT_SCOPE = "openid profile email"
# What a relying party asks NHS CIS2 for to learn the role a clinician is acting in.
CIS2_SCOPE = "openid profile selectedrole nationalrbacaccess associatedorgs"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

AuthMethod = Literal["none", "client_secret_basic", "private_key_jwt"]


@dataclass(frozen=True)
class DemoAccount:
    """One of the provider's synthetic people (``demo/oidc/accounts.mjs``)."""

    login: str
    password: str
    sub: str
    name: str
    role: str  # caseworker | manager | clinician
    kind: str  # la | health
    org_code: str


@dataclass(frozen=True)
class OidcClient:
    """A relying party registered with the provider, and what it needs to authenticate."""

    client_id: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    token_endpoint_auth_method: AuthMethod = "none"
    client_secret: str | None = None
    private_key: ECKey | None = None
    client_name: str | None = None

    @classmethod
    def public(cls, client_id: str, *, redirect_uri: str, **kwargs: Any) -> OidcClient:
        """A browser-side or native client: no secret, PKCE only."""
        return cls(client_id, (redirect_uri,), **kwargs)

    @classmethod
    def with_secret(cls, client_id: str, *, redirect_uri: str, **kwargs: Any) -> OidcClient:
        """A server-side client that sends a shared secret by HTTP Basic."""
        return cls(
            client_id,
            (redirect_uri,),
            token_endpoint_auth_method="client_secret_basic",
            client_secret=secrets.token_urlsafe(32),
            **kwargs,
        )

    @classmethod
    def with_private_key(cls, client_id: str, *, redirect_uri: str, **kwargs: Any) -> OidcClient:
        """A server-side client that signs a JWT assertion (RFC 7523), as CIS2 asks."""
        key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex, "use": "sig"})
        return cls(
            client_id,
            (redirect_uri,),
            token_endpoint_auth_method="private_key_jwt",
            private_key=key,
            **kwargs,
        )

    @property
    def redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def metadata(self) -> dict[str, Any]:
        """OpenID client metadata, as the provider's ``DEMO_OIDC_CLIENTS`` takes it."""
        meta: dict[str, Any] = {
            "client_id": self.client_id,
            "redirect_uris": list(self.redirect_uris),
            "post_logout_redirect_uris": list(self.post_logout_redirect_uris),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }
        if self.client_name:
            meta["client_name"] = self.client_name
        if self.client_secret:
            meta["client_secret"] = self.client_secret
        if self.private_key:
            meta["jwks"] = {"keys": [self.private_key.as_dict(private=False)]}
            meta["token_endpoint_auth_signing_alg"] = "ES256"
        return meta


@dataclass(frozen=True)
class LocalOidcProvider:
    """A running demo provider: its issuer, discovery document, people and log."""

    issuer: str
    discovery: Mapping[str, Any]
    jwks: Mapping[str, Any]  # its signing keys: made at start, never rotated while it runs
    accounts: Mapping[str, DemoAccount]  # by login
    clients: tuple[OidcClient, ...]
    pid: int
    log_path: Path

    def account(self, role: str) -> DemoAccount:
        """The demo account with ``role`` (caseworker, manager or clinician)."""
        return next(a for a in self.accounts.values() if a.role == role)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class ProviderDidNotStart(RuntimeError):
    pass


class SignInRefused(AssertionError):
    """The provider showed its sign-in form again: wrong username or password."""


class AuthorizationFailed(AssertionError):
    """The provider sent the person back to the client with an OAuth ``error``."""

    def __init__(self, params: Mapping[str, str]) -> None:
        super().__init__(f"{params.get('error')}: {params.get('error_description')}")
        self.error = params.get("error", "")
        self.params = dict(params)


@asynccontextmanager
async def running_oidc_provider(
    clients: Sequence[OidcClient],
    *,
    issuer_path: str = "",
    password: str | None = None,
    startup_timeout: float = 20.0,
) -> AsyncIterator[LocalOidcProvider]:
    """Start ``demo/oidc/server.mjs`` with ``clients``, wait until it answers, stop it after.

    ``issuer_path`` serves it under a path, as CIS2's issuer has one
    (``/openam/oauth2/realms/root/realms/oidc``).
    """
    node = shutil.which("node")
    if node is None:
        raise ProviderDidNotStart("node is not on PATH: the demo OpenID provider needs Node.js")
    if not (SERVER.parent / "node_modules" / "oidc-provider").is_dir():
        raise ProviderDidNotStart(
            "demo/oidc/node_modules is missing: `make test` installs it"
            " (or `cd demo/oidc && npm ci`)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="cpis-oidc-"))
    log_path = workdir / "provider.log"
    env = {
        **os.environ,
        "DEMO_OIDC_PORT": "0",
        "DEMO_OIDC_ISSUER": f"http://127.0.0.1:{{port}}{issuer_path.rstrip('/')}",
        "DEMO_OIDC_CLIENTS": json.dumps([c.metadata() for c in clients]),
    }
    env.pop("DEMO_OIDC_CLIENTS_FILE", None)
    if password is not None:
        env["DEMO_OIDC_PASSWORD"] = password
    proc: asyncio.subprocess.Process | None = None
    try:
        with log_path.open("wb") as log_file:
            proc = await asyncio.create_subprocess_exec(
                node,
                str(SERVER),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                cwd=workdir,
            )
        ready = await _wait_for_ready_line(proc, log_path, startup_timeout)
        issuer = ready["issuer"]
        discovery = await _wait_for_discovery(proc, issuer, startup_timeout)
        async with (
            aiohttp.ClientSession() as session,
            session.get(discovery["jwks_uri"]) as resp,
        ):
            resp.raise_for_status()
            jwks = await resp.json()
        accounts = {
            a["login"]: DemoAccount(
                login=a["login"],
                password=ready["password"],
                sub=a["sub"],
                name=a["name"],
                role=a["role"],
                kind=a["kind"],
                org_code=a["org_code"],
            )
            for a in ready["accounts"]
        }
        yield LocalOidcProvider(
            issuer=issuer,
            discovery=discovery,
            jwks=jwks,
            accounts=accounts,
            clients=tuple(clients),
            pid=proc.pid,
            log_path=log_path,
        )
    finally:
        if proc is not None:
            await _stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


async def _wait_for_ready_line(
    proc: asyncio.subprocess.Process, log_path: Path, limit: float
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def ready() -> bool:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith('{"event":"demo_oidc_ready"'):
                found.update(json.loads(line))
                return True
        if proc.returncode is not None:
            raise ProviderDidNotStart(f"the demo OpenID provider exited:\n{log_path.read_text()}")
        return False

    await wait_until(ready, limit=limit, what="the demo OpenID provider to listen")
    return found


async def _wait_for_discovery(
    proc: asyncio.subprocess.Process, issuer: str, limit: float
) -> dict[str, Any]:
    document: dict[str, Any] = {}
    url = f"{issuer}/.well-known/openid-configuration"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:

        async def answers() -> bool:
            if proc.returncode is not None:
                raise ProviderDidNotStart("the demo OpenID provider exited before it answered")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        document.update(await resp.json())
                        return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            return False

        await wait_until(answers, limit=limit, what="the demo OpenID provider's discovery document")
    return document


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()


# --- signing in without a browser -------------------------------------------------


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


@dataclass(frozen=True)
class AuthorizationRequest:
    """What a relying party keeps between sending the person off and their return."""

    url: str
    client_id: str
    redirect_uri: str
    state: str
    nonce: str
    pkce: Pkce


def authorization_request(
    provider: LocalOidcProvider,
    client: OidcClient,
    *,
    scope: str = DEFAULT_SCOPE,
    redirect_uri: str | None = None,
    **extra: str,
) -> AuthorizationRequest:
    """An authorization code request with PKCE (S256), a fresh state and nonce."""
    pkce = Pkce.new()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    redirect = redirect_uri or client.redirect_uri
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect,
        "scope": scope,
        "state": state,
        "nonce": nonce,
        "code_challenge": pkce.challenge,
        "code_challenge_method": "S256",
        **extra,
    }
    url = f"{provider.discovery['authorization_endpoint']}?{urlencode(params)}"
    return AuthorizationRequest(url, client.client_id, redirect, state, nonce, pkce)


@dataclass(frozen=True)
class AuthorizationResponse:
    """The person back at the client's redirect URI with a code."""

    request: AuthorizationRequest
    code: str
    state: str
    iss: str | None
    url: str


@dataclass(frozen=True)
class Tokens:
    id_token: str
    access_token: str
    id_token_claims: dict[str, Any]
    response: dict[str, Any] = field(repr=False)


class BrowserlessUserAgent:
    """A person's browser session with the provider, without a browser.

    One instance is one cookie jar: sign in, then sign out, in the same one.
    """

    def __init__(self, provider: LocalOidcProvider) -> None:
        self.provider = provider
        # unsafe=True: aiohttp keeps no cookies for IP-address hosts otherwise.
        self.session = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=10),
        )

    async def __aenter__(self) -> BrowserlessUserAgent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def authorize(
        self,
        client: OidcClient,
        account: DemoAccount | None,
        *,
        password: str | None = None,
        scope: str = DEFAULT_SCOPE,
        redirect_uri: str | None = None,
        **extra: str,
    ) -> AuthorizationResponse:
        """Start at the authorization endpoint and sign in as ``account`` on its form.

        ``account=None`` expects no form (a session already, or ``prompt=none``).
        Raises :class:`SignInRefused` if the form comes back, and
        :class:`AuthorizationFailed` if the provider answers the client with an error.
        """
        request = authorization_request(
            self.provider, client, scope=scope, redirect_uri=redirect_uri, **extra
        )
        url = request.url
        for _hop in range(12):
            if url.startswith(request.redirect_uri):
                return _authorization_response(request, url)
            async with self.session.get(url, allow_redirects=False) as resp:
                body = await resp.text()
                if resp.status in (302, 303):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                if resp.status != 200 or account is None:
                    raise AssertionError(f"GET {url} answered {resp.status}:\n{body[:2000]}")
            url = await self._submit_login(url, body, account, password)
        raise AssertionError("too many redirects on the way to the client")

    async def _submit_login(
        self, page_url: str, html: str, account: DemoAccount, password: str | None
    ) -> str:
        form = _only_form(html, page_url)
        fields = {
            **form.fields,
            "username": account.login,
            "password": account.password if password is None else password,
        }
        async with self.session.post(form.action, data=fields, allow_redirects=False) as resp:
            body = await resp.text()
            if resp.status == 200 and 'name="password"' in body:
                raise SignInRefused(f"the provider refused {account.login!r}'s sign-in")
            if resp.status not in (302, 303):
                raise AssertionError(f"POST {form.action} answered {resp.status}:\n{body[:2000]}")
            return urljoin(form.action, resp.headers["Location"])

    async def redeem(self, client: OidcClient, response: AuthorizationResponse) -> Tokens:
        """Exchange the code at the token endpoint as ``client`` does, and check the ID token."""
        return await redeem_code(
            self.provider, client, response.request, response.code, session=self.session
        )

    async def sign_in(self, client: OidcClient, account: DemoAccount, **kwargs: Any) -> Tokens:
        """:meth:`authorize` then :meth:`redeem`."""
        return await self.redeem(client, await self.authorize(client, account, **kwargs))

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        url = self.provider.discovery["userinfo_endpoint"]
        headers = {"Authorization": f"Bearer {access_token}"}
        async with self.session.get(url, headers=headers) as resp:
            resp.raise_for_status()
            info: dict[str, Any] = await resp.json()
            return info

    async def sign_out(
        self,
        id_token: str,
        *,
        post_logout_redirect_uri: str | None = None,
        state: str | None = None,
    ) -> str:
        """RP-initiated logout: confirm on the provider's page; return where it ends.

        With a ``post_logout_redirect_uri``, that URI (with ``state``) is returned
        without being fetched; without one, the URL of the provider's signed-out page.
        """
        params = {"id_token_hint": id_token}
        if post_logout_redirect_uri:
            params["post_logout_redirect_uri"] = post_logout_redirect_uri
        if state:
            params["state"] = state
        url = f"{self.provider.discovery['end_session_endpoint']}?{urlencode(params)}"
        async with self.session.get(url, allow_redirects=False) as resp:
            html = await resp.text()
            assert resp.status == 200, f"GET {url} answered {resp.status}:\n{html[:2000]}"
        form = _only_form(html, url)
        async with self.session.post(
            form.action, data={**form.fields, "logout": "yes"}, allow_redirects=False
        ) as resp:
            assert resp.status in (302, 303), f"logout answered {resp.status}"
            target = urljoin(form.action, resp.headers["Location"])
        if post_logout_redirect_uri and target.startswith(post_logout_redirect_uri):
            return target
        async with self.session.get(target, allow_redirects=False) as resp:
            assert resp.status == 200, f"GET {target} answered {resp.status}"
        return target


async def redeem_code(
    provider: LocalOidcProvider,
    client: OidcClient,
    request: AuthorizationRequest,
    code: str,
    *,
    session: aiohttp.ClientSession,
) -> Tokens:
    """What a relying party does at its callback: redeem ``code`` with the PKCE verifier
    and the client's authentication, then check the ID token (signature, iss, aud,
    exp, nonce). Raises :class:`AuthorizationFailed` with the token endpoint's error."""
    token_url = provider.discovery["token_endpoint"]
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.pkce.verifier,
    }
    headers = {}
    if client.token_endpoint_auth_method == "client_secret_basic":
        assert client.client_secret is not None
        headers["Authorization"] = basic_authorization(client.client_id, client.client_secret)
    elif client.token_endpoint_auth_method == "private_key_jwt":
        data |= {
            "client_id": client.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(client, token_url),
        }
    else:
        data["client_id"] = client.client_id
    async with session.post(token_url, data=data, headers=headers) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise AuthorizationFailed(body)
    claims = verify_id_token(
        provider, body["id_token"], client_id=client.client_id, nonce=request.nonce
    )
    return Tokens(body["id_token"], body["access_token"], claims, body)


async def sign_in_without_browser(
    provider: LocalOidcProvider, client: OidcClient, account: DemoAccount, **kwargs: Any
) -> Tokens:
    """A whole authorization code + PKCE sign-in, in a user agent of its own."""
    async with BrowserlessUserAgent(provider) as agent:
        return await agent.sign_in(client, account, **kwargs)


def basic_authorization(client_id: str, secret: str) -> str:
    """``client_secret_basic``: both form-encoded before base64 (RFC 6749 section 2.3.1)."""
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return f"Basic {base64.b64encode(pair).decode('ascii')}"


def client_assertion(client: OidcClient, audience: str) -> str:
    """An RFC 7523 client assertion signed with ``client``'s private key."""
    assert client.private_key is not None
    now = int(time.time())
    claims = {
        "iss": client.client_id,
        "sub": client.client_id,
        "aud": audience,
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + 120,
    }
    header = {"alg": "ES256", "kid": client.private_key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, client.private_key, algorithms=["ES256"])


def verify_id_token(
    provider: LocalOidcProvider, id_token: str, *, client_id: str, nonce: str | None
) -> dict[str, Any]:
    """Check an ID token's signature against the provider's JWKS, and its iss, aud and nonce."""
    keys = KeySet.import_key_set(dict(provider.jwks))
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    registry = jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": provider.issuer},
        aud={"essential": True, "value": client_id},
        exp={"essential": True},
        nonce={"essential": nonce is not None, "value": nonce},
    )
    registry.validate(token.claims)
    return dict(token.claims)


def _authorization_response(request: AuthorizationRequest, url: str) -> AuthorizationResponse:
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    if "error" in params:
        raise AuthorizationFailed(params)
    assert params.get("state") == request.state, "the state came back changed"
    return AuthorizationResponse(request, params["code"], params["state"], params.get("iss"), url)


@dataclass
class _Form:
    action: str
    fields: dict[str, str]


def _only_form(html: str, page_url: str) -> _Form:
    parser = _FormParser()
    parser.feed(html)
    assert len(parser.forms) == 1, f"expected one form on {page_url}, found {len(parser.forms)}"
    form = parser.forms[0]
    return _Form(urljoin(page_url, form.action), form.fields)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[_Form] = []
        self._open = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(_Form(a.get("action", ""), {}))
            self._open = True
        elif tag == "input" and self._open and a.get("name"):
            self.forms[-1].fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = False
