"""Integration fixtures: the real PostgreSQL adapter over a fresh database."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import PgAuditLog, PgDatabase, create_pool
from cpis.adapters.webhook import LOOPBACK_NETWORKS, WebhookSender
from tests.mesh_sandbox import MeshSandbox, running_mesh_sandbox


class FakeClock:
    """A clock the test moves by hand; today is the UTC date of now."""

    def __init__(self, now: datetime | None = None) -> None:
        self._now = now or datetime(2026, 6, 1, 9, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def today(self) -> date:
        return self._now.date()

    def advance(self, **kwargs: float) -> None:
        self._now += timedelta(**kwargs)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def vault() -> FieldVault:
    return FieldVault(
        data_keys={"k1": secrets.token_bytes(32)}, active_kid="k1", hash_key=secrets.token_bytes(32)
    )


@pytest.fixture
async def db(database_url: str, vault: FieldVault) -> AsyncIterator[PgDatabase]:
    pool = await create_pool(database_url, min_size=1, max_size=4, statement_timeout_ms=10_000)
    try:
        yield PgDatabase(pool, vault)
    finally:
        await pool.close()


@pytest.fixture
def audit_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
def audit(db: PgDatabase, audit_key: ed25519.Ed25519PrivateKey, tmp_path: Path) -> PgAuditLog:
    """The audit log's sealer and checker over the test's database, with a key of its own
    and its anchor file in the test's directory."""
    return PgAuditLog(db.pool, key=audit_key, anchor_file=tmp_path / "audit-anchor.json")


@pytest.fixture(scope="module")
async def sandbox() -> AsyncIterator[MeshSandbox]:
    """NHS England's mesh-sandbox, one per test module that asks for it."""
    async with running_mesh_sandbox(auth_mode="full") as box:
        yield box


@pytest.fixture
async def clean(sandbox: MeshSandbox) -> MeshSandbox:
    """The sandbox with every mailbox emptied."""
    await sandbox.reset()
    return sandbox


def local_webhook() -> WebhookSender:
    """A rest-hook sender that may reach the tests' receivers on loopback (by default
    only public addresses are reached)."""
    return WebhookSender(allowed_networks=LOOPBACK_NETWORKS)
