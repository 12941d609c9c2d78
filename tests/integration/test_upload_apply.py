"""Applying an upload in bulk (cpis.services.uploads): the same outcome as applying its
records one by one in file order, the person index consulted outside the transaction,
and a CPR05's new NHS number given back but never stored in clear.

Every NHS number here is from the 999 range and every name is invented.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from cpis.adapters.crypto import FieldVault
from cpis.adapters.postgres import PgDatabase, PgTransaction, create_pool
from cpis.errors import PersonIndexUnavailable
from cpis.formats.acknowledgement import acknowledgement_json
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import LocalAuthority, PlanFields, PlanType
from cpis.model.persons import IndexPerson, PersonQuery
from cpis.model.uploads import (
    Acknowledgement,
    ParsedUpload,
    RecordAcknowledgement,
    RecordAction,
    RecordRejection,
    RecordResult,
)
from cpis.services.uploads import apply_upload
from tests.conftest import _with_database
from tests.integration.conftest import FakeClock
from tests.polling import wait_until

LA = LocalAuthority("XLA01", "Alphashire", "01632 960001", "01632 960101", 24)
NUMBERS = synthetic_numbers(6, start=7100)
CREATED = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)


# --- the reference: today's one-record-at-a-time apply -----------------------------------------


async def apply_one_by_one(
    db: PgDatabase, clock: FakeClock, parsed: ParsedUpload
) -> Acknowledgement:
    """What apply_upload did before it worked in bulk: put_plan / delete_plan per record."""
    async with db.transaction() as tx:
        now = clock.now()
        records: list[RecordAcknowledgement] = []
        for rec in parsed.records:
            entry = RecordAcknowledgement(rec.index, rec.plan_id, rec.action, "CPR06")
            if rec.rejection is not None:
                entry = replace(entry, code=rec.rejection.code, reason=rec.rejection.reason)
            elif rec.action is RecordAction.DELETE:
                assert rec.plan_id is not None
                if not await tx.delete_plan(parsed.la_ods, rec.plan_id):
                    entry = replace(entry, code="CPR07", reason="no such plan to delete")
            else:
                assert rec.plan_id is not None and rec.fields is not None
                await tx.put_plan(parsed.la_ods, rec.plan_id, rec.fields, now)
            records.append(entry)
        applied = sum(1 for r in records if r.code == "CPR06")
        file_code = "CPF02" if applied == len(records) else "CPF03" if applied else "CPF04"
        ack = Acknowledgement(
            file_code,
            la_ods=parsed.la_ods,
            sequence=parsed.sequence,
            created=parsed.created,
            received_at=now,
            records=tuple(records),
        )
        await tx.store_upload(parsed.la_ods, parsed.sequence, file_code, ack, now)
    return ack


# --- random files ---------------------------------------------------------------------------------


def random_fields(rng: random.Random) -> PlanFields:
    start = date(2025, 1, 1) + timedelta(days=rng.randrange(400))
    return PlanFields(
        nhs_number=rng.choice(NUMBERS),
        plan_type=rng.choice(list(PlanType)),
        start_date=start,
        end_date=rng.choice([None, start + timedelta(days=rng.randrange(1, 300))]),
        delete_date=rng.choice([None, date(2030, 1, 1)]),
        birth_date=rng.choice([None, date(2015, 1, 1) + timedelta(days=rng.randrange(2000))]),
        family_name=rng.choice([None, "Testerton", "O'Example-Smith", "Zed"]),
        given_name=rng.choice([None, "Jonathan", "Ada", "Émile"]),
    )


def random_record(rng: random.Random, index: int, plan_ids: Sequence[str]) -> RecordResult:
    plan_id = rng.choice(plan_ids)
    roll = rng.random()
    if roll < 0.12:
        action = rng.choice([None, RecordAction.UPSERT, RecordAction.DELETE])
        rejection = RecordRejection(rng.choice(["CPR04", "CPR07"]), "rejected by the test")
        return RecordResult(index, rng.choice([None, plan_id]), action, rejection=rejection)
    if roll < 0.4:
        return RecordResult(index, plan_id, RecordAction.DELETE)
    return RecordResult(index, plan_id, RecordAction.UPSERT, fields=random_fields(rng))


def random_file(rng: random.Random, sequence: int) -> ParsedUpload:
    # A few plan ids per file, so one often appears several times (the parser
    # refuses that, but the apply must not depend on it).
    plan_ids = [f"P-{n}" for n in range(rng.randint(1, 8))]
    count = rng.randint(0, 24)
    records = tuple(random_record(rng, n, plan_ids) for n in range(1, count + 1))
    return ParsedUpload(LA.ods_code, sequence, CREATED, records)


async def contents(db: PgDatabase, vault: FieldVault, labels: dict[uuid.UUID, int]) -> Any:
    """plan and plan_version with values opened and ids named by first appearance."""
    async with db.pool.acquire() as conn:
        plans = await conn.fetch(
            "SELECT id, la_ods, la_plan_id, subject_key, version, updated_at FROM plan"
            " ORDER BY la_plan_id"
        )
        versions = await conn.fetch(
            "SELECT p.la_plan_id, v.* FROM plan_version v JOIN plan p ON p.id = v.plan_id"
            " ORDER BY p.la_plan_id, v.version"
        )
    for p in plans:
        labels.setdefault(p["id"], len(labels))

    def opened(purpose: str, sealed: bytes | None) -> str | None:
        return None if sealed is None else vault.open(purpose, sealed)

    return (
        [
            (labels[p["id"]], p["la_ods"], p["la_plan_id"], p["subject_key"], p["version"],
             p["updated_at"])
            for p in plans
        ],
        [
            (labels[v["plan_id"]], v["la_plan_id"], v["version"],
             opened("nhs_number", v["nhs_sealed"]), v["plan_type"], v["start_date"],
             v["end_date"], v["delete_date"], opened("birth_date", v["birth_sealed"]),
             opened("family_name", v["family_sealed"]), opened("given_name", v["given_sealed"]),
             v["recorded_at"])
            for v in versions
        ],
    )  # fmt: skip


async def stored_acks(db: PgDatabase) -> list[tuple[int, str, Any]]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT sequence, file_code, acknowledgement FROM upload ORDER BY sequence"
        )
    return [(r["sequence"], r["file_code"], r["acknowledgement"]) for r in rows]


@pytest.fixture
async def other_db(
    pg_server_url: str, template_db: str, vault: FieldVault
) -> AsyncIterator[PgDatabase]:
    """A second fresh database, for the reference apply."""
    name = f"cpis_t_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
        pool = await create_pool(
            _with_database(pg_server_url, name), min_size=1, max_size=2, statement_timeout_ms=10_000
        )
        try:
            yield PgDatabase(pool, vault)
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_bulk_apply_matches_applying_records_one_by_one(
    db: PgDatabase, other_db: PgDatabase, vault: FieldVault
) -> None:
    """Random files (plan ids repeated, upserts then deletes of the same plan and back,
    deletes of absent plans, rejected records) applied in bulk and one by one into two
    fresh databases: the same acknowledgements, the same plans with the same ids kept or
    renewed, the same versions, history rows and times."""
    await db.upsert_la(LA)
    await other_db.upsert_la(LA)
    bulk_clock, ref_clock = FakeClock(), FakeClock()
    bulk_ids: dict[uuid.UUID, int] = {}
    ref_ids: dict[uuid.UUID, int] = {}
    rng = random.Random(20260601)
    for sequence in range(1, 61):
        parsed = random_file(rng, sequence)
        bulk_ack, applied = await apply_upload(db, bulk_clock, parsed)
        ref_ack = await apply_one_by_one(other_db, ref_clock, parsed)
        assert applied
        assert bulk_ack == ref_ack, f"file {sequence}"
        assert await contents(db, vault, bulk_ids) == await contents(other_db, vault, ref_ids), (
            f"file {sequence}"
        )
        bulk_clock.advance(minutes=7)
        ref_clock.advance(minutes=7)
    assert await stored_acks(db) == await stored_acks(other_db)
    codes = Counter(r["code"] for _, _, ack in await stored_acks(db) for r in ack["records"])
    assert codes["CPR06"] > 100 and codes["CPR07"] > 20  # the files did exercise the paths


async def test_one_plan_id_many_times_in_a_file(db: PgDatabase, clock: FakeClock) -> None:
    """Within a file, each record sees the ones before it: two upserts make two
    versions, a delete after an upsert finds the plan, a second delete does not, and an
    upsert after a delete starts a new plan at version 1."""
    await db.upsert_la(LA)
    first = RecordResult(1, "P-1", RecordAction.UPSERT, fields=random_fields(random.Random(1)))
    await apply_upload(db, clock, ParsedUpload(LA.ods_code, 1, CREATED, (first,)))
    async with db.pool.acquire() as conn:
        old_id = await conn.fetchval("SELECT id FROM plan WHERE la_plan_id = 'P-1'")
    rng = random.Random(2)
    records = (
        RecordResult(1, "P-1", RecordAction.UPSERT, fields=random_fields(rng)),
        RecordResult(2, "P-1", RecordAction.UPSERT, fields=random_fields(rng)),
        RecordResult(3, "P-2", RecordAction.DELETE),
        RecordResult(4, "P-3", RecordAction.UPSERT, fields=random_fields(rng)),
        RecordResult(5, "P-3", RecordAction.DELETE),
        RecordResult(6, "P-3", RecordAction.DELETE),
        RecordResult(7, "P-3", RecordAction.UPSERT, fields=random_fields(rng)),
        RecordResult(8, "P-3", RecordAction.UPSERT, fields=random_fields(rng)),
    )
    clock.advance(hours=1)
    ack, _ = await apply_upload(db, clock, ParsedUpload(LA.ods_code, 2, CREATED, records))
    assert [r.code for r in ack.records] == [
        "CPR06", "CPR06", "CPR07", "CPR06", "CPR06", "CPR07", "CPR06", "CPR06"
    ]  # fmt: skip
    assert ack.file_code == "CPF03"
    assert ack.summary == {"CPR06": 6, "CPR07": 2}
    async with db.pool.acquire() as conn:
        plans = {
            r["la_plan_id"]: r
            for r in await conn.fetch("SELECT id, la_plan_id, version, updated_at FROM plan")
        }
        history = await conn.fetch(
            "SELECT p.la_plan_id, v.version, v.start_date FROM plan_version v"
            " JOIN plan p ON p.id = v.plan_id ORDER BY 1, 2"
        )
    assert sorted(plans) == ["P-1", "P-3"]
    assert (plans["P-1"]["id"], plans["P-1"]["version"]) == (old_id, 3)
    assert plans["P-3"]["version"] == 2
    assert all(p["updated_at"] == clock.now() for p in plans.values())
    assert [(r["la_plan_id"], r["version"], r["start_date"]) for r in history] == [
        ("P-1", 1, first.fields.start_date),  # type: ignore[union-attr]
        ("P-1", 2, records[0].fields.start_date),  # type: ignore[union-attr]
        ("P-1", 3, records[1].fields.start_date),  # type: ignore[union-attr]
        ("P-3", 1, records[6].fields.start_date),  # type: ignore[union-attr]
        ("P-3", 2, records[7].fields.start_date),  # type: ignore[union-attr]
    ]


async def test_a_plan_the_plan_api_creates_meanwhile_is_moved_on(
    db: PgDatabase, clock: FakeClock, vault: FieldVault
) -> None:
    """The plan API takes no upload lock. A plan it creates while an upload is being
    applied (after the upload looked for existing plans, before it creates its new ones)
    makes the upload's COPY into plan fail; the upload then starts again and moves that
    plan on, as if the API's PUT came first: one version from each."""
    await db.upsert_la(LA)
    rng = random.Random(5)
    api_fields, *file_fields = (random_fields(rng) for _ in range(3))
    records = tuple(
        RecordResult(n, f"P-{n}", RecordAction.UPSERT, fields=f)
        for n, f in enumerate(file_fields, start=1)
    )
    async with db.pool.acquire() as api_conn, db.pool.acquire() as watcher:
        api_tx = api_conn.transaction()
        await api_tx.start()
        await PgTransaction(api_conn, vault).put_plan(LA.ods_code, "P-2", api_fields, clock.now())
        upload = asyncio.create_task(
            apply_upload(db, clock, ParsedUpload(LA.ods_code, 1, CREATED, records))
        )

        async def copy_waits_on_the_api() -> bool:
            return bool(
                await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE 'COPY%plan%'"
                )
            )

        await wait_until(copy_waits_on_the_api, what="the upload's COPY to wait on the API")
        await api_tx.commit()
        ack, applied = await upload
    assert applied and ack.summary == {"CPR06": 2}
    async with db.pool.acquire() as conn:
        history = await conn.fetch(
            "SELECT p.la_plan_id, p.version AS current, v.version, v.start_date"
            " FROM plan_version v JOIN plan p ON p.id = v.plan_id ORDER BY 1, 3"
        )
    assert [tuple(r) for r in history] == [
        ("P-1", 1, 1, file_fields[0].start_date),
        ("P-2", 2, 1, api_fields.start_date),
        ("P-2", 2, 2, file_fields[1].start_date),
    ]


