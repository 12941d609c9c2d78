"""The local person index (issue 4): ``CPIS_PERSON_INDEX=local``.

A table of what PDS holds for the people an LA's children may be, loaded
from an extract (``cpis person-index load FILE``, format in
``schemas/person-index.md``). Nothing in it is readable without the keys
(SPEC §6): rows are keyed by the NHS number's subject key, the details are one
sealed value, and the blocking keys used for tracing are blind indexes
(``Vault.blind``) in ``person_index_block``, one row per key and person. See
``cpis/schema/migrations/0001_baseline.sql`` and ``0002_person_index_blocking.sql``.

Loading is one transaction: the rows are streamed into a temporary table with
``COPY`` while the file is read, checked there (a number twice in the file),
then merged with set-based SQL, so a million-row extract is practical and a
bad file changes nothing. A changed row is re-keyed; the load ends with
``ANALYZE`` so that the first search after it is planned on the table as it
now is (issue 11: an upload straight after loading 40,000 people into an
empty table was planned as if it were still empty, its searches ran into
the statement timeout, and the timeout was reported as CPF05).

A search that runs into the statement timeout raises
:class:`cpis.errors.IndexSearchTimedOut`, not ``PersonIndexUnavailable``: the
database answered, this one search was too slow, and retrying it would be
too slow again.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import asyncpg
import orjson

from cpis.adapters.postgres._connection import UNAVAILABLE, Connection, Pool, borrow
from cpis.errors import (
    IndexFileRejected,
    IndexSearchTimedOut,
    PersonIndexUnavailable,
    Unavailable,
)
from cpis.formats.person_index_file import MAX_ERRORS, read_rows
from cpis.matching.blocking import KEYS_VERSION, query_keys, record_keys
from cpis.model.persons import FileError, IndexPerson, LoadResult, PersonQuery
from cpis.ports.vault import Vault

SEAL_PURPOSE = "person-index"
BLOCK_PURPOSE = "person-index-block"
ROW_PURPOSE = "person-index-row"


# --- what is stored ----------------------------------------------------------------------


def _details(person: IndexPerson) -> str:
    """The sealed part of a row: every field that could identify the person."""
    birth = None if person.birth_date is None else person.birth_date.isoformat()
    return orjson.dumps(
        [
            person.nhs_number,
            person.family_name,
            person.given_names,
            birth,
            person.sex,
            person.postcode,
            person.superseded_by,
        ]
    ).decode()


def _person(vault: Vault, sealed: bytes, *, sensitive: bool, active: bool) -> IndexPerson:
    nhs, family, given, birth, sex, postcode, superseded_by = orjson.loads(
        vault.open(SEAL_PURPOSE, sealed)
    )
    return IndexPerson(
        nhs_number=nhs,
        family_name=family,
        given_names=given,
        birth_date=None if birth is None else date.fromisoformat(birth),
        sex=sex,
        postcode=postcode,
        sensitive=sensitive,
        superseded_by=superseded_by,
        active=active,
    )


def _blocking_keys(vault: Vault, keys: frozenset[str]) -> list[bytes]:
    return [vault.blind(BLOCK_PURPOSE, k) for k in sorted(keys)]


# The candidates sharing most keys, then the people. The LIMIT is inside, on the
# key table alone, and each person is then fetched by primary key in a LATERAL
# subquery (its LIMIT keeps the planner from turning it back into a join it
# might answer with a scan of person_index: on a small table a scan looks
# cheaper, and a plan that depends on the table's size is what issue 11 was
# about). Only numbers in use have keys; `active` only guards against a row
# re-keyed by a load in flight.
SEARCH_SQL = """
SELECT p.sealed, p.sensitive, p.active
  FROM (SELECT subject_key, count(*) AS shared
          FROM person_index_block
         WHERE block_key = ANY($1::bytea[])
         GROUP BY subject_key
         ORDER BY shared DESC, subject_key
         LIMIT $2) AS hit
 CROSS JOIN LATERAL (SELECT sealed, sensitive, active FROM person_index
                      WHERE subject_key = hit.subject_key AND active LIMIT 1) AS p
 ORDER BY hit.shared DESC, hit.subject_key
