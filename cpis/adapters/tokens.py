"""Access tokens: RFC 7523 client assertions in, short-lived ES256 JWTs out (SPEC §6).

Two grants. ``client_credentials`` gives an application-restricted token: the
client names its user in the ``NHSD-End-User-*`` headers. Token exchange
(RFC 8693) of a user's NHS CIS2 ID token, checked by
:mod:`cpis.adapters.cis2`, gives a user-restricted token carrying that user,
their selected role and its organisation (a ``user`` claim), so lookups need
no user headers and can never name another organisation.

The assertion rules are those of the NHS England API platform's "signed JWT
authentication", so an ED system already integrated there needs no new code:
``iss`` = ``sub`` = client id, ``aud`` = our token URL, a ``jti`` never seen
before, ``exp`` at most five minutes ahead, signed RS512, ES256, ES384 or
EdDSA with a key the client registered (its JWKS, chosen by ``kid``).

Everything about the token is checked here with an explicit allow-list before
any signature maths, so ``alg: none``, HMAC with a public key as the secret
and key-type confusion are refused by construction, not by library defaults.
Failures raise :class:`~cpis.errors.Unauthenticated` with a short reason that
never quotes the token.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws
from joserfc.errors import JoseError, UnsupportedAlgorithmError
from joserfc.jwa import JWSAlgModel
from joserfc.jwk import ECKey, JWKRegistry, Key, OKPKey, RSAKey

from cpis.errors import Forbidden, Unauthenticated
from cpis.model import Client, Principal, Role, Viewer
from cpis.ports.tokens import Jwks

CLIENT_ALGORITHMS = frozenset({"RS512", "ES256", "ES384", "EdDSA"})
ISSUED_ALG = "ES256"
CLOCK_SKEW = timedelta(seconds=30)
MAX_ASSERTION_LIFETIME = timedelta(minutes=5)
# Generous for a JWT, small enough that a hostile caller cannot make us parse
# megabytes of base64 per request.
_MAX_TOKEN_CHARS = 8192
_CACHE_MAX = 10_000
_ROLES = frozenset(role.value for role in Role)

ClientAlg = Literal["RS512", "ES256", "ES384", "EdDSA"]
UseJti = Callable[[str, str, datetime], Awaitable[bool]]
# (ID token, the client it must be for) -> the person it vouches for
VerifyIdToken = Callable[[str, Client], Awaitable[Viewer]]
_VIEWER_FIELDS = (
    "user_id",
    "name",
    "org_ods",
    "org_name",
    "role_profile_id",
    "role_code",
    "role_name",
)


class _Clock(Protocol):
    def now(self) -> datetime: ...


class _Registry(jws.JWSRegistry):
    """A JWS registry that allows exactly the algorithms it is given, silently.

    joserfc warns (SecurityWarning) on every use of ``EdDSA`` because RFC 9864
    deprecates the polymorphic name in favour of ``Ed25519``; the NHS England
    platform still specifies ``EdDSA``, and a warning per request is noise
    (and an error under the test suite's ``filterwarnings = error``).
    """

    def get_alg(self, name: str) -> JWSAlgModel:
        if not self.allowed or name not in self.allowed:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not allowed")
        return self.algorithms[name]


# Identity providers sign ID tokens with RSA or ECDSA (CIS2: RS256); never "none" or HMAC.
ID_TOKEN_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)

_REGISTRIES = {
    alg: _Registry(algorithms=[alg], strict_check_header=False)
    for alg in (*CLIENT_ALGORITHMS, ISSUED_ALG, *ID_TOKEN_ALGORITHMS)
}


def registry_for(alg: str) -> jws.JWSRegistry:
    """A JWS registry that accepts exactly ``alg`` (one of the algorithms named here)."""
    return _REGISTRIES[alg]


class JwtTokenAuthority:
    """The :class:`cpis.ports.tokens.TokenAuthority`: checks client assertions, issues and
    verifies tokens.

    ``previous_keys`` are public keys of signing keys rotated out: they are
    published and still verify tokens issued before the rotation, but never sign.
    """

    def __init__(
        self,
        *,
        signing_key: ec.EllipticCurvePrivateKey,
        previous_keys: Sequence[ec.EllipticCurvePublicKey] = (),
        issuer: str,
        ttl_seconds: int,
        use_jti: UseJti,
        clock: _Clock,
        verify_id_token: VerifyIdToken | None = None,
    ) -> None:
        self._signing_key = ECKey.import_key(signing_key)
        self._kid = self._signing_key.thumbprint()
        self._verify_keys: dict[str, ECKey] = {
            self._kid: ECKey.import_key(signing_key.public_key())
        }
        for public in previous_keys:
            key = ECKey.import_key(public)
            self._verify_keys.setdefault(key.thumbprint(), key)
        self._issuer = issuer
        self._ttl = timedelta(seconds=ttl_seconds)
        self._use_jti = use_jti
        self._clock = clock
        self._verify_id_token = verify_id_token
        self._cache: dict[str, tuple[Principal, float]] = {}

    @property
    def signing_kid(self) -> str:
        return self._kid

    async def exchange(self, assertion: str, *, client: Client, token_url: str) -> str:
        """Check ``client``'s signed assertion and issue an access token for it."""
        jti, exp = self._check_client(assertion, client=client, token_url=token_url)
        await self._spend_jti(client, jti, exp)
        return self._issue(client, self._clock.now())

    async def exchange_id_token(
        self, assertion: str, *, id_token: str, client: Client, token_url: str
    ) -> str:
        """RFC 8693: ``client``'s assertion and its user's CIS2 ID token for a user-restricted
        access token. Raises :class:`Forbidden` for a client that may not exchange tokens and
        :class:`~cpis.errors.InvalidGrant` for an ID token that is not acceptable."""
        jti, exp = self._check_client(assertion, client=client, token_url=token_url)
        if self._verify_id_token is None:
            raise Forbidden("this service trusts no identity provider (CPIS_CIS2_ISSUERS)")
        if client.role is not Role.HEALTH or not client.cis2_client_id:
            raise Forbidden("this client is not registered to exchange its users' ID tokens")
        viewer = await self._verify_id_token(id_token, client)
        await self._spend_jti(client, jti, exp)
        return self._issue(client, self._clock.now(), viewer)

    def _check_client(
        self, assertion: str, *, client: Client, token_url: str
    ) -> tuple[str, datetime]:
        """The assertion's jti and exp, once its signature and claims are right."""
        if not client.active:
            raise Unauthenticated("client is not active")
        claims = _verify_assertion(assertion, client)
        exp = _check_assertion_claims(
            claims, client=client, token_url=token_url, now=self._clock.now()
        )
        return claims["jti"], exp

    async def _spend_jti(self, client: Client, jti: str, exp: datetime) -> None:
        # Remember the jti until the assertion could no longer be accepted
        # anyway (exp plus the skew we allow), then the store may forget it.
        if not await self._use_jti(client.id, jti, exp + CLOCK_SKEW):
            raise Unauthenticated("client assertion jti has been used before")

    def _issue(self, client: Client, now: datetime, viewer: Viewer | None = None) -> str:
        iat = int(now.timestamp())
        claims: dict[str, Any] = {
            "iss": self._issuer,
            "sub": client.id,
            "aud": self._issuer,
            "iat": iat,
            "exp": iat + int(self._ttl.total_seconds()),
            "jti": uuid.uuid4().hex,
            "role": client.role.value,
            "ods": list(client.ods_codes),
            "silent": client.silent_only,
        }
        if viewer is not None:
            claims["user"] = {
                k: getattr(viewer, k) for k in _VIEWER_FIELDS if getattr(viewer, k) is not None
            }
        header = {"alg": ISSUED_ALG, "kid": self._kid, "typ": "JWT"}
        return jws.serialize_compact(
            header, _json(claims), self._signing_key, registry=_REGISTRIES[ISSUED_ALG]
        )

    def verify(self, token: str) -> Principal:
        """Check one of our access tokens; cached until its exp, so repeats cost a dict lookup."""
        now = self._clock.now().timestamp()
        cached = self._cache.get(token)
        if cached is not None:
            principal, exp = cached
            if now > exp + CLOCK_SKEW.total_seconds():
                del self._cache[token]
                raise Unauthenticated("access token expired")
            return principal
        principal, exp = self._verify_uncached(token, now)
        if len(self._cache) >= _CACHE_MAX:
            # Oldest first: insertion order roughly follows expiry, and a
            # miss only costs one signature check.
            del self._cache[next(iter(self._cache))]
        self._cache[token] = (principal, exp)
        return principal

    def _verify_uncached(self, token: str, now: float) -> tuple[Principal, float]:
        invalid = Unauthenticated("access token invalid")
        if not isinstance(token, str) or len(token) > _MAX_TOKEN_CHARS:
            raise invalid
        try:
            obj = jws.extract_compact(token.encode("ascii"))
            header = obj.headers()
            if header.get("alg") != ISSUED_ALG:
                raise invalid
            kid = header.get("kid")
            key = self._verify_keys.get(kid) if isinstance(kid, str) else None
            if key is None:
                raise invalid
            if not jws.validate_compact(obj, key, registry=_REGISTRIES[ISSUED_ALG]):
                raise invalid
            claims = json.loads(obj.payload)
        except (JoseError, ValueError, TypeError, UnicodeError):
            raise invalid from None
        if not isinstance(claims, dict):
            raise invalid
        exp = claim_number(claims, "exp")
        if claims.get("iss") != self._issuer or claims.get("aud") != self._issuer or exp is None:
            raise invalid
        if now > exp + CLOCK_SKEW.total_seconds():
            raise Unauthenticated("access token expired")
        sub, role, ods, silent = (claims.get(k) for k in ("sub", "role", "ods", "silent"))
        if (
            not isinstance(sub, str)
            or role not in _ROLES
            or not isinstance(ods, list)
            or not all(isinstance(code, str) for code in ods)
            or not isinstance(silent, bool)
        ):
            raise invalid
        viewer = _viewer_claim(claims.get("user"), ods)
        principal = Principal(
            sub, role=Role(str(role)), ods_codes=tuple(ods), silent_only=silent, viewer=viewer
        )
        return principal, exp

    def public_jwks(self) -> Jwks:
        """The JWKS at /.well-known/jwks.json: the current key first, then previous ones."""
        keys = []
        for kid, key in self._verify_keys.items():
            jwk: dict[str, str | list[str]] = dict(key.as_dict(private=False))
            jwk.update(kid=kid, use="sig", alg=ISSUED_ALG)
            keys.append(jwk)
        return {"keys": keys}


def _viewer_claim(raw: object, ods: list[str]) -> Viewer | None:
    """The ``user`` claim of a user-restricted token, or None for an application-restricted one.

    The token is ours and its signature already checked; the shape is checked
    anyway, since a malformed claim must never become a half-known user.
    """
    if raw is None:
        return None
    invalid = Unauthenticated("access token invalid")
    if not isinstance(raw, dict) or set(raw) - set(_VIEWER_FIELDS):
        raise invalid
    if not all(isinstance(v, str) for v in raw.values()):
        raise invalid
    if not all(k in raw for k in ("user_id", "name", "org_ods")) or raw["org_ods"] not in ods:
        raise invalid
    return Viewer(**raw)


def _verify_assertion(assertion: str, client: Client) -> dict[str, Any]:
    """Check the assertion's header and signature against the client's JWKS."""
    if not isinstance(assertion, str) or len(assertion) > _MAX_TOKEN_CHARS:
        raise Unauthenticated("client assertion is malformed")
    try:
        obj = jws.extract_compact(assertion.encode("ascii"))
        header = dict(obj.headers())
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise Unauthenticated("client assertion is malformed") from None
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in CLIENT_ALGORITHMS:
        raise Unauthenticated("client assertion alg must be RS512, ES256, ES384 or EdDSA")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise Unauthenticated("client assertion has no kid")
    jwk = _find_jwk(client.jwks, kid)
    if jwk is None:
        raise Unauthenticated("client assertion kid is not registered")
    try:
        key = JWKRegistry.import_key(public_jwk(jwk))
        valid = jws.validate_compact(obj, key, registry=_REGISTRIES[alg])
    except (JoseError, ValueError, TypeError):
        # Includes a key of the wrong type for alg (an RSA kid with ES256, say).
        raise Unauthenticated("client assertion signature is invalid") from None
    if not valid:
        raise Unauthenticated("client assertion signature is invalid")
    try:
        claims = json.loads(obj.payload)
    except ValueError:
        raise Unauthenticated("client assertion is malformed") from None
    if not isinstance(claims, dict):
        raise Unauthenticated("client assertion is malformed")
    return claims


def _check_assertion_claims(
    claims: Mapping[str, Any], *, client: Client, token_url: str, now: datetime
) -> datetime:
    """Check the RFC 7523 claims; returns exp as a datetime."""
    if claims.get("iss") != client.id or claims.get("sub") != client.id:
        raise Unauthenticated("client assertion iss and sub must be the client id")
    aud = claims.get("aud")
    if aud != token_url and not (isinstance(aud, list) and aud == [token_url]):
        raise Unauthenticated("client assertion aud must be the token URL")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 256:
        raise Unauthenticated("client assertion needs a jti")
    exp_number = claim_number(claims, "exp")
    if exp_number is None:
        raise Unauthenticated("client assertion needs an exp")
    exp = datetime.fromtimestamp(exp_number, UTC)
    if exp + CLOCK_SKEW < now:
        raise Unauthenticated("client assertion has expired")
    if exp - now > MAX_ASSERTION_LIFETIME:
        raise Unauthenticated("client assertion exp is more than 5 minutes ahead")
    for name in ("iat", "nbf"):
        if name in claims:
            value = claim_number(claims, name)
            if value is None:
                raise Unauthenticated(f"client assertion {name} is not a number")
            if datetime.fromtimestamp(value, UTC) > now + CLOCK_SKEW:
                raise Unauthenticated(f"client assertion {name} is in the future")
    return exp


def _find_jwk(jwks: Mapping[str, object], kid: str) -> Mapping[str, Any] | None:
    keys = jwks.get("keys")
    if not isinstance(keys, list):
        return None
    for jwk in keys:
        if isinstance(jwk, dict) and jwk.get("kid") == kid:
            return jwk
    return None


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Only the public members: a registered JWKS that leaked a private part must not sign."""
    allowed = {"kty", "kid", "use", "alg", "key_ops", "n", "e", "crv", "x", "y"}
    return {k: v for k, v in jwk.items() if k in allowed}


# NumericDate claims beyond this (the year 5138) are no time a token can mean;
# reading them as None keeps huge numbers (1e300, 10**30) from overflowing
# the date arithmetic below.
_MAX_NUMERIC_DATE = 10**11


def claim_number(claims: Mapping[str, Any], name: str) -> float | None:
    """A NumericDate claim (RFC 7519 §2) as seconds, or None if absent or not a usable time."""
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not -_MAX_NUMERIC_DATE < value < _MAX_NUMERIC_DATE:  # also false for NaN
        return None
    return float(value)


def _json(claims: Mapping[str, Any]) -> bytes:
    return json.dumps(claims, separators=(",", ":")).encode("utf-8")


# --- for clients, tests and the CLI -------------------------------------------------------


def make_client_assertion(
    private_key: bytes | str | Mapping[str, Any],
    *,
    client_id: str,
    token_url: str,
    kid: str,
    alg: ClientAlg,
    lifetime: timedelta = timedelta(minutes=4),
    now: datetime | None = None,
) -> str:
    """Sign an RFC 7523 client assertion as a registered client would.

    ``private_key`` is a PEM private key (bytes or str) or a private JWK dict.
    The default lifetime leaves a minute of margin under the 5-minute limit.
    """
    if alg not in CLIENT_ALGORITHMS:
        raise ValueError(f"alg must be one of {sorted(CLIENT_ALGORITHMS)}")
    key = _import_private(private_key)
    issued = now or datetime.now(UTC)
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "jti": str(uuid.uuid4()),
        "iat": int(issued.timestamp()),
        "exp": int((issued + lifetime).timestamp()),
    }
    header = {"alg": alg, "kid": kid, "typ": "JWT"}
    return jws.serialize_compact(header, _json(claims), key, registry=_REGISTRIES[alg])


def generate_client_key(alg: ClientAlg = "RS512", *, kid: str) -> tuple[bytes, dict[str, Any]]:
    """A new client key pair: (unencrypted PKCS#8 PEM private key, public JWKS to register).

    RSA keys are 4096 bits, as the NHS England platform requires for RS512.
    """
    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if alg == "RS512":
        private = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "ES384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif alg == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"alg must be one of {sorted(CLIENT_ALGORITHMS)}")
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    jwk: dict[str, Any] = dict(_import_private(pem).as_dict(private=False))
    jwk.update(kid=kid, use="sig", alg=alg)
    return pem, {"keys": [jwk]}


def _import_private(private_key: bytes | str | Mapping[str, Any]) -> Key:
    if isinstance(private_key, Mapping):
        return JWKRegistry.import_key(dict(private_key))
    pem = private_key.encode("ascii") if isinstance(private_key, str) else private_key
    loaded = serialization.load_pem_private_key(pem, password=None)
    if isinstance(loaded, rsa.RSAPrivateKey):
        return RSAKey.import_key(loaded)
    if isinstance(loaded, ec.EllipticCurvePrivateKey):
        return ECKey.import_key(loaded)
    if isinstance(loaded, ed25519.Ed25519PrivateKey):
        return OKPKey.import_key(loaded)
    raise ValueError("private key must be RSA, EC or Ed25519")
