"""Who is calling: bearer tokens, the end user and setting, rate limits (SPEC §4, §6)."""

from __future__ import annotations

import ipaddress
import math
import time
from dataclasses import dataclass

from aiohttp import web

from cpis.errors import Forbidden, PreconditionFailed, RateLimited, Unauthenticated
from cpis.model import Accessor, Organisation, Principal, Role
from cpis.services import lookup
from cpis.web.context import info
from cpis.web.state import SERVICES

_MAX_HEADER = 256


def authenticate(request: web.Request, *roles: Role) -> Principal:
    """The verified principal, or 401; 403 unless its role is one of ``roles``."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("a bearer access token is required")
    services = request.app[SERVICES]
    principal = services.tokens.verify(token.strip())
    info(request).principal = principal
    limiter = request.app[RATE_LIMITER]
    limiter.take(principal.client_id)
    if roles and principal.role not in roles:
        raise Forbidden("this client's role may not do this")
    _check_named_org(request, principal)
    return principal


ORG_HEADER = "NHSD-End-User-Organisation-ODS"
USER_HEADER = "NHSD-End-User-Id"


def _check_named_org(request: web.Request, principal: Principal) -> None:
    """On every authenticated request, an organisation the caller names must be one it may
    act for (its registration; a user-restricted token, its user's), so nothing recorded
    for any request is an organisation merely asserted."""
    named = _header(request, ORG_HEADER, required=False)
    if named is None:
        return
    allowed = (principal.viewer.org_ods,) if principal.viewer else principal.ods_codes
    if named.upper() not in allowed:
        raise Forbidden("this client is not registered for that organisation")


def verified_org(request: web.Request, principal: Principal) -> str | None:
    """The organisation to record for a request: the user token's, else the one named (which
    :func:`authenticate` has checked against the registration), else the client's only one."""
    if principal.viewer is not None:
        return principal.viewer.org_ods
    named = request.headers.get(ORG_HEADER, "").strip().upper()
    if named in principal.ods_codes:
        return named
    return principal.ods_codes[0] if len(principal.ods_codes) == 1 else None


def asserted_user(request: web.Request, principal: Principal) -> str | None:
    """The user to record: the user token's, else the ``NHSD-End-User-Id`` an
    application-restricted client vouches for (well-formed, or 400)."""
    if principal.viewer is not None:
        return principal.viewer.user_id
    return _header(request, USER_HEADER, required=False)


def require_trace_id(request: web.Request) -> str:
    raw = request.headers.get("TraceID")
    if raw is None or not raw.strip():
        raise PreconditionFailed("the TraceID header is required", expression="TraceID")
    ri = info(request)
    if ri.trace_id != raw:
        raise PreconditionFailed("the TraceID header is malformed", expression="TraceID")
    return raw


def is_unscheduled(request: web.Request, principal: Principal) -> bool:
    raw = request.headers.get("IsUnscheduledAccessEvent")
    if raw is None:
        unscheduled = True
    elif raw.strip().lower() in ("true", "false"):
        unscheduled = raw.strip().lower() == "true"
    else:
        raise PreconditionFailed(
            "IsUnscheduledAccessEvent must be true or false", expression="IsUnscheduledAccessEvent"
        )
    # A silent-read client never notifies, whatever it says.
    return unscheduled and not principal.silent_only


def _header(request: web.Request, name: str, *, required: bool) -> str | None:
    value = request.headers.get(name)
    if value is None or not value.strip():
        if required:
            raise PreconditionFailed(f"the {name} header is required", expression=name)
        return None
    value = value.strip()
    if len(value) > _MAX_HEADER or not value.isprintable():
        raise PreconditionFailed(f"the {name} header is malformed", expression=name)
    return value


def acting_org(request: web.Request, principal: Principal) -> str:
    """The organisation the caller acts for; it must be one the client is registered for.

    A user-restricted token names it (the organisation of the role the user
    selected when signing in): a header naming any other is refused, so such a
    token can never act for another organisation.
    """
    viewer = principal.viewer
    header = _header(
        request,
        "NHSD-End-User-Organisation-ODS",
        required=viewer is None and len(principal.ods_codes) != 1,
    )
    if viewer is not None:
        if viewer.org_ods not in principal.ods_codes or (
            header is not None and header.upper() != viewer.org_ods
        ):
            raise Forbidden("this token acts only for the organisation of the user's role")
        return viewer.org_ods
    if header is None:
        return principal.ods_codes[0]
    org = header.upper()
    if org not in principal.ods_codes:
        raise Forbidden("this client is not registered for that organisation")
    return org


