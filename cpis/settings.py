"""Configuration, read once from the environment by the CLI and passed down.

Every variable is ``CPIS_*``, and none is read anywhere else. The one other
use of the environment is not configuration: ``cpis.adapters.embedded`` sets
``XDG_RUNTIME_DIR`` when it is unset, because the embedded PostgreSQL wheel
reads it on import (see there).

Secrets are wrapped in :class:`Secret` so that printing a Settings object (or a
traceback that shows one) never reveals key material.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

from cpis.errors import SettingsError


class Secret:
    """A string that does not show itself in ``repr`` or ``str``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds") from None
    if not 0 < value < float("inf"):
        raise SettingsError(f"{name} must be a finite number of seconds above 0")
    return value


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip().lower() in ("", "none"):
        return ()
    nets = tuple(n.strip() for n in raw.split(",") if n.strip())
    for net in nets:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise SettingsError(f"{name} must be comma-separated networks (CIDR)") from None
    return nets


def _issuers(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated OpenID issuer URLs: https, or http only on this machine (tests, demo)."""
    raw = env.get(name) or ""
    issuers = tuple(i.strip().rstrip("/") for i in raw.split(",") if i.strip())
    for issuer in issuers:
        parts = urlsplit(issuer)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if (
            not parts.hostname
            or parts.query
            or parts.fragment
            or not (parts.scheme == "https" or (parts.scheme == "http" and local))
        ):
            raise SettingsError(
                f"{name} must be comma-separated issuer URLs (https, or http on localhost)"
            )
    return issuers


def _demo_issuer(env: Mapping[str, str]) -> str:
    """CPIS_DEMO_OIDC_ISSUER, one issuer URL as :func:`_issuers` accepts them."""
    issuers = _issuers(env, "CPIS_DEMO_OIDC_ISSUER") or (Settings.demo_oidc_issuer,)
    if len(issuers) != 1:
        raise SettingsError("CPIS_DEMO_OIDC_ISSUER must be one issuer URL")
    return issuers[0]


# A path segment the router can take as it is: RFC 3986 unreserved characters, so
# nothing to percent-encode and nothing a proxy might normalise differently.
_SEGMENT = re.compile(r"[A-Za-z0-9._~-]+")


def _public_base_url(env: Mapping[str, str], default: str) -> str:
    """CPIS_PUBLIC_BASE_URL without its trailing slash; its path, if any, must be
    plain segments, since the service serves every API route under it."""
    name = "CPIS_PUBLIC_BASE_URL"
    base = (env.get(name) or default).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must start with http:// or https://")
    # The value is not echoed: a user name and password in it would be a secret.
    if "?" in base or "#" in base:
        raise SettingsError(f"{name} must not have a query (?…) or a fragment (#…)")
    parts = urlsplit(base)
    if "@" in parts.netloc:
        raise SettingsError(f"{name} must not carry a user name or password")
    try:
        parts.port  # noqa: B018 (parsing it is the check)
    except ValueError:
        raise SettingsError(f"{name} has a port that is not a number from 0 to 65535") from None
    if not parts.hostname:
        raise SettingsError(f"{name} must name a host")
    segments = parts.path.split("/")[1:] if parts.path else []
    if any(not _SEGMENT.fullmatch(s) or s in (".", "..") for s in segments):
        raise SettingsError(
            f"{name}'s path must be plain segments (letters, digits, '.', '_', '~', '-'"
            " between single slashes), e.g. https://host/cpis"
        )
    return base


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    raw = env.get(name)
    return Secret(raw) if raw else None


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the service is told from outside.

    ``database_url`` None means: start an embedded PostgreSQL in
    ``data_dir / "pg"``.
    """

    data_dir: Path = Path(".cpis")
    database_url: Secret | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    public_base_url: str = "http://127.0.0.1:8080"
    # Key material; when absent it is generated under data_dir/keys on first start.
    keys_data: Secret | None = None  # "kid:base64key[,kid:base64key…]", first is active
    keys_hash: Secret | None = None  # base64 HMAC key for NHS number lookup hashes
    keys_signing: Secret | None = None  # path to a PEM private key that signs tokens
    keys_audit: Secret | None = None  # path to a PEM Ed25519 key that signs audit seals
    access_token_ttl: int = 600
    max_body_bytes: int = 1_048_576
    max_upload_bytes: int = 67_108_864  # batch files (100,000 records is about 10 MB of CSV)
    rate_limit_per_second: int = 50
    rate_limit_burst: int = 200
    # Before authentication, per source address (the peer, or the client a trusted
    # proxy names in X-Forwarded-For): what one address may send, whoever it claims to be.
    source_rate_limit_per_second: int = 100
    source_rate_limit_burst: int = 400
    trusted_proxies: tuple[str, ...] = ()  # CIDRs whose X-Forwarded-For is believed
    # A slow client holds a connection this long at most: the header of a request must
    # be in within header_timeout_seconds of its first byte, its body within
    # body_timeout_seconds of its header.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 60.0
    db_pool_min: int = 2
    db_pool_max: int = 10
    log_format: str = "auto"  # json | console | auto (console on a terminal)
    log_level: str = "info"
    db_statement_timeout_ms: int = 5000
    # Notification delivery (issue 3)
    workers_in_serve: bool = True  # run the dispatcher inside `cpis serve`
    dispatch_concurrency: int = 4
    delivery_horizon_hours: int = 72
    mesh_url: str | None = None  # the service's own MESH mailbox, to send to LAs' mailboxes
    mesh_mailbox: str | None = None
    mesh_password: Secret | None = None
    mesh_shared_key: Secret | None = None
    mesh_ca_file: str | None = None
    mesh_poll_seconds: float = 60.0  # how often the MESH inbox is polled for upload files
    tls_cert: str | None = None  # PEM certificate chain; enables HTTPS
    tls_key: str | None = None
    tls_client_ca: str | None = None  # require client certificates from this CA (mTLS)
    # The person index uploads are checked against (issue 4): none | local | pds
    person_index: str = "none"
    # Whether CPIS_PERSON_INDEX was given: a command other than serve follows the
    # person index serve recorded unless told of one (issue 9, item 13).
    person_index_set: bool = False
    pds_url: str | None = (
        None  # PDS FHIR API base, e.g. https://sandbox.api.service.nhs.uk/personal-demographics/FHIR/R4
    )
    pds_timeout_seconds: int = 10
    pds_concurrency: int = 8
    pds_token: Secret | None = None  # bearer token for the PDS API, if it needs one
    # Rest-hook endpoints may be reached at public addresses and these (SSRF guard);
    # none by default, not even loopback.
    webhook_allowed_networks: tuple[str, ...] = ()
    index_check_hours: int = 24  # how often serve re-checks plan subjects against the index
    # OpenID issuers (NHS CIS2) whose ID tokens health clients may exchange for
    # user-restricted access tokens; none means only application-restricted ones.
    cis2_issuers: tuple[str, ...] = ()
    # `serve --demo` only: the demo OpenID provider its people sign in at (`make run`
    # starts it on DEMO_OIDC_PORT, 8090 by default).
    demo_oidc_issuer: str = "http://127.0.0.1:8090"

    def listening_on(self, port: int) -> Settings:
        """These settings once serve has bound ``port`` for ``CPIS_PORT=0`` (any free
        port): a port of 0 in the public base URL, as derived or as given, becomes it."""
        base = self.public_base_url
        parts = urlsplit(base)
        if parts.port == 0:
            host = parts.netloc.rpartition(":")[0]
            base = parts._replace(netloc=f"{host}:{port}").geturl()
        return replace(self, port=port, public_base_url=base)

    @property
    def path_prefix(self) -> str:
        """The public base URL's path, under which every API route is served:
        ``/cpis`` for ``https://host/cpis``, ``""`` for ``https://host``."""
        return urlsplit(self.public_base_url).path.rstrip("/")

    @property
    def fhir_base_url(self) -> str:
        return f"{self.public_base_url}/FHIR/R4"

    @property
    def token_url(self) -> str:
        return f"{self.public_base_url}/oauth2/token"

    @property
    def keys_dir(self) -> Path:
        return self.data_dir / "keys"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        host = env.get("CPIS_HOST") or "127.0.0.1"
        port = _int(env, "CPIS_PORT", 8080, minimum=0)
        if port > 65535:
            raise SettingsError("CPIS_PORT must be at most 65535")
        shown_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104
        if ":" in shown_host:  # an IPv6 address goes in brackets in a URL
            shown_host = f"[{shown_host}]"
        base = _public_base_url(env, f"http://{shown_host}:{port}")
        if port != 0 and urlsplit(base).port == 0:
            raise SettingsError("a port of 0 in CPIS_PUBLIC_BASE_URL needs CPIS_PORT=0")
        log_format = env.get("CPIS_LOG_FORMAT", "auto")
        if log_format not in ("json", "console", "auto"):
            raise SettingsError("CPIS_LOG_FORMAT must be json, console or auto")
        person_index = (env.get("CPIS_PERSON_INDEX") or "none").lower()
        if person_index not in ("none", "local", "pds"):
            raise SettingsError("CPIS_PERSON_INDEX must be none, local or pds")
        pds_url = (env.get("CPIS_PDS_URL") or "").rstrip("/") or None
        if person_index == "pds" and pds_url is None:
            raise SettingsError("CPIS_PERSON_INDEX=pds needs CPIS_PDS_URL")
        return cls(
            webhook_allowed_networks=_networks(env, "CPIS_WEBHOOK_ALLOWED_NETWORKS"),
            data_dir=Path(env.get("CPIS_DATA_DIR") or ".cpis"),
            database_url=_secret(env, "CPIS_DATABASE_URL"),
            host=host,
            port=port,
            public_base_url=base,
            keys_data=_secret(env, "CPIS_KEYS_DATA"),
            keys_hash=_secret(env, "CPIS_KEYS_HASH"),
            keys_signing=_secret(env, "CPIS_KEYS_SIGNING"),
            keys_audit=_secret(env, "CPIS_KEYS_AUDIT"),
            access_token_ttl=_int(env, "CPIS_ACCESS_TOKEN_TTL", 600, minimum=30),
            max_body_bytes=_int(env, "CPIS_MAX_BODY_BYTES", 1_048_576, minimum=1024),
            max_upload_bytes=_int(env, "CPIS_MAX_UPLOAD_BYTES", 67_108_864, minimum=1024),
            rate_limit_per_second=_int(env, "CPIS_RATE_LIMIT_PER_SECOND", 50, minimum=1),
            rate_limit_burst=_int(env, "CPIS_RATE_LIMIT_BURST", 200, minimum=1),
            source_rate_limit_per_second=_int(
                env, "CPIS_SOURCE_RATE_LIMIT_PER_SECOND", 100, minimum=1
            ),
            source_rate_limit_burst=_int(env, "CPIS_SOURCE_RATE_LIMIT_BURST", 400, minimum=1),
            # Unset means no proxy is trusted (unlike the webhook networks' default).
            trusted_proxies=_networks(env, "CPIS_TRUSTED_PROXIES")
            if env.get("CPIS_TRUSTED_PROXIES") is not None
            else (),
            header_timeout_seconds=_seconds(env, "CPIS_HEADER_TIMEOUT_SECONDS", 10.0),
            body_timeout_seconds=_seconds(env, "CPIS_BODY_TIMEOUT_SECONDS", 60.0),
            db_pool_min=_int(env, "CPIS_DB_POOL_MIN", 2, minimum=1),
            db_pool_max=_int(env, "CPIS_DB_POOL_MAX", 10, minimum=1),
            log_format=log_format,
            log_level=env.get("CPIS_LOG_LEVEL", "info").lower(),
            db_statement_timeout_ms=_int(env, "CPIS_DB_STATEMENT_TIMEOUT_MS", 5000, minimum=100),
            workers_in_serve=(env.get("CPIS_WORKERS_IN_SERVE") or "true").lower()
            not in ("0", "false", "no"),
            dispatch_concurrency=_int(env, "CPIS_DISPATCH_CONCURRENCY", 4, minimum=1),
            delivery_horizon_hours=_int(env, "CPIS_DELIVERY_HORIZON_HOURS", 72, minimum=1),
            mesh_url=env.get("CPIS_MESH_URL") or None,
            mesh_mailbox=env.get("CPIS_MESH_MAILBOX") or None,
            mesh_password=_secret(env, "CPIS_MESH_PASSWORD"),
            mesh_shared_key=_secret(env, "CPIS_MESH_SHARED_KEY"),
            mesh_ca_file=env.get("CPIS_MESH_CA_FILE") or None,
            mesh_poll_seconds=_seconds(env, "CPIS_MESH_POLL_SECONDS", 60.0),
            tls_cert=env.get("CPIS_TLS_CERT") or None,
            tls_key=env.get("CPIS_TLS_KEY") or None,
            tls_client_ca=env.get("CPIS_TLS_CLIENT_CA") or None,
            person_index=person_index,
            person_index_set=bool(env.get("CPIS_PERSON_INDEX")),
            pds_url=pds_url,
            pds_timeout_seconds=_int(env, "CPIS_PDS_TIMEOUT_SECONDS", 10, minimum=1),
            pds_concurrency=_int(env, "CPIS_PDS_CONCURRENCY", 8, minimum=1),
            pds_token=_secret(env, "CPIS_PDS_TOKEN"),
            index_check_hours=_int(env, "CPIS_INDEX_CHECK_HOURS", 24, minimum=1),
            cis2_issuers=_issuers(env, "CPIS_CIS2_ISSUERS"),
            demo_oidc_issuer=_demo_issuer(env),
        )
