"""The person index adapters: ``local`` over a real PostgreSQL, ``pds`` over a local
server answering in PDS's shapes (``tests/pds_server.py``), and choosing between them.

Every NHS number here is from the 999 range and every name is invented.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from cpis.adapters.crypto import FieldVault
from cpis.adapters.pds import PdsPersonIndex
from cpis.adapters.person_index import open_person_index
from cpis.adapters.postgres import LocalPersonIndex, create_pool, load_person_index
from cpis.errors import IndexFileRejected, PersonIndexUnavailable
from cpis.formats.upload_file import parse_upload
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model.persons import IndexPerson, LoadResult, PersonQuery
from cpis.model.uploads import ParsedUpload
from cpis.services.verification import verify_records
from cpis.settings import Settings
from tests.pds_server import running_pds

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples"
HEADER = "nhs_number,family_name,given_names,birth_date,sex,postcode,sensitive,superseded_by,active"

ALEX = IndexPerson(
    "9990000018", "Testchild", "Alexander James", date(2016, 7, 14), "male", "LS1 4AP"
)
SAM = IndexPerson("9990000026", "Examplefamily", "Samantha", date(2012, 1, 5), "female", "LS6 2QT")
ROBIN = IndexPerson(
    "9990000107", "Sensitivechild", "Robin", date(2019, 2, 11), "unknown", None, sensitive=True
)
JORDAN = IndexPerson(
    "9990000131", "Mergedchild", "Jordan Lee", date(2017, 5, 20), "male", "LS11 5AA"
)
OLD_JORDAN = IndexPerson(
    "9990000123", "Mergedchild", "Jordan", date(2017, 5, 20), "male", None,
    superseded_by="9990000131", active=False,
)  # fmt: skip
CASEY = IndexPerson(
    "9990000158", "Retiredchild", "Casey", date(2015, 8, 8), "other", None, active=False
)
MORGAN = IndexPerson("9990000174", "Datechild", "Morgan", date(2018, 4, 3), "unknown", "LS13 2CD")
EVERYONE = (ALEX, SAM, ROBIN, JORDAN, OLD_JORDAN, CASEY, MORGAN)


def row(p: IndexPerson) -> str:
    def yn(flag: bool) -> str:
        return "Y" if flag else "N"

    cells = [
        p.nhs_number,
        p.family_name or "",
        p.given_names or "",
        p.birth_date.isoformat() if p.birth_date else "",
        p.sex or "",
        p.postcode or "",
        yn(p.sensitive),
        p.superseded_by or "",
        "" if p.superseded_by else yn(p.active),
    ]
    return ",".join(cells)


def extract(*people: IndexPerson) -> bytes:
    return ("\n".join([HEADER, *(row(p) for p in people)]) + "\n").encode()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=4, statement_timeout_ms=10_000)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def loaded(pool: asyncpg.Pool, vault: FieldVault) -> LoadResult:
    return await load_person_index(pool, vault, extract(*EVERYONE))


async def table(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT * FROM person_index ORDER BY subject_key")


# --- the vault's blind index -------------------------------------------------------------


def test_blind_is_keyed_deterministic_and_separated_by_purpose(vault: FieldVault) -> None:
    other = FieldVault(data_keys={"k1": bytes(32)}, active_kid="k1", hash_key=b"another key")
    assert vault.blind("person-index-block", "dob:2016-07-14") == vault.blind(
        "person-index-block", "dob:2016-07-14"
    )
    assert vault.blind("person-index-block", "x") != vault.blind("person-index-row", "x")
    assert vault.blind("person-index-block", "x") != other.blind("person-index-block", "x")
    assert vault.blind("subject", "9990000018") != vault.subject_key("9990000018")
    assert len(vault.blind("p", "v")) == 32


# --- loading ------------------------------------------------------------------------------


async def test_a_load_stores_everyone_and_says_what_it_did(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    assert dataclasses.replace(loaded, newly_inactive=()) == LoadResult(
        rows=7,
        inserted=7,
        updated=0,
        unchanged=0,
        removed=0,
        superseded=1,
        inactive=2,
        sensitive=1,
    )
    # A first load reports the numbers already out of use: LAs may hold plans on them.
    assert loaded.newly_inactive == (OLD_JORDAN, CASEY)
    index = LocalPersonIndex(pool, vault)
    found = await index.get_many([p.nhs_number for p in EVERYONE] + ["9990000182"])
    assert found == {p.nhs_number: p for p in EVERYONE}


async def test_get_many_answers_under_the_numbers_as_asked(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    index = LocalPersonIndex(pool, vault)
    assert await index.get_many(["999 000 0018", "9990000182"]) == {"999 000 0018": ALEX}
    assert await index.get_many([]) == {}


async def test_the_example_file_gives_an_upload_every_index_code(
    pool: asyncpg.Pool, vault: FieldVault
) -> None:
    """schemas/examples: load the index example, check the index upload example against it."""
    result = await load_person_index(
        pool, vault, (EXAMPLES / "person-index-example.csv").read_bytes()
    )
    assert (result.rows, result.sensitive, result.superseded, result.inactive) == (12, 1, 1, 2)
    upload = parse_upload(
        (EXAMPLES / "upload-example-index.json").read_bytes(), content_type="application/json"
    )
    assert isinstance(upload, ParsedUpload)
    checked = await verify_records(LocalPersonIndex(pool, vault), upload.records)
    got = {r.plan_id: r.rejection.code if r.rejection else "CPR06" for r in checked}
    assert sorted(set(got.values())) == [
        "CPR01",
        "CPR02",
        "CPR03",
        "CPR04",
        "CPR05",
        "CPR06",
        "CPR07",
    ]


async def test_a_bad_file_changes_nothing_and_names_lines_and_columns(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    before = await table(pool)
    changed_alex = dataclasses.replace(ALEX, postcode="LS2 7HY")
    bad = extract(changed_alex, SAM).decode() + (
        "9990000182,Newchild,Riley,2015-13-01,F,,N,,\n"
        "9990000190,Otherchild,Avery,2015-01-01,F,,perhaps,,\n"
    )
    with pytest.raises(IndexFileRejected) as caught:
        await load_person_index(pool, vault, bad.encode())
    assert [(e.line, e.column) for e in caught.value.errors] == [
        (4, "birth_date"),
        (5, "sensitive"),
    ]
    assert "Newchild" not in str(caught.value) and "2015-13" not in str(caught.value)
    assert await table(pool) == before


async def test_a_number_twice_in_the_file_is_refused_whole(
    pool: asyncpg.Pool, vault: FieldVault
) -> None:
    data = extract(ALEX, SAM, dataclasses.replace(ALEX, nhs_number="999 000 0018"), MORGAN)
    with pytest.raises(IndexFileRejected) as caught:
        await load_person_index(pool, vault, data)
    assert [str(e) for e in caught.value.errors] == [
        "line 4, column nhs_number: the same NHS number is on line 2"
    ]
    assert await table(pool) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfenhs_number\n", "not UTF-8"),
        (b"nhs_number,family_name\n9990000018,Testchild\n", "lacks the column"),
        (HEADER.encode() + b"\n", "no rows"),
    ],
)
async def test_file_faults_refuse_the_file_before_anything_is_written(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult, data: bytes, reason: str
) -> None:
    before = await table(pool)
    with pytest.raises(IndexFileRejected, match=reason):
        await load_person_index(pool, vault, data)
    assert await table(pool) == before


async def test_the_same_file_again_changes_nothing(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    before = await table(pool)
    again = await load_person_index(pool, vault, extract(*EVERYONE))
    assert (again.inserted, again.updated, again.unchanged, again.removed) == (0, 0, 7, 0)
    assert again.newly_inactive == ()
    assert await table(pool) == before  # not even loaded_at moved


async def test_an_upsert_updates_changed_rows_and_keeps_the_rest(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    moved = dataclasses.replace(ALEX, postcode="LS2 7HY")
    riley = IndexPerson("9990000182", "Newchild", "Riley", date(2015, 1, 17), "female", None)
    result = await load_person_index(pool, vault, extract(moved, SAM, riley))
    assert (result.rows, result.inserted, result.updated, result.unchanged, result.removed) == (
        3,
        1,
        1,
        1,
        0,
    )
    index = LocalPersonIndex(pool, vault)
    found = await index.get_many([ALEX.nhs_number, riley.nhs_number, MORGAN.nhs_number])
    assert found == {ALEX.nhs_number: moved, riley.nhs_number: riley, MORGAN.nhs_number: MORGAN}


async def test_replace_removes_what_a_full_extract_lacks(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    result = await load_person_index(pool, vault, extract(ALEX, SAM), replace=True)
    assert (result.rows, result.unchanged, result.removed) == (2, 2, 5)
    index = LocalPersonIndex(pool, vault)
    assert await index.get_many([p.nhs_number for p in EVERYONE]) == {
        ALEX.nhs_number: ALEX,
        SAM.nhs_number: SAM,
    }


async def test_newly_inactive_lists_only_numbers_this_load_took_out_of_use(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    """In use -> superseded or retired, or superseded by a different number; not the
    numbers that were already out of use the same way."""
    sam_merged = dataclasses.replace(SAM, superseded_by=JORDAN.nhs_number, active=False)
    morgan_retired = dataclasses.replace(MORGAN, active=False)
    old_jordan_again = dataclasses.replace(OLD_JORDAN, superseded_by=ALEX.nhs_number)
    result = await load_person_index(
        pool,
        vault,
        extract(ALEX, sam_merged, ROBIN, JORDAN, old_jordan_again, CASEY, morgan_retired),
    )
    assert result.newly_inactive == (sam_merged, old_jordan_again, morgan_retired)
    assert result.updated == 3


# --- search (tracing) ---------------------------------------------------------------------


async def test_search_finds_exact_transposed_and_swapped_demographics(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    index = LocalPersonIndex(pool, vault)

    async def first(query: PersonQuery) -> IndexPerson | None:
        found = await index.search(query)
        return found[0] if found else None

    assert await first(PersonQuery("Testchild", "Alex", date(2016, 7, 14))) == ALEX
    # Day and month transposed by the LA: 03/04 recorded as 04/03.
    assert await first(PersonQuery("Datechild", "Morgan", date(2018, 3, 4))) == MORGAN
    # Given and family names the wrong way round.
    assert await first(PersonQuery("Samantha", "Examplefamily", date(2012, 1, 5))) == SAM
    # A wrong birth year, found by surname and first given name.
    assert await first(PersonQuery("Examplefamily", "Samantha", date(2013, 1, 5))) == SAM
    # Nothing shared: nothing proposed.
    assert await index.search(PersonQuery("Nobody", "Known", date(2001, 1, 1))) == ()
    assert await index.search(PersonQuery()) == ()


async def test_search_ranks_by_keys_shared_and_never_proposes_a_number_out_of_use(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    twin = IndexPerson("9990000204", "Testchild", "Alexandra", date(2016, 7, 14), "female", None)
    same_day = IndexPerson("9990000212", "Otherfamily", "Kim", date(2016, 7, 14), None, None)
    await load_person_index(pool, vault, extract(twin, same_day))
    index = LocalPersonIndex(pool, vault)
    found = await index.search(PersonQuery("Testchild", "Alexander", date(2016, 7, 14)))
    assert found[0] == ALEX  # birth date, surname+year, surname+given
    assert set(found[1:]) == {twin, same_day}
    assert found[1] == twin  # birth date and surname+year beat birth date alone
    assert (
        len(await index.search(PersonQuery("Testchild", "Alex", date(2016, 7, 14)), limit=1)) == 1
    )
    # The superseded and the retired never come back, only the number in use.
    merged = await index.search(PersonQuery("Mergedchild", "Jordan", date(2017, 5, 20)))
    assert merged == (JORDAN,)
    assert await index.search(PersonQuery("Retiredchild", "Casey", date(2015, 8, 8))) == ()


async def test_the_table_reveals_no_number_name_date_or_postcode(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    """SPEC §6: a dump alone reveals nothing. Read every stored byte, in the rows and on
    disk (the heap and its indexes after a checkpoint)."""
    needles: list[bytes] = []
    for p in EVERYONE:
        needles.append(p.nhs_number.encode())
        needles += [s.encode() for s in (p.family_name, p.given_names, p.postcode) if s]
        if p.birth_date is not None:
            needles += [p.birth_date.isoformat().encode(), p.birth_date.strftime("%Y%m%d").encode()]
    # Values as PostgreSQL sends them (bytea raw, arrays element by element) ...
    stored = bytearray()
    for r in await table(pool):
        for value in r.values():
            if isinstance(value, bytes):
                stored += value
            elif isinstance(value, list):
                stored += b"".join(value)
            else:
                stored += str(value).encode()
    # ... and as a dump would write them (text form: bytea as hex) ...
    async with pool.acquire() as conn:
        dump: list[bytes] = []

        async def write(chunk: bytes) -> None:
            dump.append(chunk)

        await conn.copy_from_query("SELECT * FROM person_index", output=write)
        await conn.execute("CHECKPOINT")
        files = [
            await conn.fetchval("SELECT pg_read_binary_file(pg_relation_filepath($1))", rel)
            for rel in (
                "person_index",
                "person_index_pkey",
                "person_index_block",
                "person_index_block_pkey",
            )
        ]
    # ... and the table's files on disk.
    haystacks = [bytes(stored), b"".join(dump), *files]
    assert all(len(h) > 0 for h in haystacks)
    for needle in needles:
        for haystack in haystacks:
            assert needle not in haystack
            assert needle.hex().encode() not in haystack


async def test_an_unreachable_database_is_person_index_unavailable(
    database_url: str, vault: FieldVault
) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=1, statement_timeout_ms=10_000)
    index = LocalPersonIndex(pool, vault)
    await pool.close()
    with pytest.raises(PersonIndexUnavailable):
        await index.get_many([ALEX.nhs_number])
    with pytest.raises(PersonIndexUnavailable):
        await index.search(PersonQuery("Testchild", "Alex", date(2016, 7, 14)))


# --- the PDS adapter ----------------------------------------------------------------------


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_pds_reads_found_superseded_sensitive_unknown_and_invalidated(
    session: aiohttp.ClientSession,
) -> None:
    async with running_pds(EVERYONE) as pds:
        index = PdsPersonIndex(pds.base_url, session=session)
        found = await index.get_many(
            [
                ALEX.nhs_number,
                OLD_JORDAN.nhs_number,
                ROBIN.nhs_number,
                CASEY.nhs_number,
                "9990000182",  # unknown to PDS
                "9990000019",  # fails its check digit: never sent
            ]
        )
        assert found == {
            ALEX.nhs_number: ALEX,
            # PDS answers a superseded number with the record that replaced it.
            OLD_JORDAN.nhs_number: dataclasses.replace(
                JORDAN,
                nhs_number=OLD_JORDAN.nhs_number,
                superseded_by=JORDAN.nhs_number,
                active=False,
            ),
            ROBIN.nhs_number: ROBIN,
            CASEY.nhs_number: IndexPerson(CASEY.nhs_number, active=False),
        }
        paths = [r.path.rsplit("/", 1)[1] for r in pds.requests]
        asked = [ALEX, OLD_JORDAN, ROBIN, CASEY]
        assert sorted(paths) == sorted([*(p.nhs_number for p in asked), "9990000182"])
        request_ids = {r.headers["X-Request-ID"] for r in pds.requests}
        assert len(request_ids) == len(pds.requests)
        assert all(r.headers["Accept"] == "application/fhir+json" for r in pds.requests)


async def test_pds_sends_the_bearer_token_and_reports_a_refusal_as_unavailable(
    session: aiohttp.ClientSession,
) -> None:
    async with running_pds([ALEX], token="t0ken") as pds:
        good = PdsPersonIndex(pds.base_url, session=session, token="t0ken")
        assert await good.get_many([ALEX.nhs_number]) == {ALEX.nhs_number: ALEX}
        bad = PdsPersonIndex(pds.base_url, session=session, token="wrong")
        with pytest.raises(PersonIndexUnavailable) as caught:
            await bad.get_many([ALEX.nhs_number])
        assert str(caught.value) == "person index answered 401 ACCESS_DENIED"


async def test_pds_busy_is_retried_briefly_then_unavailable(
    session: aiohttp.ClientSession,
) -> None:
    async with running_pds([ALEX]) as pds:
        index = PdsPersonIndex(pds.base_url, session=session, retries=2, max_retry_wait=0.01)
        pds.fail_with, pds.fail_times = 503, 2
        assert await index.get_many([ALEX.nhs_number]) == {ALEX.nhs_number: ALEX}
        assert len(pds.requests) == 3

        pds.requests.clear()
        pds.fail_with, pds.fail_times, pds.retry_after = 429, None, "1"
        with pytest.raises(PersonIndexUnavailable) as caught:
            await index.get_many([ALEX.nhs_number])
        assert len(pds.requests) == 3  # the first try and two retries, then give up
        assert "429" in str(caught.value) and ALEX.nhs_number not in str(caught.value)

        pds.fail_with = 500
        with pytest.raises(PersonIndexUnavailable, match="answered 500"):
            await index.get_many([ALEX.nhs_number])


async def test_pds_slow_or_gone_is_unavailable(session: aiohttp.ClientSession) -> None:
    async with running_pds([ALEX]) as pds:
        pds.delay = 2.0
        index = PdsPersonIndex(pds.base_url, session=session, timeout_seconds=0.2)
        with pytest.raises(PersonIndexUnavailable, match="timed out"):
            await index.get_many([ALEX.nhs_number])
        gone = pds.base_url
    index = PdsPersonIndex(gone, session=session)
    with pytest.raises(PersonIndexUnavailable, match="unreachable") as caught:
        await index.get_many([ALEX.nhs_number])
    assert ALEX.nhs_number not in str(caught.value) and "127.0.0.1" not in str(caught.value)


async def test_pds_reads_run_at_most_concurrency_at_once(session: aiohttp.ClientSession) -> None:
    people = [IndexPerson(n, "Family", "Given", date(2015, 1, 1)) for n in synthetic_numbers(10)]
    async with running_pds(people) as pds:
        pds.delay = 0.05
        index = PdsPersonIndex(pds.base_url, session=session, concurrency=3)
        found = await index.get_many([p.nhs_number for p in people])
        assert len(found) == 10
        assert pds.max_in_flight == 3


async def test_pds_search_uses_pds_parameters_and_returns_candidates(
    session: aiohttp.ClientSession,
) -> None:
    async with running_pds(EVERYONE) as pds:
        index = PdsPersonIndex(pds.base_url, session=session)
        found = await index.search(PersonQuery("Testchild", "Alex", date(2016, 7, 14)))
        assert found == ()  # PDS matched "Alex" to no one: the fake is not fuzzy on nicknames
        found = await index.search(
            PersonQuery("Examplefamily", "Samantha Jane", date(2012, 1, 5), sex="female"), limit=3
        )
        assert found == (SAM,)
        assert pds.requests[-1].query == {
            "family": ["Examplefamily"],
            "given": ["Samantha"],
            "birthdate": ["eq2012-01-05"],
            "gender": ["female"],
            "_fuzzy-match": ["true"],
            "_max-results": ["3"],
        }
        # Swapped names: a fuzzy search finds them.
        swapped = await index.search(PersonQuery("Samantha", "Examplefamily", date(2012, 1, 5)))
        assert swapped == (SAM,)
        # Without a family name and birth date PDS cannot search: not asked.
        asked = len(pds.requests)
        assert await index.search(PersonQuery(given_names="Sam", birth_date=date(2012, 1, 5))) == ()
        assert len(pds.requests) == asked


# --- choosing the index -------------------------------------------------------------------


async def test_open_person_index_gives_each_setting_its_adapter(
    pool: asyncpg.Pool, vault: FieldVault, loaded: LoadResult
) -> None:
    async with open_person_index(Settings(person_index="none"), pool, vault) as none:
        assert none is None
    async with open_person_index(Settings(person_index="local"), pool, vault) as local:
        assert local is not None and local.name == "local"
        assert await local.get_many([ALEX.nhs_number]) == {ALEX.nhs_number: ALEX}
    async with running_pds([SAM]) as pds:
        settings = Settings(person_index="pds", pds_url=pds.base_url, pds_concurrency=2)
        async with open_person_index(settings, pool, vault) as remote:
            assert remote is not None and remote.name == "pds"
            assert await remote.get_many([SAM.nhs_number]) == {SAM.nhs_number: SAM}
        assert pds.requests[0].headers["User-Agent"] == "cpis"
