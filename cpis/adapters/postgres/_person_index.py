"""The local person index (issue 4): ``CPIS_PERSON_INDEX=local``.

A table of what PDS holds for the people an LA's children may be, loaded
from an extract (``cpis person-index load FILE``, format in
``schemas/person-index.md``). Nothing in it is readable without the keys
(SPEC §6): rows are keyed by the NHS number's subject key, the details are one
sealed value, and the blocking keys used for tracing are blind indexes
(``Vault.blind``). See table ``person_index`` in ``cpis/schema/migrations/0001_baseline.sql``.

Loading is one transaction: the rows are streamed into a temporary table with
``COPY`` while the file is read, checked there (a number twice in the file),
then merged with set-based SQL, so a million-row extract is practical and a
bad file changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import orjson

from cpis.adapters.postgres._connection import UNAVAILABLE, Connection, Pool
from cpis.errors import IndexFileRejected, PersonIndexUnavailable, Unavailable
from cpis.formats.person_index_file import MAX_ERRORS, read_rows
from cpis.matching.blocking import query_keys, record_keys
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
            rows = await self._pool.fetch(
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
            rows = await self._pool.fetch(
                """
                SELECT sealed, sensitive, active,
                       (SELECT count(*) FROM unnest(block_keys) AS k
                         WHERE k = ANY($1::bytea[])) AS shared
                  FROM person_index
                 WHERE block_keys && $1::bytea[] AND active
                 ORDER BY shared DESC, subject_key
                 LIMIT $2
                """,
                _blocking_keys(self._vault, keys),
                limit,
            )
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
                vault.blind(ROW_PURPOSE, f"{details}|{person.sensitive:d}{person.active:d}"),
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
        async with pool.acquire() as conn, conn.transaction():
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
        """
        INSERT INTO person_index AS o (subject_key, sealed, fingerprint, superseded_key,
                                       sensitive, active, block_keys, loaded_at)
        SELECT subject_key, sealed, fingerprint, superseded_key, sensitive, active,
               block_keys, now()
          FROM person_index_load
        ON CONFLICT (subject_key) DO UPDATE
           SET sealed = EXCLUDED.sealed, fingerprint = EXCLUDED.fingerprint,
               superseded_key = EXCLUDED.superseded_key, sensitive = EXCLUDED.sensitive,
               active = EXCLUDED.active, block_keys = EXCLUDED.block_keys,
               loaded_at = EXCLUDED.loaded_at
         WHERE o.fingerprint <> EXCLUDED.fingerprint
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
        return int(await pool.fetchval("SELECT count(*) FROM person_index"))
    except UNAVAILABLE as exc:
        raise Unavailable("database unreachable") from exc
