"""Integration fixtures: the real PostgreSQL adapter over a fresh database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import PgAuditLog, PgDatabase
from cpis.adapters.webhook import LOOPBACK_NETWORKS
from cpis.app import Runtime, Start, build
from cpis.settings import Secret, Settings
from cpis.workers.dispatcher import DispatchSettings
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
def runtime_overrides() -> dict[str, Any]:
    """Adapters a test module swaps for fakes in its runtime (override this fixture)."""
    return {}


def service_settings(data_dir: Path, database_url: str) -> Settings:
    """The service as the integration tests run it: their receivers are on loopback."""
    return Settings(
        data_dir=data_dir,
        database_url=Secret(database_url),
        public_base_url="http://cpis.test",
        webhook_allowed_networks=LOOPBACK_NETWORKS,
        db_pool_min=1,
        db_pool_max=4,
        db_statement_timeout_ms=10_000,
    )


@pytest.fixture
async def runtime(
    database_url: str, tmp_path: Path, clock: FakeClock, runtime_overrides: dict[str, Any]
) -> AsyncIterator[Runtime]:
    """The service's adapters over the test's own database, built as `cpis serve` builds
    them (cpis.app.build), with the test's clock and quick dispatch timings."""
    overrides: dict[str, Any] = {
        "clock": clock,
        "dispatch": DispatchSettings(concurrency=2, horizon=timedelta(hours=1), idle_poll=0.02),
    }
    async with build(
        service_settings(tmp_path / "service", database_url),
        start=Start.SERVE,
        **(overrides | runtime_overrides),
    ) as rt:
        yield rt


@asynccontextmanager
async def another_runtime(runtime: Runtime, **overrides: Any) -> AsyncIterator[Runtime]:
    """A second process's adapters on the same service (its database, keys and clock), with
    ``overrides``: e.g. one with a MESH mailbox on a sandbox started by the test."""
    async with build(
        runtime.settings, clock=runtime.clock, dispatch=runtime.dispatch, **overrides
    ) as rt:
        yield rt


@pytest.fixture
def vault(runtime: Runtime) -> FieldVault:
    return runtime.vault


@pytest.fixture
def db(runtime: Runtime) -> PgDatabase:
    return runtime.db


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
