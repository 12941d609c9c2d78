"""Access tokens: RFC 7523 client assertions in, short-lived ES256 JWTs out (SPEC §6).

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

from cpis.errors import Unauthenticated
from cpis.model import Client, Principal, Role

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


_REGISTRIES = {
    alg: _Registry(algorithms=[alg], strict_check_header=False)
    for alg in (*CLIENT_ALGORITHMS, ISSUED_ALG)
}


class JwtTokenAuthority:
    """The :class:`cpis.ports.TokenAuthority`: checks client assertions, issues and verifies tokens.

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
        self._cache: dict[str, tuple[Principal, float]] = {}

    @property
    def signing_kid(self) -> str:
        return self._kid

    async def exchange(self, assertion: str, *, client: Client, token_url: str) -> str:
        """Check ``client``'s signed assertion and issue an access token for it."""
        if not client.active:
            raise Unauthenticated("client is not active")
        claims = _verify_assertion(assertion, client)
        now = self._clock.now()
        exp = _check_assertion_claims(claims, client=client, token_url=token_url, now=now)
        # Remember the jti until the assertion could no longer be accepted
        # anyway (exp plus the skew we allow), then the store may forget it.
        if not await self._use_jti(client.id, claims["jti"], exp + CLOCK_SKEW):
            raise Unauthenticated("client assertion jti has been used before")
        return self._issue(client, now)

    def _issue(self, client: Client, now: datetime) -> str:
        iat = int(now.timestamp())
        claims = {
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
        exp = _number(claims, "exp")
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
        principal = Principal(sub, role=Role(str(role)), ods_codes=tuple(ods), silent_only=silent)
        return principal, exp

    def public_jwks(self) -> dict[str, Any]:
        """The JWKS at /.well-known/jwks.json: the current key first, then previous ones."""
        keys = []
        for kid, key in self._verify_keys.items():
            jwk: dict[str, Any] = dict(key.as_dict(private=False))
            jwk.update(kid=kid, use="sig", alg=ISSUED_ALG)
            keys.append(jwk)
        return {"keys": keys}


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
        key = JWKRegistry.import_key(_public_jwk(jwk))
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
    exp_number = _number(claims, "exp")
    if exp_number is None:
        raise Unauthenticated("client assertion needs an exp")
    exp = datetime.fromtimestamp(exp_number, UTC)
    if exp + CLOCK_SKEW < now:
        raise Unauthenticated("client assertion has expired")
    if exp - now > MAX_ASSERTION_LIFETIME:
        raise Unauthenticated("client assertion exp is more than 5 minutes ahead")
    for name in ("iat", "nbf"):
        if name in claims:
            value = _number(claims, name)
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


def _public_jwk(jwk: Mapping[str, Any]) -> dict[str, Any]:
    """Only the public members: a registered JWKS that leaked a private part must not sign."""
    allowed = {"kty", "kid", "use", "alg", "key_ops", "n", "e", "crv", "x", "y"}
    return {k: v for k, v in jwk.items() if k in allowed}


def _number(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
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
