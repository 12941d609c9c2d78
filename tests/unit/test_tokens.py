"""JwtTokenAuthority: RFC 7523 client assertions in, ES256 access tokens out."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey

from cpis.adapters.tokens import (
    JwtTokenAuthority,
    generate_client_key,
    make_client_assertion,
)
from cpis.errors import Forbidden, Unauthenticated
from cpis.model import Client, Principal, Role, Viewer

ISSUER = "https://cpis.example.test"
TOKEN_URL = f"{ISSUER}/oauth2/token"
START = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def advance(self, **kw: float) -> None:
        self.current += timedelta(**kw)


class FakeJtiStore:
    """The database's replay store, in memory: False the second time a jti is offered."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], datetime] = {}

    async def __call__(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        if (client_id, jti) in self.seen:
            return False
        self.seen[(client_id, jti)] = expires_at
        return True


@pytest.fixture(scope="module")
def client_keys() -> dict[str, tuple[bytes, dict[str, Any]]]:
    """One key pair per client algorithm (RSA 4096 is slow, so made once)."""
    return {
        alg: generate_client_key(alg, kid=f"{alg}-1")
        for alg in ("RS512", "ES256", "ES384", "EdDSA")
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def jti_store() -> FakeJtiStore:
    return FakeJtiStore()


@pytest.fixture
def signing_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def authority(
    signing_key: ec.EllipticCurvePrivateKey, clock: FakeClock, jti_store: FakeJtiStore
) -> JwtTokenAuthority:
    return JwtTokenAuthority(
        signing_key=signing_key, issuer=ISSUER, ttl_seconds=600, use_jti=jti_store, clock=clock
    )


def _client(keys: dict[str, tuple[bytes, dict[str, Any]]]) -> Client:
    return Client(
        id="ed-system-1",
        role=Role.HEALTH,
        ods_codes=("RX1", "RX2"),
        jwks={"keys": [jwk for _, jwks in keys.values() for jwk in jwks["keys"]]},
        silent_only=False,
    )


def _assertion(
    keys: dict[str, tuple[bytes, dict[str, Any]]],
    alg: str = "ES256",
    *,
    client_id: str = "ed-system-1",
    token_url: str = TOKEN_URL,
    **kw: Any,
) -> str:
    pem, _ = keys[alg]
    return make_client_assertion(
        pem,
        client_id=client_id,
        token_url=token_url,
        kid=f"{alg}-1",
        alg=alg,  # type: ignore[arg-type]
        now=kw.pop("now", START),
        **kw,
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(START.timestamp())
    claims: dict[str, Any] = {
        "iss": "ed-system-1",
        "sub": "ed-system-1",
        "aud": TOKEN_URL,
        "jti": "a-unique-id",
        "iat": now,
        "exp": now + 240,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _es256(pem: bytes, claims: dict[str, Any], kid: str = "ES256-1") -> str:
    """Sign arbitrary claims, to make assertions make_client_assertion would not."""
    key = ECKey.import_key(serialization.load_pem_private_key(pem, password=None))  # type: ignore[arg-type]
    header = {"alg": "ES256", "kid": kid, "typ": "JWT"}
    return jws.serialize_compact(header, json.dumps(claims), key, algorithms=["ES256"])


async def _refused(authority: JwtTokenAuthority, assertion: str, client: Client) -> str:
    with pytest.raises(Unauthenticated) as caught:
        await authority.exchange(assertion, client=client, token_url=TOKEN_URL)
    message = caught.value.message
    assert assertion not in message
    for part in assertion.split("."):
        assert not part or part not in message
    return message


@pytest.mark.parametrize("alg", ["RS512", "ES256", "ES384", "EdDSA"])
async def test_exchange_issues_a_token_for_each_platform_algorithm(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]], alg: str
) -> None:
    """A well-formed assertion signed RS512, ES256, ES384 or EdDSA buys a token for the client."""
    client = _client(client_keys)
    token = await authority.exchange(
        _assertion(client_keys, alg), client=client, token_url=TOKEN_URL
    )
    assert authority.verify(token) == Principal(
        "ed-system-1", role=Role.HEALTH, ods_codes=("RX1", "RX2"), silent_only=False
    )


async def test_issued_token_claims_and_header(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """The access token is ES256 with our kid, for our issuer, and lives ttl seconds."""
    jwks = _client(client_keys).jwks
    client = Client(id="ed-system-1", role=Role.LA, ods_codes=("E09000033",), jwks=jwks)
    token = await authority.exchange(_assertion(client_keys), client=client, token_url=TOKEN_URL)
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    claims = json.loads(base64.urlsafe_b64decode(payload_b64 + "=="))
    assert header["alg"] == "ES256"
    assert header["kid"] == authority.signing_kid
    assert claims["iss"] == claims["aud"] == ISSUER
    assert claims["sub"] == "ed-system-1"
    assert claims["role"] == "la"
    assert claims["ods"] == ["E09000033"]
    assert claims["silent"] is False
    assert claims["exp"] - claims["iat"] == 600
    assert claims["jti"]


async def test_silent_only_client_token_says_so(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """A silent-read client's token carries silent=true into the Principal."""
    base = _client(client_keys)
    client = Client(
        id=base.id, role=base.role, ods_codes=base.ods_codes, jwks=base.jwks, silent_only=True
    )
    token = await authority.exchange(_assertion(client_keys), client=client, token_url=TOKEN_URL)
    assert authority.verify(token).silent_only is True


async def test_wrong_audience_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """An assertion made for another token endpoint cannot be replayed here."""
    assertion = _assertion(client_keys, token_url="https://elsewhere.example/oauth2/token")
    assert "aud" in await _refused(authority, assertion, _client(client_keys))


async def test_iss_must_equal_sub_and_the_client(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """iss and sub are both the client id; a mismatch is refused."""
    pem, _ = client_keys["ES256"]
    client = _client(client_keys)
    for claims in (_claims(sub="someone-else"), _claims(iss="someone-else"), _claims(sub=None)):
        assert "iss" in await _refused(authority, _es256(pem, claims), client)
    other = _assertion(client_keys, client_id="another-client")
    await _refused(authority, other, client)


async def test_expired_assertion_is_refused(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
) -> None:
    """An assertion past its exp (beyond 30 s of skew) is refused."""
    assertion = _assertion(client_keys)
    clock.advance(minutes=4, seconds=31)
    assert "expired" in await _refused(authority, assertion, _client(client_keys))


async def test_small_clock_skew_is_tolerated(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
) -> None:
    """Up to 30 s past exp, or an iat up to 30 s ahead, is accepted (clocks drift)."""
    pem, _ = client_keys["ES256"]
    client = _client(client_keys)
    clock.advance(minutes=4, seconds=20)
    await authority.exchange(_assertion(client_keys), client=client, token_url=TOKEN_URL)
    now = int(clock.now().timestamp())
    claims = _claims(jti="second", iat=now + 20, exp=now + 200)
    await authority.exchange(_es256(pem, claims), client=client, token_url=TOKEN_URL)


async def test_exp_more_than_five_minutes_ahead_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """Long-lived assertions are refused: the platform limit is 5 minutes."""
    assertion = _assertion(client_keys, lifetime=timedelta(minutes=10))
    assert "5 minutes" in await _refused(authority, assertion, _client(client_keys))


async def test_missing_exp_or_jti_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """exp and jti are required; without them replay protection cannot work."""
    pem, _ = client_keys["ES256"]
    client = _client(client_keys)
    assert "jti" in await _refused(authority, _es256(pem, _claims(jti=None)), client)
    assert "jti" in await _refused(authority, _es256(pem, _claims(jti="")), client)
    assert "exp" in await _refused(authority, _es256(pem, _claims(exp=None)), client)
    assert "exp" in await _refused(authority, _es256(pem, _claims(exp="soon")), client)


async def test_iat_in_the_future_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """An iat beyond the allowed skew means a broken or lying client clock."""
    pem, _ = client_keys["ES256"]
    claims = _claims(iat=int(START.timestamp()) + 120)
    assert "iat" in await _refused(authority, _es256(pem, claims), _client(client_keys))


async def test_replayed_jti_is_refused(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    jti_store: FakeJtiStore,
) -> None:
    """The same assertion works once; the store is told to remember it until exp + skew."""
    client = _client(client_keys)
    assertion = _assertion(client_keys)
    await authority.exchange(assertion, client=client, token_url=TOKEN_URL)
    assert "used before" in await _refused(authority, assertion, client)
    ((_, expires_at),) = jti_store.seen.items()
    assert expires_at == START + timedelta(minutes=4, seconds=30)


async def test_alg_none_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """An unsigned assertion (alg none) is refused before anything else is trusted."""
    header = _b64(json.dumps({"alg": "none", "kid": "ES256-1"}).encode())
    assertion = f"{header}.{_b64(json.dumps(_claims()).encode())}."
    assert "alg" in await _refused(authority, assertion, _client(client_keys))


async def test_hs256_with_the_public_key_as_secret_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """The classic key-confusion forgery (HMAC keyed with the public key) is refused."""
    pem, jwks = client_keys["RS512"]
    public_pem = (
        serialization.load_pem_private_key(pem, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    signing_input = (
        _b64(json.dumps({"alg": "HS256", "kid": "RS512-1", "typ": "JWT"}).encode())
        + "."
        + _b64(json.dumps(_claims()).encode())
    )
    for secret in (public_pem, json.dumps(jwks["keys"][0]).encode()):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        assertion = f"{signing_input}.{_b64(mac)}"
        assert "alg" in await _refused(authority, assertion, _client(client_keys))


async def test_alg_that_does_not_fit_the_kid_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """An allowed alg with a registered key of another type (ES256 on an RSA kid) fails."""
    pem, _ = client_keys["ES256"]
    assertion = _es256(pem, _claims(), kid="RS512-1")
    assert "signature" in await _refused(authority, assertion, _client(client_keys))


async def test_unknown_kid_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """A kid the client never registered is refused."""
    pem, _ = client_keys["ES256"]
    assertion = _es256(pem, _claims(), kid="not-registered")
    assert "kid" in await _refused(authority, assertion, _client(client_keys))


async def test_forged_signature_from_another_key_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """An assertion signed by a key the client does not hold, under its kid, is refused."""
    forger_pem, _ = generate_client_key("ES256", kid="ES256-1")
    assertion = _es256(forger_pem, _claims())
    assert "signature" in await _refused(authority, assertion, _client(client_keys))


async def test_tampered_payload_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """Changing the claims after signing (a longer exp, say) breaks the signature."""
    header, _, signature = _assertion(client_keys).split(".")
    claims = _claims(exp=int(START.timestamp()) + 200)
    assertion = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    assert "signature" in await _refused(authority, assertion, _client(client_keys))


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "é.é.é", "x" * 10_000])
async def test_malformed_assertions_are_refused(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    garbage: str,
) -> None:
    """Anything that is not a compact JWS is an Unauthenticated, never a crash."""
    with pytest.raises(Unauthenticated):
        await authority.exchange(garbage, client=_client(client_keys), token_url=TOKEN_URL)


async def test_inactive_client_is_refused(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """A deactivated client's valid assertion buys nothing."""
    base = _client(client_keys)
    client = Client(id=base.id, role=base.role, ods_codes=(), jwks=base.jwks, active=False)
    await _refused(authority, _assertion(client_keys), client)


async def test_verify_refuses_an_expired_token_even_when_cached(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
) -> None:
    """A token verified once is cached, but the cache still honours its exp."""
    token = await authority.exchange(
        _assertion(client_keys), client=_client(client_keys), token_url=TOKEN_URL
    )
    authority.verify(token)
    clock.advance(seconds=600 + 29)
    authority.verify(token)
    clock.advance(seconds=2)
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(token)
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(token)


async def test_verify_refuses_an_expired_token_never_seen(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
) -> None:
    """An uncached token past exp is expired, not just invalid (clients then re-authenticate)."""
    token = await authority.exchange(
        _assertion(client_keys), client=_client(client_keys), token_url=TOKEN_URL
    )
    clock.advance(hours=1)
    with pytest.raises(Unauthenticated, match="expired"):
        authority.verify(token)


async def test_verify_refuses_another_issuers_tokens(
    signing_key: ec.EllipticCurvePrivateKey,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
    authority: JwtTokenAuthority,
) -> None:
    """Tokens from another deployment are refused, whether its key differs or not."""
    client = _client(client_keys)
    for key in (signing_key, ec.generate_private_key(ec.SECP256R1())):
        other = JwtTokenAuthority(
            signing_key=key,
            issuer="https://other.example.test",
            ttl_seconds=600,
            use_jti=FakeJtiStore(),
            clock=clock,
        )
        token = await other.exchange(
            _assertion(client_keys, token_url=TOKEN_URL), client=client, token_url=TOKEN_URL
        )
        with pytest.raises(Unauthenticated, match="access token invalid"):
            authority.verify(token)


@pytest.mark.parametrize(
    "garbage",
    ["", "garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 20_000, "é"],
)
def test_verify_refuses_garbage(authority: JwtTokenAuthority, garbage: str) -> None:
    """Anything that is not one of our tokens is 'access token invalid', never a crash."""
    with pytest.raises(Unauthenticated, match="access token invalid"):
        authority.verify(garbage)


async def test_verify_refuses_tampered_token(
    authority: JwtTokenAuthority, client_keys: dict[str, tuple[bytes, dict[str, Any]]]
) -> None:
    """Raising one's own role in the token breaks its signature."""
    token = await authority.exchange(
        _assertion(client_keys), client=_client(client_keys), token_url=TOKEN_URL
    )
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["role"] = "admin"
    with pytest.raises(Unauthenticated, match="access token invalid"):
        authority.verify(f"{header}.{_b64(json.dumps(claims).encode())}.{signature}")


async def test_rotation_publishes_and_accepts_previous_keys(
    signing_key: ec.EllipticCurvePrivateKey,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
    authority: JwtTokenAuthority,
) -> None:
    """After a signing key rotation, tokens from the old key verify and both keys are published."""
    old_token = await authority.exchange(
        _assertion(client_keys), client=_client(client_keys), token_url=TOKEN_URL
    )
    rotated = JwtTokenAuthority(
        signing_key=ec.generate_private_key(ec.SECP256R1()),
        previous_keys=[signing_key.public_key()],
        issuer=ISSUER,
        ttl_seconds=600,
        use_jti=FakeJtiStore(),
        clock=clock,
    )
    assert rotated.verify(old_token).client_id == "ed-system-1"
    jwks = rotated.public_jwks()["keys"]
    assert [k["kid"] for k in jwks] == [rotated.signing_kid, authority.signing_kid]
    for jwk in jwks:
        assert jwk["use"] == "sig"
        assert jwk["alg"] == "ES256"
        assert jwk["kty"] == "EC"
        assert "d" not in jwk


def test_generate_client_key_gives_a_pem_and_a_public_jwks() -> None:
    """The CLI's --new-key output: a PKCS#8 private key and a JWKS with no private part."""
    pem, jwks = generate_client_key("ES256", kid="k1")
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    (jwk,) = jwks["keys"]
    assert jwk["kid"] == "k1"
    assert jwk["alg"] == "ES256"
    assert jwk["use"] == "sig"
    assert "d" not in jwk


@pytest.mark.parametrize(
    "name",
    ["exp", "iat", "nbf"],
)
@pytest.mark.parametrize("value", [1e300, 10**30, -(10**30), float("inf")], ids=str)
async def test_absurd_times_in_an_assertion_are_refused_not_a_crash(
    authority: JwtTokenAuthority,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    name: str,
    value: float,
) -> None:
    """exp, iat or nbf of 1e300, 10**30 or infinity: a 401 reason, never an OverflowError."""
    pem, _ = client_keys["ES256"]
    claims = _claims(**{name: value})
    if value == float("inf"):
        # JSON has no infinity; 1e999 is what a hostile client writes for it.
        raw = json.dumps({**claims, name: 0}).replace(f'"{name}": 0', f'"{name}": 1e999')
        key = ECKey.import_key(serialization.load_pem_private_key(pem, password=None))  # type: ignore[arg-type]
        assertion = jws.serialize_compact(
            {"alg": "ES256", "kid": "ES256-1"}, raw, key, algorithms=["ES256"]
        )
    else:
        assertion = _es256(pem, claims)
    await _refused(authority, assertion, _client(client_keys))


def _authority(
    signing_key: ec.EllipticCurvePrivateKey,
    clock: FakeClock,
    verify_id_token: Callable[[str, Client], Awaitable[Viewer]] | None = None,
) -> JwtTokenAuthority:
    return JwtTokenAuthority(
        signing_key=signing_key,
        issuer=ISSUER,
        ttl_seconds=600,
        use_jti=FakeJtiStore(),
        clock=clock,
        verify_id_token=verify_id_token,
    )


def _viewer_client(keys: dict[str, tuple[bytes, dict[str, Any]]]) -> Client:
    return dataclasses.replace(_client(keys), cis2_client_id="ed-system-1.cis2")


async def test_a_user_restricted_token_carries_the_user_role_and_organisation(
    signing_key: ec.EllipticCurvePrivateKey,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
) -> None:
    """Token exchange: the verified person comes back from verify() as the principal's viewer."""
    seen: list[tuple[str, str]] = []
    viewer = Viewer(
        user_id="555000000777",
        name="Robin Cardholder",
        org_ods="RX2",
        role_profile_id="555000000888",
        role_code="R8001",
        role_name="Nurse Access Role",
    )

    async def verify_id_token(id_token: str, client: Client) -> Viewer:
        seen.append((id_token, client.id))
        return viewer

    authority = _authority(signing_key, clock, verify_id_token)
    client = _viewer_client(client_keys)
    token = await authority.exchange_id_token(
        _assertion(client_keys), id_token="an.id.token", client=client, token_url=TOKEN_URL
    )
    assert seen == [("an.id.token", "ed-system-1")]
    principal = authority.verify(token)
    assert principal.viewer == viewer
    assert principal.ods_codes == ("RX1", "RX2")

    plain = await authority.exchange(_assertion(client_keys), client=client, token_url=TOKEN_URL)
    assert authority.verify(plain).viewer is None


async def test_only_health_clients_with_a_cis2_client_id_exchange_id_tokens(
    signing_key: ec.EllipticCurvePrivateKey,
    client_keys: dict[str, tuple[bytes, dict[str, Any]]],
    clock: FakeClock,
) -> None:
    """No CIS2 client id, an LA client, or no trusted issuer: Forbidden, and the ID token is
    never looked at."""

    async def verify_id_token(id_token: str, client: Client) -> Viewer:
        raise AssertionError("must not be asked")

    for verifier, client in (
        (verify_id_token, _client(client_keys)),
        (verify_id_token, dataclasses.replace(_viewer_client(client_keys), role=Role.LA)),
        (None, _viewer_client(client_keys)),
    ):
        authority = _authority(signing_key, clock, verifier)
        with pytest.raises(Forbidden):
            await authority.exchange_id_token(
                _assertion(client_keys), id_token="x.y.z", client=client, token_url=TOKEN_URL
            )


@pytest.mark.parametrize(
    "user",
    [
        "a string",
        {"user_id": "1", "name": "N"},
        {"user_id": "1", "name": "N", "org_ods": "ELSEWHERE"},
        {"user_id": "1", "name": "N", "org_ods": "RX1", "admin": "yes"},
        {"user_id": 1, "name": "N", "org_ods": "RX1"},
    ],
    ids=["not-object", "no-org", "org-not-the-clients", "unknown-field", "not-string"],
)
def test_a_malformed_user_claim_is_an_invalid_token(
    signing_key: ec.EllipticCurvePrivateKey, clock: FakeClock, user: object
) -> None:
    """Even correctly signed, a user claim of the wrong shape, or naming an organisation the
    token's client is not registered for, never becomes a half-known user."""
    authority = _authority(signing_key, clock)
    now = int(START.timestamp())
    claims = {
        "iss": ISSUER,
        "sub": "ed-system-1",
        "aud": ISSUER,
        "iat": now,
        "exp": now + 600,
        "jti": "j",
        "role": "health",
        "ods": ["RX1"],
        "silent": False,
        "user": user,
    }
    key = ECKey.import_key(signing_key)
    token = jws.serialize_compact(
        {"alg": "ES256", "kid": authority.signing_kid},
        json.dumps(claims),
        key,
        algorithms=["ES256"],
    )
    with pytest.raises(Unauthenticated, match="access token invalid"):
        authority.verify(token)
