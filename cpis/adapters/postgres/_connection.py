"""Connections: the pool and how each connection is set up, which failures mean
"the database is unavailable" (or, for a command starting up, what to tell the
operator), and what the stores share (:class:`Session` over one connection,
:class:`Pooled` over the pool).
"""

from __future__ import annotations

import os
import socket
from typing import Any, TypeAlias, cast

import asyncpg
import orjson

from cpis.errors import StartupError, Unavailable
from cpis.ports.vault import Vault

# A pooled connection is a proxy for a Connection; both offer the same calls.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
# The pool's type, for code outside this package that holds a pool to hand to the
# stores here (the runtime), and so never needs asyncpg itself.
Pool: TypeAlias = asyncpg.Pool

# Errors that mean "the database cannot do this right now", not "the query is wrong":
# whole classes, by asyncpg's base classes and SQLSTATE classes, so that a member
# nobody listed (InternalClientError when a connection dies mid-statement, issue 9)
# is still a 503 with Retry-After rather than a 500.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or pool acquire timed out
    # Client side: the connection is closed or closing, the pool is closing, or the
    # protocol lost its state because the connection died under it.
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.PostgresConnectionError,  # SQLSTATE 08: connection exceptions
    asyncpg.exceptions.OperatorInterventionError,  # 57: shutdown, restart, statement timeout
    asyncpg.exceptions.InsufficientResourcesError,  # 53: too many connections, disk full
    asyncpg.exceptions.PostgresSystemError,  # 58: I/O errors
    # 40: serialization failure, deadlock; the same request again may well succeed.
    asyncpg.exceptions.TransactionRollbackError,
    # 25006: a standby, e.g. just after a failover, before the new primary is reached.
    asyncpg.exceptions.ReadOnlySQLTransactionError,
    asyncpg.exceptions.IdleInTransactionSessionTimeoutError,  # 25P03
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def _no_session_state(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's per-release RESET ALL round trip: nothing here leaves session
    state behind (locks are transaction-scoped; the migration lock is released
    explicitly), and an open transaction is still rolled back by asyncpg itself."""


# How long one host of a multi-host URL gets to accept a connection before the next
# is tried: under the pools' 5 s acquire limit, so a silent host cannot use it all.
PER_HOST_CONNECT_SECONDS = 2.0


def single_host_urls(dsn: str) -> list[str]:
    """The URL once per host for a multi-host URL (``postgresql://u:p@h1:5432,h2/db?q``
    gives ``postgresql://u:p@h1:5432/db?q`` and ``postgresql://u:p@h2/db?q``), with
    the user, password, database and query of the original; any other URL alone.
    Bracketed IPv6 hosts hold no comma, so they split as any other."""
    scheme, sep, rest = dsn.partition("://")
    if not sep:
        return [dsn]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hosts = authority.rpartition("@")
    if "," not in hosts:
        return [dsn]
    return [f"{scheme}://{userinfo}{at}{host}{tail}" for host in hosts.split(",")]


async def _connect_host_by_host(dsn: str, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg's connect, but for a multi-host URL each host in turn with a timeout of
    its own (:data:`PER_HOST_CONNECT_SECONDS`).

    asyncpg's connect timeout covers every host of a URL together, and the pool's
    connect timeout (10 s) is longer than its acquire limit (5 s): with the first
    host silent (a frozen machine, whose kernel still accepts the connection), every
    attempt spent its whole budget there and the service never reached the new
    primary after a failover. A host that refuses, stays silent, or is a standby
    refused by ``target_session_attrs`` passes to the next; the last host's error
    is raised."""
    urls = single_host_urls(dsn)
    if len(urls) == 1:
        return await asyncpg.connect(dsn, **kwargs)
    last: BaseException | None = None
    for url in urls:
        try:
            return await asyncpg.connect(url, **(kwargs | {"timeout": PER_HOST_CONNECT_SECONDS}))
        except UNAVAILABLE as exc:
            last = exc
    assert last is not None
    raise last


async def create_pool(dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int) -> Pool:
    try:
        pool = await asyncpg.create_pool(
            dsn,
            # The stubs' protocol spells out each keyword of asyncpg.connect; this passes
            # them all on.
            connect=cast(Any, _connect_host_by_host),
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            server_settings={"statement_timeout": str(statement_timeout_ms)},
            reset=_no_session_state,
            timeout=10,
        )
    except UNAVAILABLE as exc:
        raise Unavailable("database unreachable") from exc
    assert pool is not None
    return pool


async def open_pool(
    dsn: str, *, name: str, min_size: int, max_size: int, statement_timeout_ms: int
) -> Pool:
    """:func:`create_pool` for a command starting up: whatever stops it is a
    :class:`~cpis.errors.StartupError` in one line, naming the database as ``name``
    (never with its password; issue 9, item 15)."""
    try:
        return await create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            statement_timeout_ms=statement_timeout_ms,
        )
    except Unavailable as exc:
        raise connect_error(name, exc.__cause__ or exc) from None
    except (asyncpg.PostgresError, ValueError, OverflowError) as exc:
        raise connect_error(name, exc) from None


def connect_error(name: str, exc: BaseException) -> StartupError:
    """One line for a failure to open the connection pool of the database ``name``."""
    if isinstance(exc, asyncpg.PostgresError):
        # The server's own words: 'database "x" does not exist', 'password
        # authentication failed for user "u"'. They never carry the password.
        return StartupError(f"{name} refused the connection: {exc}")
    if isinstance(exc, socket.gaierror):
        return StartupError(f"cannot reach {name}: no such host")
    if isinstance(exc, OSError):
        reason = os.strerror(exc.errno) if exc.errno else exc.strerror or type(exc).__name__
        return StartupError(f"cannot reach {name}: {reason.lower()}")
    if isinstance(exc, TimeoutError):
        return StartupError(f"cannot reach {name}: no answer in time")
    if isinstance(exc, ValueError | OverflowError):
        # asyncpg's messages may quote the URL; say what it should look like instead.
        return StartupError(
            "CPIS_DATABASE_URL is not a PostgreSQL URL it can use"
            " (postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE)"
        )
    return StartupError(f"cannot use {name}: {type(exc).__name__}")


class Session:
    """One connection and the vault: what the stores a transaction is made of share
    (:class:`~cpis.adapters.postgres.PgTransaction`)."""

    def __init__(self, conn: Connection, vault: Vault) -> None:
        self._conn = conn
        self._vault = vault
        self._subjects: dict[str, bytes] = {}

    def _subject(self, nhs_number: str) -> bytes:
        # The keyed hash is asked for several times per lookup; compute it once.
        key = self._subjects.get(nhs_number)
        if key is None:
            key = self._subjects[nhs_number] = self._vault.subject_key(nhs_number)
        return key


class Pooled:
    """The pool and the vault: each statement on a pooled connection of its own,
    committing alone (:class:`~cpis.adapters.postgres.PgDatabase`)."""

    def __init__(self, pool: Pool, vault: Vault) -> None:
        self.pool = pool
        self._vault = vault

    async def _run(self, query: str, *args: Any) -> Any:
        try:
            async with self.pool.acquire(timeout=5) as conn:
                return await conn.fetch(query, *args)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
