"""What every ``cpis`` process on one database must agree on, kept in that database
(table ``service_setting``; issue 9, items 12 and 13).

Keys. A process with other keys than the ones the database was set up with would
seal values the service cannot open and hash NHS numbers no lookup finds, while
answering as if all were well (an admin command run from another directory did
exactly that). So the first start records fingerprints of the hash key and of
the active data key, and every start compares its own with them and refuses on a
mismatch. A database from before the record is checked by opening one stored
plan: its NHS number must decrypt, and hash to the key the plan is filed under.

The person index. Uploads come in three ways (HTTP, MESH, the CLI) and one file
must get one answer whichever way it comes, so ``cpis serve`` records the person
index it checks uploads against and every other command follows that record (or
refuses when told of a different one).
"""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from cpis.adapters.crypto import FieldVault
from cpis.adapters.keys import KeyMaterial, data_key_id
from cpis.adapters.postgres._connection import Connection, borrow
from cpis.errors import StartupError, VaultError

HASH_KEY = "key:hash"
DATA_KEY = "key:data:"
PERSON_INDEX = "person_index"


async def _recorded(conn: Connection, prefix: str) -> dict[str, str]:
    rows = await conn.fetch(
        "SELECT name, value FROM service_setting WHERE starts_with(name, $1)", prefix
    )
    return {r["name"]: r["value"] for r in rows}


async def _record(conn: Connection, name: str, value: str) -> None:
    await conn.execute(
        "INSERT INTO service_setting (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        name,
        value,
    )


async def keys_recorded(pool: asyncpg.Pool) -> bool:
    """Whether a start has already recorded this database's keys."""
    async with borrow(pool) as conn:
        return bool(
            await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM service_setting WHERE name = $1)", HASH_KEY
            )
        )


async def agree_on_keys(
    pool: asyncpg.Pool, keys: KeyMaterial, vault: FieldVault, *, source: str
) -> None:
    """Refuse (:class:`StartupError`) keys that are not this database's; record them on
    the first start. ``source`` says where this process's keys came from."""
    fix = (
        f"this process's keys come from {source}: point CPIS_DATA_DIR (or CPIS_KEYS_*)"
        " at the keys `cpis serve` uses with this database"
    )
    async with borrow(pool) as conn:
        first = not await _recorded(conn, HASH_KEY)
        if first:
            await _opens_what_is_stored(conn, vault, fix)
        # Recorded before compared: of two first starts at once, one record wins and
        # the other process is compared with it like any later start.
        await _record(conn, HASH_KEY, keys.hash_kid)
        recorded = await _recorded(conn, "key:")
        if recorded[HASH_KEY] != keys.hash_kid:
            raise StartupError(
                f"the database was set up with another hash key (fingerprint"
                f" {recorded[HASH_KEY]}, not {keys.hash_kid}); {fix}"
            )
        _same_data_keys(recorded, keys.data_keys, fix)
        await _record(
            conn, DATA_KEY + keys.active_data_kid, data_key_id(keys.data_keys[keys.active_data_kid])
        )


def _same_data_keys(recorded: Mapping[str, str], mine: Mapping[str, bytes], fix: str) -> None:
    theirs = {k.removeprefix(DATA_KEY): v for k, v in recorded.items() if k.startswith(DATA_KEY)}
    clash = sorted(
        kid for kid in mine.keys() & theirs.keys() if data_key_id(mine[kid]) != theirs[kid]
    )
    if clash:
        raise StartupError(
            f"data key {clash[0]} is not the one this database's values were sealed with; {fix}"
        )
    if theirs and not theirs.keys() & mine.keys():
        raise StartupError(
            f"none of this process's data keys has sealed anything in this database (it knows"
            f" {', '.join(sorted(theirs))}); {fix}"
        )


async def _opens_what_is_stored(conn: Connection, vault: FieldVault, fix: str) -> None:
    """For a database with data but no record yet: one current plan's NHS number must open
    with these data keys and hash, with this hash key, to the key the plan is filed under."""
    row = await conn.fetchrow(
        "SELECT p.subject_key, v.nhs_sealed FROM plan p"
        " JOIN plan_version v ON v.plan_id = p.id AND v.version = p.version LIMIT 1"
    )
    if row is None:
        return
    try:
        nhs_number = vault.open("nhs_number", row["nhs_sealed"])
    except VaultError:
        raise StartupError(
            f"the plans in this database do not open with this process's data keys; {fix}"
        ) from None
    if vault.subject_key(nhs_number) != row["subject_key"]:
        raise StartupError(f"the plans in this database were filed under another hash key; {fix}")


async def recorded_person_index(pool: asyncpg.Pool) -> str | None:
    """The person index ``cpis serve`` last said it checks uploads against, if any."""
    async with borrow(pool) as conn:
        value = await conn.fetchval(
            "SELECT value FROM service_setting WHERE name = $1", PERSON_INDEX
        )
    return None if value is None else str(value)


async def record_person_index(pool: asyncpg.Pool, mode: str) -> str | None:
    """Record ``mode`` as the service's person index; the one recorded before, if other."""
    async with borrow(pool) as conn:
        before = await conn.fetchval(
            "WITH old AS (SELECT value FROM service_setting WHERE name = $1)"
            " INSERT INTO service_setting (name, value) VALUES ($1, $2)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
            " RETURNING (SELECT value FROM old)",
            PERSON_INDEX,
            mode,
        )
    return None if before is None or before == mode else str(before)
