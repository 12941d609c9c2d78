"""A stand-in for NHS CIS2 for the demo and the tests: an issuer of CIS2-shaped ID tokens.

It publishes what a relying party reads from an OpenID provider, as CIS2 does
(``/.well-known/openid-configuration`` naming its ``jwks_uri``, and the
public key there), and signs ID tokens with CIS2's claims (see
:mod:`cpis.adapters.cis2` for which are read, and where CIS2 really puts
them). It has no sign-in page: ``cpis demo-id-token`` (or a test) asks it for
a token directly, as if a user had just signed in with a smartcard.

``cpis serve --demo`` serves it at ``{CPIS_PUBLIC_BASE_URL}/demo/cis2`` and
trusts it; nothing else ever does, and without ``--demo`` it is not served.
Everything it vouches for is synthetic.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.jwk import RSAKey

from cpis.adapters.tokens import registry_for

ALG = "RS256"  # what CIS2 signs its ID tokens with
DEMO_PATH = "/demo/cis2"
DEMO_CIS2_CLIENT_ID = "demo-ed.apps.national"
DEMO_NURSE = {
    "user_id": "555000000101",
    "name": "Casey Demonurse",
    "role_profile_id": "555000000201",
}
NURSE_ROLE_CODE = "S8000:G8000:R8001"
NURSE_ROLE_NAME = '"Clinical":"Clinical Provision":"Nurse Access Role"'


def new_key() -> bytes:
    """A new RSA signing key, as PEM (unencrypted PKCS#8)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def key_file(data_dir: Path) -> Path:
    """Where ``cpis serve --demo`` keeps the demo issuer's key (made on first start)."""
    return data_dir / "demo" / "cis2-issuer.pem"


def load_or_create_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    pem = new_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    path.chmod(0o600)
    return pem


class DemoIssuer:
    """One issuer: its URL, its signing key, its discovery document and key set."""

    def __init__(self, issuer: str, key_pem: bytes) -> None:
        self.issuer = issuer.rstrip("/")
        loaded = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(loaded, rsa.RSAPrivateKey):
            raise ValueError("the demo issuer's key must be RSA")
        self._key = RSAKey.import_key(loaded)
        self.kid = self._key.thumbprint()

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [ALG],
            "scopes_supported": [
                "openid",
                "profile",
                "nationalrbacaccess",
                "associatedorgs",
                "selectedrole",
            ],
            "claims_supported": [
                "sub",
                "name",
                "given_name",
                "family_name",
                "nhsid_useruid",
                "selected_roleid",
                "nhsid_nrbac_roles",
                "nhsid_user_orgs",
                "id_assurance_level",
                "authentication_assurance_level",
            ],
        }

    def jwks(self) -> dict[str, Any]:
        jwk = dict(self._key.as_dict(private=False))
        jwk.update(kid=self.kid, use="sig", alg=ALG)
        return {"keys": [jwk]}

    def id_token(
        self, claims: Mapping[str, Any], *, header: Mapping[str, Any] | None = None
    ) -> str:
        """Sign ``claims`` as this issuer (no defaults added: say every claim you mean)."""
        head = {"alg": ALG, "kid": self.kid, "typ": "JWT", **(header or {})}
        body = json.dumps(dict(claims), separators=(",", ":")).encode()
        return jws.serialize_compact(head, body, self._key, registry=registry_for(ALG))

    def clinician_claims(
        self,
        *,
        audience: str,
        user_id: str,
        name: str,
        role_profile_id: str,
        org_code: str,
        org_name: str,
        role_code: str = NURSE_ROLE_CODE,
        role_name: str = NURSE_ROLE_NAME,
        lifetime_seconds: int = 600,
        now: float | None = None,
    ) -> dict[str, Any]:
        """CIS2's claims for a smartcard user who selected one role at ``org_code``.

        The role details (``nhsid_nrbac_roles``, ``nhsid_user_orgs``) and the
        name are in the ID token here; CIS2 itself returns them from userinfo.
        """
        issued = int(time.time() if now is None else now)
        return {
            "iss": self.issuer,
            "sub": user_id,
            "aud": audience,
            "azp": audience,
            "iat": issued,
            "auth_time": issued,
            "exp": issued + lifetime_seconds,
            "jti": str(uuid.uuid4()),
            "acr": "AAL3_ANY",
            "amr": ["N3_SMARTCARD"],
            "id_assurance_level": "3",
            "authentication_assurance_level": "3",
            "nhsid_useruid": user_id,
            "name": name,
            "selected_roleid": role_profile_id,
            "nhsid_nrbac_roles": [
                {
                    "person_orgid": f"{role_profile_id}1",
                    "person_roleid": role_profile_id,
                    "org_code": org_code,
                    "role_name": role_name,
                    "role_code": role_code,
                    "activities": [],
                    "activity_codes": [],
                }
            ],
            "nhsid_user_orgs": [{"org_code": org_code, "org_name": org_name}],
        }

    def routes(self, path: str) -> list[web.RouteDef]:
        """Discovery and keys at ``path`` (the issuer URL's path)."""

        async def discovery(_request: web.Request) -> web.Response:
            return web.json_response(self.discovery())

        async def jwks(_request: web.Request) -> web.Response:
            return web.json_response(self.jwks())

        return [
            web.get(f"{path}/.well-known/openid-configuration", discovery, name="demo_cis2_config"),
            web.get(f"{path}/jwks", jwks, name="demo_cis2_jwks"),
        ]
