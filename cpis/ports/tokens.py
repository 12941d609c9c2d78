"""Who may call (SPEC §6): registered clients, the service's access tokens, and the
client assertions that get them."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from cpis.model import Client, Principal

# A JSON Web Key Set (RFC 7517): {"keys": [JWK, ...]}, each JWK's members strings
# (kty, kid, n, e, crv, x, ...) or lists of strings (key_ops, x5c).
Jwks = dict[str, list[dict[str, str | list[str]]]]


class ClientRegistry(Protocol):
    async def get_client(self, client_id: str) -> Client | None: ...

    async def use_jti(self, client_id: str, jti: str, expires_at: datetime) -> bool:
        """Record a client assertion's jti; False if it was seen before."""


class TokenAuthority(Protocol):
    """Issues and checks the service's access tokens (SPEC §6)."""

    async def exchange(self, assertion: str, *, client: Client, token_url: str) -> str:
        """Check a client assertion (already matched to ``client``) and issue a token.

        Raises :class:`cpis.errors.Unauthenticated` on any fault.
        """

    async def exchange_id_token(
        self, assertion: str, *, id_token: str, client: Client, token_url: str
    ) -> str:
        """Token exchange (RFC 8693): a client assertion and its user's ID token for a
        user-restricted token. Raises :class:`cpis.errors.Unauthenticated` for the
        assertion, :class:`cpis.errors.InvalidGrant` for the ID token,
        :class:`cpis.errors.Forbidden` for a client that may not exchange, and
        :class:`cpis.errors.Unavailable` when the identity provider cannot be reached.
        """

    def verify(self, token: str) -> Principal:
        """Check an access token; raises :class:`cpis.errors.Unauthenticated`."""

    def public_jwks(self) -> Jwks:
        """The JWKS published at ``/.well-known/jwks.json``."""