"""


class LocalPersonIndex:
    """The :class:`~cpis.ports.person_index.PersonIndex` over the ``person_index`` table."""

    name = "local"

    def __init__(self, pool: Pool, vault: Vault) -> None:
        self._pool = pool
        self._vault = vault

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        by_key = {self._vault.subject_key(n): n for n in nhs_numbers}
        if not by_key:
            return {}
        try:
            async with borrow(self._pool) as conn:
                rows = await conn.fetch(
                    "SELECT subject_key, sealed, sensitive, active FROM person_index"
                    " WHERE subject_key = ANY($1::bytea[])",
                    list(by_key),
                )
        except UNAVAILABLE as exc:
            raise PersonIndexUnavailable("person index unreachable") from exc
        return {
            by_key[bytes(r["subject_key"])]: _person(
                self._vault, r["sealed"], sensitive=r["sensitive"], active=r["active"]
            )
            for r in rows
        }

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        """People in use sharing a blocking key with ``query``, most keys shared first.

        Retired and superseded numbers are never candidates: tracing must
        propose the number in use (a superseded one's successor has its own row).
        """
        keys = query_keys(query.family_name, query.given_names, query.birth_date)
        if not keys or limit < 1:
            return ()
        try:
            async with borrow(self._pool) as conn:
                rows = await conn.fetch(SEARCH_SQL, _blocking_keys(self._vault, keys), limit)
        except asyncpg.exceptions.QueryCanceledError as exc:
            # The statement timeout (57014), which UNAVAILABLE would call an outage.
            raise IndexSearchTimedOut("person index search did not finish in time") from exc
        except UNAVAILABLE as exc:
            raise PersonIndexUnavailable("person index unreachable") from exc
        return tuple(
            _person(self._vault, r["sealed"], sensitive=r["sensitive"], active=r["active"])
            for r in rows
        )


# --- loading -----------------------------------------------------------------------------

_LOAD_COLUMNS = (
    "line",
    "subject_key",
    "sealed",
    "fingerprint",
    "superseded_key",
    "sensitive",
    "active",
    "block_keys",
)


class _Copier:
    """Turns file rows into COPY records, collecting the faults on the way.

    After the first fault nothing more is sealed (the load will be refused
    anyway), but the rest of the file is still read for faults, up to
    ``MAX_ERRORS``.
    """

    def __init__(self, vault: Vault, data: bytes) -> None:
        self._vault = vault
        # Encoding and header faults raise here, before any database work.
        self._rows = read_rows(data)
        self.errors: list[FileError] = []
        self.truncated = False

    def records(self) -> Iterator[tuple[Any, ...]]:
        """COPY records; never raises for a bad file (asyncpg would abort the COPY
        with the exception's text, which then lands in the server's log)."""
        try:
            yield from self._records()
        except IndexFileRejected as exc:  # a header and no rows
            self.errors.extend(exc.errors)

    def _records(self) -> Iterator[tuple[Any, ...]]:
        vault = self._vault
        for row in self._rows:
            if row.errors:
                self.errors.extend(row.errors)
                if len(self.errors) >= MAX_ERRORS:
                    del self.errors[MAX_ERRORS:]
                    self.truncated = True
                    return
                continue
            person = row.person
            if person is None or self.errors:
                continue
            details = _details(person)
            in_use = person.active and person.superseded_by is None
            keys = (
                record_keys(person.family_name, person.given_names, person.birth_date)
                if in_use
                else frozenset()
            )
            yield (
                row.line,
                vault.subject_key(person.nhs_number),
                vault.seal(SEAL_PURPOSE, details),
                # The key scheme's version is in the fingerprint, so a new scheme
                # re-keys every row on the next load.
                vault.blind(
                    ROW_PURPOSE,
                    f"{details}|{person.sensitive:d}{person.active:d}|k{KEYS_VERSION}",
                ),
                None if person.superseded_by is None else vault.subject_key(person.superseded_by),
                person.sensitive,
                person.active,
                _blocking_keys(vault, keys),
            )


async def load_person_index(
    pool: Pool, vault: Vault, data: bytes, *, replace: bool = False
) -> LoadResult:
    """Load an extract into the local index, in one transaction.

    Rows are upserted by NHS number; with ``replace`` (a full extract) rows
    the file does not carry are removed. Raises :class:`IndexFileRejected`
    (nothing changed) for a bad file, :class:`cpis.errors.Unavailable` when
    the database cannot be reached.
    """
    copier = _Copier(vault, data)
    try:
        # No client deadline, as _load turns the server's statement timeout off.
        async with borrow(pool, within=None) as conn, conn.transaction():
            return await _load(conn, vault, copier, replace=replace)
    except UNAVAILABLE as exc:
        raise Unavailable("database unreachable") from exc


async def _load(conn: Connection, vault: Vault, copier: _Copier, *, replace: bool) -> LoadResult:
    # A full extract takes far longer than the request-sized statement timeout.
    await conn.execute("SET LOCAL statement_timeout = 0")
    # One load at a time, so the counts and newly_inactive are each load's own;
    # lookups (plain reads) carry on meanwhile.
    await conn.execute("LOCK TABLE person_index IN SHARE ROW EXCLUSIVE MODE")
    await conn.execute(
        """
        CREATE TEMPORARY TABLE person_index_load (
            line integer NOT NULL, subject_key bytea NOT NULL, sealed bytea NOT NULL,
            fingerprint bytea NOT NULL, superseded_key bytea, sensitive boolean NOT NULL,
            active boolean NOT NULL, block_keys bytea[] NOT NULL
        ) ON COMMIT DROP
        """
    )
    await conn.copy_records_to_table(
        "person_index_load", records=copier.records(), columns=_LOAD_COLUMNS
    )
    errors = list(copier.errors)
    if not copier.truncated:
        for r in await conn.fetch(
            """
            SELECT lines FROM (
                SELECT array_agg(line ORDER BY line) AS lines FROM person_index_load
                 GROUP BY subject_key HAVING count(*) > 1) AS d
             ORDER BY lines[1] LIMIT $1
            """,
            MAX_ERRORS,
        ):
            first, *later = r["lines"]
            errors.extend(
                FileError(line, "nhs_number", f"the same NHS number is on line {first}")
                for line in later
            )
    if errors:
        errors.sort(key=lambda e: e.line or 0)
        truncated = copier.truncated or len(errors) > MAX_ERRORS
        raise IndexFileRejected(tuple(errors[:MAX_ERRORS]), truncated=truncated)

    await conn.execute("ANALYZE person_index_load")
    counts = await conn.fetchrow(
        """
        SELECT count(*) AS rows,
               count(*) FILTER (WHERE o.subject_key IS NULL) AS inserted,
               count(*) FILTER (WHERE o.fingerprint <> n.fingerprint) AS updated,
               count(*) FILTER (WHERE n.superseded_key IS NOT NULL) AS superseded,
               count(*) FILTER (WHERE NOT n.active) AS inactive,
               count(*) FILTER (WHERE n.sensitive) AS sensitive
          FROM person_index_load n LEFT JOIN person_index o USING (subject_key)
        """
    )
    assert counts is not None  # an aggregate always has a row
    newly_inactive = await conn.fetch(
        """
        SELECT n.sealed, n.sensitive, n.active
          FROM person_index_load n LEFT JOIN person_index o USING (subject_key)
         WHERE NOT n.active
           AND (o.subject_key IS NULL OR o.active
                OR o.superseded_key IS DISTINCT FROM n.superseded_key)
         ORDER BY n.line
        """
    )
    await conn.execute(
        "CREATE TEMPORARY TABLE person_index_changed (subject_key bytea PRIMARY KEY) ON COMMIT DROP"
    )
    await conn.execute(
        """
        WITH changed AS (
            INSERT INTO person_index AS o (subject_key, sealed, fingerprint, superseded_key,
                                           sensitive, active, loaded_at)
            SELECT subject_key, sealed, fingerprint, superseded_key, sensitive, active, now()
              FROM person_index_load
            ON CONFLICT (subject_key) DO UPDATE
               SET sealed = EXCLUDED.sealed, fingerprint = EXCLUDED.fingerprint,
                   superseded_key = EXCLUDED.superseded_key, sensitive = EXCLUDED.sensitive,
                   active = EXCLUDED.active, loaded_at = EXCLUDED.loaded_at
             WHERE o.fingerprint <> EXCLUDED.fingerprint
            RETURNING subject_key)
        INSERT INTO person_index_changed SELECT subject_key FROM changed
        """
    )
    # Re-key what changed: its old keys go, its new ones (none for a number
    # out of use) come in.
    await conn.execute(
        """
        DELETE FROM person_index_block b USING person_index_changed c
         WHERE b.subject_key = c.subject_key
        """
    )
    await conn.execute(
        """
        INSERT INTO person_index_block (block_key, subject_key)
        SELECT DISTINCT k, n.subject_key
          FROM person_index_changed c JOIN person_index_load n USING (subject_key)
         CROSS JOIN LATERAL unnest(n.block_keys) AS k
        """
    )
    removed = 0
    if replace:
        status = await conn.execute(
            """
            DELETE FROM person_index o
             WHERE NOT EXISTS (SELECT 1 FROM person_index_load n
                                WHERE n.subject_key = o.subject_key)
            """
        )
        removed = int(status.rsplit(" ", 1)[1])
    # Statistics for the table as it now is, before anyone searches it: a table
    # first filled by this load has none, and autovacuum gets to it when it gets
    # to it. ANALYZE is transactional, so they commit with the rows.
    await conn.execute("ANALYZE person_index")
    await conn.execute("ANALYZE person_index_block")
    rows, inserted, updated = counts["rows"], counts["inserted"], counts["updated"]
    return LoadResult(
        rows=rows,
        inserted=inserted,
        updated=updated,
        unchanged=rows - inserted - updated,
        removed=removed,
        superseded=counts["superseded"],
        inactive=counts["inactive"],
        sensitive=counts["sensitive"],
        newly_inactive=tuple(
            _person(vault, r["sealed"], sensitive=r["sensitive"], active=r["active"])
            for r in newly_inactive
        ),
    )


async def local_index_size(pool: Pool) -> int:
    """How many numbers the local index holds (``serve`` warns when it is empty)."""
    try:
        async with borrow(pool) as conn:
            return int(await conn.fetchval("SELECT count(*) FROM person_index"))
    except UNAVAILABLE as exc:
        raise Unavailable("database unreachable") from exc