async def test_progress_is_reported_in_chunks_up_to_every_record(
    db: PgDatabase, clock: FakeClock
) -> None:
    """The progress callback is told a rising count a few times, ending at the total."""
    await db.upsert_la(LA)
    rng = random.Random(3)
    records = tuple(
        RecordResult(n, f"P-{n}", RecordAction.UPSERT, fields=random_fields(rng))
        for n in range(1, 12_001)
    )
    seen: list[int] = []
    ack, _ = await apply_upload(
        db, clock, ParsedUpload(LA.ods_code, 1, CREATED, records), progress=seen.append
    )
    assert ack.summary == {"CPR06": 12_000}
    assert seen == sorted(seen) and seen[-1] == 12_000
    assert 2 <= len(seen) <= 10


# --- the person index ---------------------------------------------------------------------------

A, B, C, NEW = synthetic_numbers(4, start=7300)
BORN = date(2016, 4, 3)


class FakeIndex:
    """A person index of our own port: a dict, and a switch to make it unavailable."""

    name = "fake"

    def __init__(self, people: Mapping[str, IndexPerson], *, available: bool = True) -> None:
        self.people = dict(people)
        self.available = available
        self.calls = 0

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        self.calls += 1
        if not self.available:
            raise PersonIndexUnavailable("person index unavailable")
        return {n: self.people[n] for n in nhs_numbers if n in self.people}

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        return []


