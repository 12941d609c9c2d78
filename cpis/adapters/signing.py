"""Detached JWS signatures over notification bodies (SPEC §5: bodies are signed).

Every request the service sends to an LA's endpoint carries, in the
``X-JWS-Signature`` header, a compact JWS with its payload left out
(``<header>..<signature>``, RFC 7515 Appendix F) over the exact body bytes.
The key is the service's ES256 signing key, the one that signs access tokens;
its ``kid`` is the key's RFC 7638 thumbprint, and the public half is published,
with the keys rotated out before it, at ``/.well-known/jwks.json``.

Why standard detached content and not RFC 7797 (``"b64": false`` with
``"crit": ["b64"]``): the verifier then needs nothing beyond a plain JWS
library, in any language, by putting ``base64url(body)`` back between the
dots. RFC 7797 needs a library that implements ``crit`` and unencoded
payloads, which many common ones (PyJWT, .NET's IdentityModel) do not; UK
Open Banking's ``x-jws-signature`` started with ``b64: false`` and later
dropped it for exactly that interoperability cost. Base64url-encoding a
notification body costs microseconds.

Why ``X-JWS-Signature``: the name UK Open Banking and other webhook senders
already use for a detached JWS in a header, so LA developers may have seen it.

The protected header is ``{"alg": "ES256", "kid": ..., "typ": "JOSE"}``; no
time claim, because the signed body's own ``Bundle.timestamp`` is the time
and a receiver that keeps seen notification ids needs no more against replay.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

SIGNATURE_HEADER = "X-JWS-Signature"
ALG = "ES256"
_REGISTRY = jws.JWSRegistry(algorithms=[ALG], strict_check_header=False)
_PUBLIC_MEMBERS = {"kty", "kid", "use", "alg", "key_ops", "crv", "x", "y"}
_MAX_SIGNATURE_CHARS = 2048


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class DetachedSigner:
    """Signs notification bodies with the service's current signing key."""

    def __init__(self, signing_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = ECKey.import_key(signing_key)
        # The same kid JwtTokenAuthority publishes for this key.
        self._kid = self._key.thumbprint()

    @property
    def kid(self) -> str:
        return self._kid

    def sign_detached(self, body: bytes) -> str:
        """``<protected header>..<signature>`` over ``body`` exactly as it will be sent."""
        header = {"alg": ALG, "kid": self._kid, "typ": "JOSE"}
        compact = jws.serialize_compact(header, body, self._key, registry=_REGISTRY)
        protected, _payload, signature = compact.split(".")
        return f"{protected}..{signature}"


def verify_detached(body: bytes, signature: str, jwks: Mapping[str, Any]) -> bool:
    """True if ``signature`` is a detached ES256 JWS over ``body`` by a key in ``jwks``.

    For tests, and the reference for LA developers (docs/notifications.md).
    Anything malformed, an unknown ``kid``, another ``alg``, or a header that
    asks for RFC 7797 unencoded payloads is simply not valid.
    """
    if not isinstance(signature, str) or len(signature) > _MAX_SIGNATURE_CHARS:
        return False
    parts = signature.split(".")
    if len(parts) != 3 or parts[1] != "":
        return False
    protected, _, sig = parts
    try:
        header = json.loads(_unb64url(protected))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return False
    if not isinstance(header, dict) or header.get("alg") != ALG:
        return False
    if "b64" in header or "crit" in header:
        return False
    kid = header.get("kid")
    keys = jwks.get("keys")
    if not isinstance(kid, str) or not isinstance(keys, list):
        return False
    jwk = next((k for k in keys if isinstance(k, dict) and k.get("kid") == kid), None)
    if jwk is None or jwk.get("kty") != "EC":
        return False
    try:
        key = ECKey.import_key({k: v for k, v in jwk.items() if k in _PUBLIC_MEMBERS})
        obj = jws.extract_compact(f"{protected}.{_b64url(body)}.{sig}".encode("ascii"))
        return bool(jws.validate_compact(obj, key, registry=_REGISTRY))
    except (JoseError, ValueError, TypeError):
        return False
