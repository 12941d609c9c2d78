"""People signed in to the web pages (issue 12): who they are, what role the
service gives them, and how their organisation's identity provider is set up.

A person signs in with their own organisation's OpenID Connect provider (an
LA's Entra ID, NHS CIS2 for health); the service keeps a session for them on
the server (:class:`WebSession`) and never a password.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime


class OrgKind(enum.StrEnum):
    LA = "la"
    HEALTH = "health"


class WebRole(enum.StrEnum):
    """What a signed-in person may do (docs/sign-in.md)."""

    CASEWORKER = "caseworker"  # LA: the inbox and child pages
    MANAGER = "manager"  # LA: as a caseworker, and uploads and settings
    CLINICIAN = "clinician"  # health: the lookup page

    @property
    def kind(self) -> OrgKind:
        return OrgKind.HEALTH if self is WebRole.CLINICIAN else OrgKind.LA


# The scopes asked for by default: an LA's provider needs only the standard ones;
# CIS2 names the selected role and its RBAC details only when asked (its "Scopes
# and claims"), and docs/sign-in.md says why each is needed.
DEFAULT_SCOPES: Mapping[OrgKind, str] = {
    OrgKind.LA: "openid profile email",
    OrgKind.HEALTH: "openid profile selectedrole nationalrbacaccess associatedorgs",
}


@dataclass(frozen=True, slots=True)
class SignInConfig:
    """One organisation's identity provider, as the operator registers it
    (``cpis la sign-in`` / ``cpis org sign-in``).

    ``role_values`` maps values of the ``roles_claim`` claim to a role: for an
    LA, Entra ID's app role values (``{"caseworker": caseworker, "manager":
    manager}``); for health, the CIS2 RBAC job role codes (``R8001``) that may
    look children up, where empty means any role the person selected at this
    organisation. At the token endpoint the service authenticates with a signed
    JWT (``private_key_jwt``, RFC 7523, with its own signing key), else with
    ``client_secret``, else as a public client (PKCE alone).
    """

    org_ods: str
    kind: OrgKind
    issuer: str
    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    roles_claim: str = "roles"
    role_values: Mapping[str, WebRole] = field(default_factory=dict)
    scope: str = ""
    private_key_jwt: bool = False

    @property
    def scopes(self) -> str:
        return self.scope or DEFAULT_SCOPES[self.kind]

    @property
    def token_auth(self) -> str:
        """How the service authenticates at the token endpoint (OAuth's method name)."""
        if self.private_key_jwt:
            return "private_key_jwt"
        return "client_secret_basic" if self.client_secret else "none"


@dataclass(frozen=True, slots=True)
class WebUser:
    """A signed-in person: the identity provider's id for them, their name, the role
    the service gives them and the organisation they act for; for a clinician also
    their selected CIS2 role (job role words, RBAC code, SDS role profile id), which
    each lookup records as the FHIR lookup does."""

    user_id: str
    name: str
    role: WebRole
    org_ods: str
    org_name: str
    job_role: str = ""
    role_code: str | None = None
    role_profile_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuthorizationStart:
    """The redirect to the provider and what the callback must check against."""

    url: str
    state: str
    nonce: str
    code_verifier: str


@dataclass(frozen=True, slots=True)
class PendingSignIn:
    """A sign-in begun in this browser and not yet finished (one use)."""

    org_ods: str
    state: str
    nonce: str
    code_verifier: str
    redirect_uri: str
    return_to: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """What the provider vouched for at the callback: the person, and the ID token
    to hint with at RP-initiated logout."""

    user: WebUser
    id_token: str


@dataclass(frozen=True, slots=True)
class WebSession:
    """A signed-in person's session, as stored (its id is known only to the browser)."""

    user: WebUser
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime  # the absolute lifetime's end
    id_token: str | None = field(default=None, repr=False)
