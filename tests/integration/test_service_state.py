"""Issue 9, items 12 and 13: what every process on one database agrees on, recorded in
it. Keys other than the database's are refused at start (checked by fingerprint, and
for a database from before the record by opening a stored plan); serve's person index
is what other commands follow."""

from __future__ import annotations

import secrets
from datetime import date

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from cpis.adapters.crypto import FieldVault
from cpis.adapters.keys import KeyMaterial, hash_key_id
from cpis.adapters.postgres import (
    PgDatabase,
    agree_on_keys,
    create_pool,
    keys_recorded,
    record_person_index,
    recorded_person_index,
)
from cpis.errors import StartupError
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import LocalAuthority, PlanFields, PlanType, Principal, Role
from cpis.services import plans as plan_service
from tests.integration.conftest import FakeClock

LA = LocalAuthority("XLA01", "Alphashire", "01632 960001", "01632 960101", 24)
(CHILD,) = synthetic_numbers(1, start=4100)
SIGNING = ec.generate_private_key(ec.SECP256R1())
AUDIT = ed25519.Ed25519PrivateKey.generate()


def keys(data: dict[str, bytes], hash_key: bytes, active: str | None = None) -> KeyMaterial:
    return KeyMaterial(
        data_keys=data,
        active_data_kid=active or next(iter(data)),
        hash_key=hash_key,
        hash_kid=hash_key_id(hash_key),
        signing_key=SIGNING,
        audit_key=AUDIT,
    )


async def agree(db: PgDatabase, material: KeyMaterial) -> None:
    await agree_on_keys(db.pool, material, FieldVault.from_keys(material), source="the test")


@pytest.fixture
def service_keys() -> KeyMaterial:
    return keys({"k1": secrets.token_bytes(32)}, secrets.token_bytes(32))


async def test_first_start_records_and_later_starts_must_match(
    database_url: str, service_keys: KeyMaterial
) -> None:
    """The first start records the keys; the same keys pass, and so does a rotated set
    that keeps the old key; another hash key, another key under a known kid, or data keys
    the database has never seen are refused."""
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=10_000)
    db = PgDatabase(pool, FieldVault.from_keys(service_keys))
    try:
        assert not await keys_recorded(pool)
        await agree(db, service_keys)
        assert await keys_recorded(pool)
        await agree(db, service_keys)
        old = service_keys.data_keys["k1"]
        rotated = keys({"k2": secrets.token_bytes(32), "k1": old}, service_keys.hash_key)
        await agree(db, rotated)
        for wrong, said in [
            (keys({"k1": old}, secrets.token_bytes(32)), "another hash key"),
            (keys({"k1": secrets.token_bytes(32)}, service_keys.hash_key), "data key k1 is not"),
            (keys({"k9": secrets.token_bytes(32)}, service_keys.hash_key), "none of this"),
        ]:
            with pytest.raises(StartupError, match=said):
                await agree(db, wrong)
    finally:
        await pool.close()


async def test_a_database_from_before_the_record_is_checked_against_a_stored_plan(
    database_url: str, service_keys: KeyMaterial, clock: FakeClock
) -> None:
    """No fingerprints yet, but a plan sealed and filed with the service's keys: keys that
    cannot open it, or that hash its NHS number elsewhere, are refused; the right ones
    pass and are recorded."""
    pool = await create_pool(database_url, min_size=1, max_size=2, statement_timeout_ms=10_000)
    db = PgDatabase(pool, FieldVault.from_keys(service_keys))
    try:
        await db.upsert_la(LA)
        la = Principal(client_id="la", role=Role.LA, ods_codes=(LA.ods_code,))
        fields = PlanFields(CHILD, PlanType.CPP, date(2026, 1, 1))
        await plan_service.put_plan(db, clock, principal=la, la_ods=LA.ods_code,
                                la_plan_id="P1", fields=fields, if_match=None)  # fmt: skip
        other_data = keys({"k1": secrets.token_bytes(32)}, secrets.token_bytes(32))
        with pytest.raises(StartupError, match="do not open with this process's data keys"):
            await agree(db, other_data)
        other_hash = keys(dict(service_keys.data_keys), secrets.token_bytes(32))
        with pytest.raises(StartupError, match="filed under another hash key"):
            await agree(db, other_hash)
        assert not await keys_recorded(pool)
        await agree(db, service_keys)
        assert await keys_recorded(pool)
    finally:
        await pool.close()


async def test_serve_records_the_person_index_and_says_what_it_replaced(
    database_url: str,
) -> None:
    """A database nothing has served yet has no record; serve records its index and says
    which one it replaced."""
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=10_000)
    try:
        assert await recorded_person_index(pool) is None
        assert await record_person_index(pool, "local") is None
        assert await record_person_index(pool, "local") is None
        assert await record_person_index(pool, "none") == "local"
        assert await recorded_person_index(pool) == "none"
    finally:
        await pool.close()