async def accessor_for(
    request: web.Request, principal: Principal, *, unscheduled: bool
) -> Accessor:
    """The person, place and system behind a lookup.

    With a user-restricted token, the person, role and organisation are those
    the identity provider vouched for (an ``NHSD-End-User-Id`` naming someone
    else is refused; the name and role headers are not read). Otherwise the
    client says who its user is in the ``NHSD-End-User-*`` headers, required on
    unscheduled lookups.
    """
    org = acting_org(request, principal)
    organisation = await request.app[ORGANISATIONS].get(request, org)
    trace_id = info(request).trace_id
    viewer = principal.viewer
    if viewer is not None:
        claimed = _header(request, "NHSD-End-User-Id", required=False)
        if claimed is not None and claimed != viewer.user_id:
            raise Forbidden("this token is for another user")
        # The registry's name first (the operator registered it); the identity
        # provider's when the organisation was never registered here.
        org_name = organisation.name
        if org_name == org and viewer.org_name:
            org_name = viewer.org_name
        return Accessor(
            client_id=principal.client_id,
            org_ods=org,
            org_name=org_name,
            setting_type=organisation.setting_type,
            user_id=viewer.user_id,
            user_name=viewer.name,
            user_role=viewer.role_name or "",
            trace_id=trace_id,
            role_code=viewer.role_code,
            role_profile_id=viewer.role_profile_id,
            user_verified=True,
        )

    def pick(header: str) -> str:
        return _header(request, header, required=unscheduled) or "unknown"

    return Accessor(
        client_id=principal.client_id,
        org_ods=org,
        org_name=organisation.name,
        setting_type=organisation.setting_type,
        user_id=pick("NHSD-End-User-Id"),
        user_name=pick("NHSD-End-User-Name"),
        user_role=pick("NHSD-End-User-Role"),
        trace_id=trace_id,
    )


class OrganisationCache:
    """Organisation names and setting types change rarely; keep them for a few minutes
    rather than adding a query to every lookup."""

    def __init__(self, ttl_seconds: float = 300.0) -> None:
        self._ttl = ttl_seconds
        self._entries: dict[str, tuple[float, Organisation]] = {}

    async def get(self, request: web.Request, ods: str) -> Organisation:
        now = time.monotonic()
        hit = self._entries.get(ods)
        if hit is not None and hit[0] > now:
            return hit[1]
        org = await lookup.organisation(request.app[SERVICES].db, ods_code=ods)
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[ods] = (now + self._ttl, org)
        return org


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key (a client, a source address), per replica (SPEC §6).

    At most ``max_keys`` buckets are kept: past that, buckets that have filled up
    again (their key has been quiet) are dropped, and if that is not enough, all
    are (every key starts again with a full bucket), so that many keys (addresses)
    cost bounded memory.
    """

    def __init__(
        self,
        *,
        per_second: float,
        burst: int,
        refusal: str = "too many requests for this client",
        max_keys: int = 100_000,
    ) -> None:
        self._rate = per_second
        self._burst = float(burst)
        self._refusal = refusal
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def __len__(self) -> int:
        """How many keys have a bucket now."""
        return len(self._buckets)

    def take(self, key: str) -> None:
        now = time.monotonic()
        b = self._buckets.get(key)
        if b is None:
            if len(self._buckets) >= self._max_keys:
                self._forget_quiet(now)
            b = self._buckets[key] = _Bucket(self._burst, now)
        b.tokens = min(self._burst, b.tokens + (now - b.at) * self._rate)
        b.at = now
        if b.tokens < 1.0:
            raise RateLimited(self._refusal, retry_after=math.ceil((1.0 - b.tokens) / self._rate))
        b.tokens -= 1.0

    def _forget_quiet(self, now: float) -> None:
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.at) * self._rate >= self._burst
        ]
        for key in full:
            del self._buckets[key]
        if len(self._buckets) >= self._max_keys:
            self._buckets.clear()


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    try:
        addr = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # an IPv4 client of a dual-stack socket
    return addr


class SourceLimiter:
    """Requests per source address, counted before anyone is authenticated (SPEC §6).

    The source is the connection's peer. X-Forwarded-For is believed only from
    the proxies the operator names (``CPIS_TRUSTED_PROXIES``), and then read from
    the right, as each proxy appends the address it saw: the first address that
    is not a trusted proxy is the client. Anything further left was written by
    the client itself and could be anything, so it is never read. Behind a proxy
    that is not named, every request shares the proxy's address and budget.
    """

    def __init__(self, *, per_second: float, burst: int, trusted_proxies: tuple[str, ...]) -> None:
        self._limiter = RateLimiter(
            per_second=per_second, burst=burst, refusal="too many requests from this address"
        )
        self._trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(n, strict=False) for n in trusted_proxies
        )

    def _is_trusted(self, addr: Address) -> bool:
        return any(addr.version == net.version and addr in net for net in self._trusted)

    def source(self, request: web.BaseRequest) -> str:
        peer = request.remote or "unknown"
        if not self._trusted:
            return peer
        nearest = _address(peer)
        if nearest is None or not self._is_trusted(nearest):
            return peer
        forwarded = ",".join(request.headers.getall("X-Forwarded-For", ()))
        for hop in reversed(forwarded.split(",")):
            addr = _address(hop)
            if addr is None:
                break  # not an address a proxy of ours wrote
            if not self._is_trusted(addr):
                return str(addr)
            nearest = addr
        return str(nearest)

    def take(self, source: str) -> None:
        """Count one request from ``source``; RateLimited (429) when it is over its rate.

        IPv6 addresses share their /64's budget: one host is usually given a whole
        /64, and could otherwise take a fresh address, and a fresh budget, per request.
        """
        addr = _address(source)
        if isinstance(addr, ipaddress.IPv6Address):
            source = str(ipaddress.IPv6Network((addr, 64), strict=False))
        self._limiter.take(source)


RATE_LIMITER = web.AppKey("rate_limiter", RateLimiter)
SOURCE_LIMITER = web.AppKey("source_limiter", SourceLimiter)
ORGANISATIONS = web.AppKey("organisations", OrganisationCache)