def person(nhs: str, **extra: Any) -> IndexPerson:
    return IndexPerson(nhs, "Testerton", "Jonathan", BORN, "male", **extra)


def upsert(index: int, plan_id: str, nhs: str) -> RecordResult:
    fields = PlanFields(nhs, PlanType.CPP, date(2026, 1, 5), birth_date=BORN,
                        family_name="Testerton", given_name="Jonathan")  # fmt: skip
    return RecordResult(index, plan_id, RecordAction.UPSERT, fields=fields)


INDEX_FILE = ParsedUpload(
    LA.ods_code, 1, CREATED, (upsert(1, "P-A", A), upsert(2, "P-B", B), upsert(3, "P-C", C))
)


async def plan_ids(db: PgDatabase) -> list[str]:
    async with db.pool.acquire() as conn:
        return sorted(r[0] for r in await conn.fetch("SELECT la_plan_id FROM plan"))


async def test_the_index_decides_and_a_new_number_is_given_back_but_stored_sealed(
    db: PgDatabase, clock: FakeClock
) -> None:
    """With an index: a known number is applied, an unknown one is CPR01, a superseded
    one CPR05 with the new number in its entry. The stored acknowledgement holds that
    number only sealed, and a resend answers with it opened, without asking the index."""
    await db.upsert_la(LA)
    index = FakeIndex({A: person(A), C: person(C, superseded_by=NEW)})
    ack, applied = await apply_upload(db, clock, INDEX_FILE, index=index)
    assert applied and index.calls == 1
    assert [(r.plan_id, r.code) for r in ack.records] == [
        ("P-A", "CPR06"), ("P-B", "CPR01"), ("P-C", "CPR05")
    ]  # fmt: skip
    assert ack.records[2].new_nhs_number == NEW
    assert all(r.new_nhs_number is None for r in ack.records[:2])
    assert ack.file_code == "CPF03"
    assert await plan_ids(db) == ["P-A"]

    async with db.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT acknowledgement::text FROM upload")
    assert NEW not in stored and A not in stored and B not in stored and C not in stored
    assert "new_nhs_number_sealed" in stored

    again, applied = await apply_upload(db, clock, INDEX_FILE, index=index)
    assert (again, applied) == (ack, False)
    assert index.calls == 1  # the stored acknowledgement is read before the index is asked


