"""The web sign-in's ID token check (issue 12, item 2), through authlib as the adapter
uses it: only a token signed by the issuer's key, for this client, from this issuer,
unexpired and with the sign-in's nonce is accepted (OpenID Connect Core §3.1.3.7)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from authlib.integrations.base_client import OAuthError
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from cpis.adapters.oidc_login import _RelyingParty, verified_claims
from cpis.errors import SignInFailed
from cpis.model.web import OrgKind, SignInConfig

ISSUER = "https://idp.example/tenant"
CONFIG = SignInConfig(org_ods="XDM01", kind=OrgKind.LA, issuer=ISSUER, client_id="cpis-web")
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
OTHER_KEY = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})


def _party() -> _RelyingParty:
    # Metadata given, not discovered: authlib reads the keys from it.
    return _RelyingParty(
        framework=None,
        client_id=CONFIG.client_id,
        issuer=ISSUER,
        jwks={"keys": [KEY.as_dict(private=False)]},
        id_token_signing_alg_values_supported=["RS256"],
    )


def _token(key: RSAKey = KEY, alg: str = "RS256", **changes: Any) -> dict[str, str]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "demo-la-0001",
        "aud": CONFIG.client_id,
        "exp": now + 300,
        "iat": now,
        "nonce": "the-nonce",
        "roles": ["caseworker"],
    }
    claims.update(changes)
    claims = {k: v for k, v in claims.items() if v is not None}
    return {"id_token": jwt.encode({"alg": alg, "kid": "k1"}, claims, key)}


async def test_a_good_id_token_gives_its_claims() -> None:
    claims = await verified_claims(_party(), CONFIG, _token(), nonce="the-nonce")
    assert claims["sub"] == "demo-la-0001" and claims["roles"] == ["caseworker"]


@pytest.mark.parametrize(
    "token",
    [
        _token(aud="another-client"),
        _token(iss="https://idp.example/other-tenant"),
        _token(exp=int(time.time()) - 3600),
        _token(nonce="another-nonce"),
        _token(nonce=None),
        _token(sub=None),
        _token(key=OTHER_KEY),
    ],
    ids=["audience", "issuer", "expired", "nonce", "no-nonce", "no-sub", "signature"],
)
async def test_an_id_token_that_is_wrong_in_any_way_is_refused(token: dict[str, str]) -> None:
    with pytest.raises((OAuthError, JoseError)):
        await verified_claims(_party(), CONFIG, token, nonce="the-nonce")


async def test_an_unsigned_id_token_is_refused() -> None:
    header = "eyJhbGciOiJub25lIn0"  # {"alg":"none"}
    body = _token()["id_token"].split(".")[1]
    with pytest.raises((OAuthError, JoseError)):
        await verified_claims(
            _party(), CONFIG, {"id_token": f"{header}.{body}."}, nonce="the-nonce"
        )


async def test_a_token_response_without_an_id_token_is_refused() -> None:
    with pytest.raises(SignInFailed):
        await verified_claims(_party(), CONFIG, {"access_token": "x"}, nonce="the-nonce")
