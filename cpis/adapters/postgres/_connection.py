"""Connections: the pool and how each connection is set up, which failures mean
"the database is unavailable" (or, for a command starting up, what to tell the
operator), and what the stores share (:class:`Session` over one connection,
:class:`Pooled` over the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, cast

import asyncpg
import orjson

from cpis.errors import StartupError, Unavailable
from cpis.ports.vault import Vault

# A pooled connection is a proxy for a Connection; both offer the same calls.
Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class Pool(asyncpg.Pool):
    """asyncpg's pool, and how long a connection borrowed from it may go unanswered
    (:attr:`seconds`, see :func:`borrow`). Also the pool's type for code outside this
    package that holds one to hand to the stores here (the runtime), and so never
    needs asyncpg itself."""

    __slots__ = ("seconds",)
    seconds: float


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


# How long past the statement timeout a statement is waited for before its host is
# given up on. The server's own timeout (SQLSTATE 57014, a 503 like any other) should
# come first; this only matters when the server cannot answer at all.
DEADLINE_MARGIN_SECONDS = 1.0


async def create_pool(dsn: str, *, min_size: int, max_size: int, statement_timeout_ms: int) -> Pool:
    """A pool whose connections time statements out after ``statement_timeout_ms`` on
    the server, and are given up on by :func:`borrow` a margin after that."""
    try:
        # asyncpg.create_pool with its own defaults, but making this subclass.
        pool = Pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            max_queries=50_000,
            max_inactive_connection_lifetime=300.0,
            loop=None,
            connection_class=asyncpg.Connection,
            record_class=asyncpg.Record,
            # The stubs' protocol spells out each keyword of asyncpg.connect; this passes
            # them all on.
            connect=cast(Any, _connect_host_by_host),
            init=_init_connection,
            server_settings={"statement_timeout": str(statement_timeout_ms)},
            reset=_no_session_state,
            timeout=10,
        )
        pool.seconds = statement_timeout_ms / 1000 + DEADLINE_MARGIN_SECONDS
        await pool
    except UNAVAILABLE as exc:
        raise Unavailable("database unreachable") from exc
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


# Waiting for a pooled connection: what the stores have always allowed, or less when
# the whole borrow must end sooner.
ACQUIRE_SECONDS = 5.0
# Work that is long by design and made of statements each held to the statement
# timeout by the server (migrations, a purge, checking the whole audit log): still
# finite, so a host that went silent under it is given up on in the end.
LONG_SECONDS = 3600.0
# An upload's transaction: about a dozen statements (twice that when the plan API
# raced it), each held by the server to the statement timeout; so this many times
# the pool's deadline.
UPLOAD_STATEMENTS = 25


class Deadline:
    """When a borrowed connection is given up on: terminated, so that a statement sent
    to a host that accepts and never answers (a frozen machine) ends at once with it,
    rather than waiting for ever for an answer, or for a cancel request that the same
    host never answers either (asyncpg's own timeouts and cancellation do that).

    ``seconds`` from the start of :func:`borrow`; ``None`` for none.
    :meth:`allow_statements` starts a longer one from now, for work whose length
    only the work knows (an upload, once it takes the upload lock)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._each = seconds
        self.passed = False
        self._conn: Connection | None = None
        self._timer: asyncio.TimerHandle | None = None

    def _start(self, conn: Connection, at: float) -> None:
        self._conn = conn
        if self.seconds is not None:
            self._timer = asyncio.get_running_loop().call_at(at + self.seconds, self._pass)

    def allow_statements(self, count: int) -> None:
        """From now, ``count`` times the first deadline (each statement is held to
        the statement timeout by the server, and this is one statement's share)."""
        if self._each is None or self._conn is None:
            return
        self.stop()
        self.seconds = self._each * count
        self._start(self._conn, asyncio.get_running_loop().time())

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pass(self) -> None:
        self.passed = True
        if self._conn is not None:
            _terminate(self._conn)


# Leaving a borrowed connection by one of these, a statement may still be in flight
# (or the connection is gone): terminate it rather than let asyncpg's release wait for
# a cancellation. An error the server answered with, or one of the service's own,
# leaves a connection as good as it was.
_IN_DOUBT = (
    asyncio.CancelledError,
    TimeoutError,
    OSError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def _terminate(conn: Connection) -> None:
    # InterfaceError: terminated already, and so given back to the pool.
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


@asynccontextmanager
async def borrow(
    pool: asyncpg.Pool,
    *,
    within: float | Literal["pool"] | None = "pool",
    deadline: Deadline | None = None,
) -> AsyncIterator[Connection]:
    """A connection from ``pool``, given up on ``within`` seconds of asking for it (the
    pool's own :attr:`Pool.seconds` unless told; ``None``: never), or by ``deadline``.

    Given up on, the connection is terminated and what was waiting on it raises
    :class:`TimeoutError` (one of :data:`UNAVAILABLE`). It is terminated too when
    the block is left by a cancellation, a client-side timeout or a dropped
    connection (:data:`_IN_DOUBT`): a statement may be in flight, and asyncpg's
    release would wait for its cancellation (up to the acquire timeout) before
    giving the connection back."""
    if deadline is None:
        deadline = Deadline(pool_seconds(pool) if within == "pool" else within)
    started = asyncio.get_running_loop().time()
    limit = ACQUIRE_SECONDS if deadline.seconds is None else min(ACQUIRE_SECONDS, deadline.seconds)
    conn = await pool.acquire(timeout=limit)
    deadline._start(conn, started)
    try:
        yield conn
    except BaseException as exc:
        if deadline.passed or isinstance(exc, _IN_DOUBT):
            _terminate(conn)
        if deadline.passed and not isinstance(exc, asyncio.CancelledError):
            raise TimeoutError(f"no answer from the database in {deadline.seconds:g} s") from exc
        raise
    finally:
        deadline.stop()
        await pool.release(conn)


def pool_seconds(pool: asyncpg.Pool) -> float:
    # Every pool of the service is made by create_pool; one made otherwise gets the
    # default statement timeout's deadline.
    return pool.seconds if isinstance(pool, Pool) else 5 + DEADLINE_MARGIN_SECONDS


class Session:
    """One connection and the vault: what the stores a transaction is made of share
    (:class:`~cpis.adapters.postgres.PgTransaction`), and the connection's
    :class:`Deadline` when it has one."""

    def __init__(self, conn: Connection, vault: Vault, deadline: Deadline | None = None) -> None:
        self._conn = conn
        self._vault = vault
        self._deadline = deadline
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
            async with borrow(self.pool) as conn:
                return await conn.fetch(query, *args)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
