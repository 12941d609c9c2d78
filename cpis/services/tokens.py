"""Access tokens (SPEC §6): what ``POST /oauth2/token`` issues, for the NHS England API
platform's two grants.

- ``client_credentials`` with a signed JWT client assertion (RFC 7523): an
  application-restricted token;
- token exchange (RFC 8693): the same assertion and a user's NHS CIS2 ID token,
  for a user-restricted token carrying the user, their role and organisation.

The client must be registered and active (``cpis client add``; ``cpis client
deactivate`` stops new tokens at once, while one already issued lives out its
short lifetime). The route speaks OAuth's error shapes; this says which fault
it was, as the exceptions of :class:`~cpis.ports.tokens.TokenAuthority`.
"""

from __future__ import annotations

from cpis.errors import Unauthenticated
from cpis.ports.tokens import ClientRegistry, TokenAuthority


async def issue(
    registry: ClientRegistry,
    authority: TokenAuthority,
    *,
    client_id: str,
    assertion: str,
    token_url: str,
    id_token: str | None = None,
) -> str:
    """An access token for ``client_id``, whose ``assertion`` (already seen to name it)
    must verify against its registered keys; user-restricted when ``id_token`` is given.

    Raises :class:`~cpis.errors.Unauthenticated` for an unknown or deactivated client
    or a bad assertion, :class:`~cpis.errors.InvalidGrant` for a bad ID token,
    :class:`~cpis.errors.Forbidden` for a client that may not exchange one, and
    :class:`~cpis.errors.Unavailable` when the database or identity provider cannot
    be reached.
    """
    client = await registry.get_client(client_id)
    if client is None or not client.active:
        raise Unauthenticated("client is not registered or not active")
    if id_token is None:
        return await authority.exchange(assertion, client=client, token_url=token_url)
    return await authority.exchange_id_token(
        assertion, id_token=id_token, client=client, token_url=token_url
    )