async def test_index_unavailable_is_cpf05_and_the_file_can_be_sent_again(
    db: PgDatabase, clock: FakeClock
) -> None:
    """When the index cannot answer the file gets CPF05, nothing is applied or stored,
    and the same sequence number is applied once the index is back."""
    await db.upsert_la(LA)
    index = FakeIndex({A: person(A), B: person(B), C: person(C)}, available=False)
    ack, applied = await apply_upload(db, clock, INDEX_FILE, index=index)
    assert not applied
    assert acknowledgement_json(ack) == {
        "la_ods": LA.ods_code, "sequence": 1, "file_code": "CPF05",
        "reason": "person index unavailable, resubmit", "records": [],
    }  # fmt: skip
    assert await plan_ids(db) == [] and await stored_acks(db) == []

    index.available = True
    ack, applied = await apply_upload(db, clock, INDEX_FILE, index=index)
    assert applied and ack.file_code == "CPF02"
    assert await plan_ids(db) == ["P-A", "P-B", "P-C"]


async def test_refused_files_do_not_ask_the_index(db: PgDatabase, clock: FakeClock) -> None:
    """A lower sequence is CPF04 and a file for an unregistered LA is refused, both
    before any index call; nothing is stored."""
    index = FakeIndex({A: person(A), B: person(B), C: person(C)})
    ack, applied = await apply_upload(db, clock, INDEX_FILE, index=index)
    assert (ack.file_code, ack.reason, applied) == (
        "CPF04", "the local authority is not registered", False
    )  # fmt: skip
    await db.upsert_la(LA)
    later = ParsedUpload(LA.ods_code, 5, CREATED, INDEX_FILE.records)
    assert (await apply_upload(db, clock, later, index=index))[0].file_code == "CPF02"
    calls = index.calls
    ack, applied = await apply_upload(db, clock, INDEX_FILE, index=index)
    assert (ack.file_code, applied) == ("CPF04", False)
    assert ack.reason == "sequence 1 is lower than the last applied (5)"
    assert index.calls == calls
    assert [s for s, _, _ in await stored_acks(db)] == [5]
