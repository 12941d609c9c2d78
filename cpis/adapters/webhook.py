"""Sending to LAs' rest-hook endpoints over HTTP (issue 3).

Any 2xx is success. Connection errors, timeouts, 408, 429 and 5xx are worth
retrying; other 4xx mean the endpoint rejects what we send, and retrying the
same bytes will not help (the delivery goes dead and the LA is shown why).
Error reasons name the status or the kind of failure, never the body.

Endpoints are chosen by LA clients, so the service must not become their way
into networks it can reach and they cannot (SSRF): an endpoint may only be
reached at a public address, or at one of the networks the operator allows
(``CPIS_WEBHOOK_ALLOWED_NETWORKS``; loopback by default, for local testing).
The check is made on the addresses the connection really uses (a resolver
that drops the others), so a name that resolves differently at delivery time
than when the subscription was made gains nothing; an IP literal in the URL
is checked before connecting, because aiohttp does not resolve those.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from cpis.workers.dispatcher import DeliveryFailed

_RETRYABLE_4XX = {408, 425, 429}
DEFAULT_ALLOWED_NETWORKS = ("127.0.0.0/8", "::1/128")
_NOT_ALLOWED = "endpoint resolves only to non-public addresses, which are not allowed"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressNotAllowed(OSError):
    """Every address of an endpoint is private, link-local or otherwise not public."""


def address_allowed(address: str, allowed: Sequence[Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return True
    return ip.is_global and not ip.is_multicast


class _AllowedAddressesResolver(AbstractResolver):
    def __init__(self, allowed: Sequence[Network]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [r for r in found if address_allowed(r["host"], self._allowed)]
        if not kept:
            raise AddressNotAllowed(_NOT_ALLOWED)
        return kept

    async def close(self) -> None:
        await self._inner.close()


class WebhookSender:
    def __init__(
        self,
        *,
        user_agent: str = "cpis",
        allowed_networks: Sequence[str] = DEFAULT_ALLOWED_NETWORKS,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        self._user_agent = user_agent
        self._allowed = tuple(ipaddress.ip_network(n, strict=False) for n in allowed_networks)

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=_AllowedAddressesResolver(self._allowed))
            self._session = aiohttp.ClientSession(
                headers={"User-Agent": self._user_agent}, connector=connector
            )
        return self._session

    def _check_literal(self, url: str) -> None:
        host = URL(url).host or ""
        try:
            allowed = address_allowed(host, self._allowed)
        except ValueError:
            return  # a name: the resolver checks what it resolves to
        if not allowed:
            raise DeliveryFailed(_NOT_ALLOWED, retryable=False)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], timeout_s: float
    ) -> None:
        self._check_literal(url)
        try:
            async with self._http().post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout_s),
                allow_redirects=False,
            ) as resp:
                await resp.read()
                status = resp.status
        except TimeoutError:
            raise DeliveryFailed("endpoint timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            if isinstance(_os_error(exc), AddressNotAllowed):
                raise DeliveryFailed(_NOT_ALLOWED, retryable=False) from None
            raise DeliveryFailed(f"endpoint unreachable ({type(exc).__name__})") from None
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise DeliveryFailed(f"endpoint answered {status}", retryable=retryable)


def _os_error(exc: BaseException) -> Any:
    return getattr(exc, "os_error", None) or exc.__cause__
