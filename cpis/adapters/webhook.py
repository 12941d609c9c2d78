"""Sending to LAs' rest-hook endpoints over HTTP (issue 3).

Any 2xx is success. Connection errors, timeouts, 408, 429 and 5xx are worth
retrying; other 4xx mean the endpoint rejects what we send, and retrying the
same bytes will not help (the delivery goes dead and the LA is shown why).
Error reasons name the status or the kind of failure, never the body.

Endpoints are chosen by LA clients, so the service must not become their way
into networks it can reach and they cannot (SSRF): an endpoint may only be
reached at a public address, or at one of the networks the operator allows
(``CPIS_WEBHOOK_ALLOWED_NETWORKS``; none by default: not even loopback, or an
LA could make the service POST to its own ``/metrics`` or find open ports on
its host; ``cpis serve --demo`` allows loopback for its local examples).
The check is made on the addresses the connection really uses (a resolver
that drops the others), so a name that resolves differently at delivery time
than when the subscription was made gains nothing; an IP literal in the URL
is checked before connecting, because aiohttp does not resolve those.

An IPv6 address that carries an IPv4 address (IPv4-mapped and -translated,
IPv4-compatible, 6to4, Teredo, NAT64 in the well-known and local-use
prefixes, RFC 4291, 3056, 4380, 6052, 8215) reaches that IPv4 address, so it
is judged by the IPv4 address it carries; Python's ``is_global`` alone calls
``2002:7f00:1::`` (6to4 for 127.0.0.1) public.

What an LA is told of a failure names no connection-level detail: a refused,
reset or timed-out connection are all "no response", so delivery reasons
cannot map which ports answer on a network the operator allowed.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from cpis.errors import DeliveryFailed

_RETRYABLE_4XX = {408, 425, 429}
# Public addresses only, unless the operator names networks (loopback for local testing).
DEFAULT_ALLOWED_NETWORKS: tuple[str, ...] = ()
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
_NOT_ALLOWED = "endpoint resolves only to non-public addresses, which are not allowed"
NO_RESPONSE = "no response from the endpoint"

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_IP = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


class AddressNotAllowed(OSError):
    """Every address of an endpoint is private, link-local or otherwise not public."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """The IPv4 addresses an IPv6 address carries, or None if it carries none."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _IPV4_TRANSLATED or ip in _NAT64_WELL_KNOWN:
        return [low32]
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # not :: or ::1, which are themselves
        return [low32]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    return None


def _public(ip: _IP) -> bool:
    return ip.is_global and not ip.is_multicast


def address_allowed(address: str, allowed: Sequence[Network]) -> bool:
    ip: _IP = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    if any(ip in net for net in allowed):
        return True
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL_USE:
            return False  # RFC 8215: a network's own translator, so an internal address
        carried = _embedded_ipv4(ip)
        if carried is not None:
            return all(any(v4 in net for net in allowed) or _public(v4) for v4 in carried)
    return _public(ip)


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
            raise DeliveryFailed(NO_RESPONSE) from None
        except (aiohttp.ClientError, OSError) as exc:
            cause = _os_error(exc)
            if isinstance(cause, AddressNotAllowed):
                raise DeliveryFailed(_NOT_ALLOWED, retryable=False) from None
            if isinstance(exc, aiohttp.ClientConnectorDNSError) or isinstance(
                cause, socket.gaierror
            ):
                raise DeliveryFailed("the endpoint's host name does not resolve") from None
            # Refused, reset or cut off: all one to the LA (module docstring).
            raise DeliveryFailed(NO_RESPONSE) from None
        if 200 <= status < 300:
            return
        retryable = status >= 500 or status in _RETRYABLE_4XX
        raise DeliveryFailed(f"endpoint answered {status}", retryable=retryable)


def _os_error(exc: BaseException) -> Any:
    return getattr(exc, "os_error", None) or exc.__cause__
