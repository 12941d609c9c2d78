"""A database that accepts and never answers costs bounded time (issue 13, 'A primary
that goes silent' in deploy/high-availability.md).

A frozen machine's kernel still accepts connections and acknowledges what is sent,
but nothing answers: the server's statement_timeout cannot fire. Here the real
thing without Patroni: the PostgreSQL backend of a pooled connection is SIGSTOPped
(its postmaster, which answers cancel requests, is not), and a TCP listener that
accepts and never answers stands first in a multi-host URL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime

import pytest

from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import PgDatabase, PgOutboxStore, Pool, create_pool
from cpis.adapters.postgres._connection import Connection, borrow
from cpis.adapters.postgres._database import AUDIT_SECONDS
from cpis.errors import Unavailable
from cpis.model import AuditEntry
from tests.integration.conftest import FakeClock
from tests.integration.test_dispatcher import CHILD, add_subscription, seed, view

STATEMENT_TIMEOUT_MS = 500
DEADLINE = 1.5  # the statement timeout plus the one-second margin
SLACK = 1.0  # what a busy machine may add to a deadline


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The backend ``pid`` frozen until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


async def backend(conn: Connection) -> int:
    return int(await conn.fetchval("SELECT pg_backend_pid()"))


@asynccontextmanager
async def pool_of(
    database_url: str, *, timeout_ms: int = STATEMENT_TIMEOUT_MS
) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=timeout_ms)
    try:
        yield pool
    finally:
        await asyncio.wait_for(pool.close(), 10)


async def test_a_statement_to_a_frozen_backend_ends_at_the_deadline(database_url: str) -> None:
    """Inside a transaction, the statement sent to the frozen backend raises TimeoutError
    (a 503, as every UNAVAILABLE error) at the statement timeout plus the margin: the
    rollback and release do not wait for a cancellation nobody answers. The pool's
    next connection works."""
    async with pool_of(database_url) as pool:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match="no answer from the database"):
            async with borrow(pool) as conn, conn.transaction():
                with stopped(await backend(conn)):
                    await conn.fetchval("SELECT 1")
        took = time.monotonic() - started
        assert DEADLINE - 0.1 < took < DEADLINE + SLACK
        async with borrow(pool) as conn:
            assert await conn.fetchval("SELECT 1") == 1


async def test_a_lookups_statements_share_one_deadline(
    database_url: str, vault: FieldVault
) -> None:
    """A lookup's read and write are on one connection (PgDatabase.connection): frozen
    after the read, the write ends within what is left of the same deadline, as
    Unavailable (so the request answers 503 with Retry-After)."""
    async with pool_of(database_url) as pool:
        db = PgDatabase(pool, vault)
        started = time.monotonic()
        with pytest.raises(Unavailable):
            async with db.connection() as tx:
                assert await tx.visible_plan_rows("9990000018") == []
                # Half the deadline spent (time passing is what is tested, not a wait
                # for something to happen): the write gets only what is left.
                await asyncio.sleep(DEADLINE / 2)
                with stopped(await backend(tx._conn)):
                    await tx.visible_plan_rows("9990000018")
        assert time.monotonic() - started < DEADLINE + SLACK
        assert await db.ping()


async def test_an_audit_line_waits_only_briefly_for_a_frozen_backend(
    database_url: str, vault: FieldVault
) -> None:
    """The pool's only connection idle on a frozen backend: an audit line written with
    it (as after a 503) is given up on after AUDIT_SECONDS, not the statement timeout."""
    async with pool_of(database_url, timeout_ms=30_000) as pool:
        db = PgDatabase(pool, vault)
        async with borrow(pool) as conn:
            pid = await backend(conn)
        entry = AuditEntry(action="test", outcome=503, trace_id="silent-audit")
        with stopped(pid):
            started = time.monotonic()
            with pytest.raises(Unavailable):
                await db.append_audit(entry, datetime.now(UTC))
            took = time.monotonic() - started
        assert AUDIT_SECONDS - 0.1 < took < AUDIT_SECONDS + SLACK
        await db.append_audit(entry, datetime.now(UTC))


async def test_long_work_is_given_its_own_deadline(database_url: str, vault: FieldVault) -> None:
    """An upload's transaction, once it holds the upload lock, may outlast one deadline;
    work borrowed with no deadline (the person-index load) may too. The statement runs
    longer than the pool's deadline with the server's timeout turned off."""
    slow = f"SELECT pg_sleep({DEADLINE + 0.5})"
    async with pool_of(database_url) as pool:
        db = PgDatabase(pool, vault)
        async with db.transaction() as tx:
            await tx.lock_uploads("TEST1")
            await tx._conn.execute("SET LOCAL statement_timeout = 0")
            await tx._conn.execute(slow)
        async with borrow(pool, within=None) as conn, conn.transaction():
            await conn.execute("SET LOCAL statement_timeout = 0")
            await conn.execute(slow)
        with pytest.raises(Unavailable):
            async with db.transaction() as tx:
                await tx._conn.execute("SET LOCAL statement_timeout = 0")
                await tx._conn.execute(slow)


async def test_a_delivery_slower_than_the_deadline_is_recorded(
    database_url: str, vault: FieldVault, db: PgDatabase, clock: FakeClock
) -> None:
    """The dispatcher delivers while it holds its claim's connection: a delivery that
    takes longer than the pool's deadline (an LA endpoint within the timeout it chose)
    is still recorded, the outcome's statements having a deadline of their own."""
    await seed(db, clock)
    sub_id = await add_subscription(db, "http://127.0.0.1:9/hook", clock)
    async with borrow(db.pool) as conn:
        await conn.execute("UPDATE subscription SET status = 'active' WHERE id = $1", sub_id)
    await view(db, clock, CHILD, "u1")
    async with pool_of(database_url) as pool:
        store = PgOutboxStore(pool, vault)
        assert await store.fan_out(now=clock.now()) == 1
        async with store.claim(now=clock.now()) as claim:
            assert claim is not None
            # The LA endpoint taking longer than the deadline (time passing is what is
            # tested, not a wait for something to happen).
            await asyncio.sleep(DEADLINE + 0.5)
            await claim.delivered(now=clock.now())
    async with borrow(db.pool) as conn:
        assert await conn.fetchval("SELECT state FROM delivery") == "delivered"


async def test_a_silent_host_first_in_the_url_is_passed_over(database_url: str) -> None:
    """A listener that accepts and never answers, first in a multi-host URL: the pool
    connects to the next host after the silent one's own connect timeout."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    scheme, _, rest = database_url.partition("://")
    userinfo, at, hosts = rest.rpartition("@")
    url = f"{scheme}://{userinfo}{at}127.0.0.1:{port},{hosts}"
    try:
        started = time.monotonic()
        async with pool_of(url) as pool, borrow(pool) as conn:
            assert await conn.fetchval("SELECT 1") == 1
        assert time.monotonic() - started < 2.0 + DEADLINE + SLACK
        assert accepted, "the silent host was not tried first"
    finally:
        for writer in accepted:
            writer.close()
        silent.close()
        await silent.wait_closed()
