"""Benchmark a 100,000-record upload against a raw COPY of the same rows (SPEC §8).

Run by ``bench/upload``. One PostgreSQL (embedded in a temporary directory, or
the server named by ``CPIS_DATABASE_URL``) holds one fresh database, migrated
as the service migrates it. The benchmark writes an upload CSV of synthetic
records (999-range NHS numbers with valid check digits, invented names,
dates), then alternates, round by round in the same database:

- **copy**: ``COPY raw_upload FROM STDIN (FORMAT csv)`` of the file's record
  lines into a plain table with the file's columns (text and dates, no
  index), a new table each round: SPEC §8's "raw COPY of the same rows";
- **upload**: what ``cpis upload FILE`` does with the file's bytes, minus the
  progress bar: ``parse_upload`` then ``apply_upload`` over the service's own
  adapter (``PgDatabase``, keys loaded from ``CPIS_DATA_DIR`` by
  ``load_keys``), each round a new sequence number. Round 1 creates every
  plan; later rounds replace every plan (a new version each), as a daily file
  does;
- **stored copy**: the database's own floor for storing those rows as the
  service stores them. The ``plan`` rows and the first ``plan_version`` row of
  every plan, exactly as round 1 stored them (sealed), are read out once in
  binary; each round COPYs those bytes into two new tables made ``LIKE plan``
  and ``LIKE plan_version`` ``INCLUDING ALL`` (the same columns, keys,
  indexes and checks), with the same foreign keys.

It prints the times, both ratios per round and overall (target: at most 3
against the raw COPY), and where the upload's time goes: parsing, sealing (the
same code, timed again alone), and each SQL statement (asyncpg's query logger;
the COPYs, which it does not see, are in the rest of the apply).
``--profile FILE`` writes a cProfile of the last round's upload.

Exit status: 0 when every upload was applied in full (a missed target is
reported, and fails only with ``--strict``), 1 when one was not, 2 on a
set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from harness import BenchError, create_databases, drop_databases, with_database

from cpis.adapters.clock import SystemClock
from cpis.adapters.crypto import FieldVault
from cpis.adapters.keys import load_keys
from cpis.adapters.postgres import PgDatabase, PgTransaction, create_pool, migrate
from cpis.formats.upload_file import CSV_COLUMNS, parse_upload
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import LocalAuthority
from cpis.model.uploads import ParsedUpload, RecordAction, UploadRejected
from cpis.services.uploads import apply_upload
from cpis.settings import Settings

LA = LocalAuthority("XBU01", "Benchshire", "01632 960001", "01632 960101", 24)
TARGET_RATIO = 3.0
FAMILY = ("Testerton", "Example", "O'Sample", "Fictitious-Jones", "Placeholder", "Dummy", "Zed")
GIVEN = ("Jonathan", "Ada", "Émile", "Mary Ann", "Kwame", "Siobhán", "Li", "Zara")


class _Quiet:
    def warning(self, event: str, **kw: Any) -> None:
        """load_keys reports keys it generates; a benchmark's are always new."""


# --- the file -------------------------------------------------------------------------------


def record_lines(count: int, seed: int) -> bytes:
    """The file's record lines: one upsert per child, every plan field used."""
    rng = random.Random(seed)
    lines = []
    for n, nhs in enumerate(synthetic_numbers(count, start=200_000), start=1):
        birth = date(2008, 1, 1) + timedelta(days=rng.randrange(6400))
        start = birth + timedelta(days=rng.randrange(30, 2500))
        end = start + timedelta(days=rng.randrange(30, 700)) if rng.random() < 0.3 else None
        plan_type = rng.choice(("CPP", "CPP", "LAC", "UCPP"))
        family, given = rng.choice(FAMILY), rng.choice(GIVEN)
        lines.append(
            f"upsert,BU-{n:07d},{nhs},{plan_type},{start},{end or ''},,{birth},"
            f'"{family}","{given}"\n'
        )
    return "".join(lines).encode()


def upload_file(records: bytes, count: int, sequence: int) -> bytes:
    created = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    header = (
        f"#la_ods,{LA.ods_code}\n#sequence,{sequence}\n#created,{created}\n#records,{count}\n"
        + ",".join(CSV_COLUMNS)
        + "\n"
    )
    return header.encode() + records


# --- measuring ------------------------------------------------------------------------------


@dataclass
class Round:
    copy_s: float
    parse_s: float
    apply_s: float
    stored_s: float
    kind: str

    @property
    def upload_s(self) -> float:
        return self.parse_s + self.apply_s

    @property
    def ratio(self) -> float:
        return self.upload_s / self.copy_s

    @property
    def stored_ratio(self) -> float:
        return self.upload_s / self.stored_s


@dataclass
class Results:
    records: int
    file_bytes: int
    rounds: list[Round] = field(default_factory=list)
    sealing_s: float = 0.0
    statements: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return sum(r.upload_s for r in self.rounds) / sum(r.copy_s for r in self.rounds)

    @property
    def stored_ratio(self) -> float:
        return sum(r.upload_s for r in self.rounds) / sum(r.stored_s for r in self.rounds)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "file_bytes": self.file_bytes,
            "rounds": [
                asdict(r)
                | {"upload_s": r.upload_s, "ratio": r.ratio, "stored_ratio": r.stored_ratio}
                for r in self.rounds
            ],
            "ratio": self.ratio,
            "stored_ratio": self.stored_ratio,
            "sealing_s": self.sealing_s,
            "statements_s": {k: statistics.median(v) for k, v in self.statements.items()},
        }


class StatementTimes:
    """Each statement's elapsed time per upload, from asyncpg's query logger."""

    def __init__(self) -> None:
        self.current: dict[str, float] = defaultdict(float)

    def __call__(self, record: Any) -> None:
        query = " ".join(str(record.query).split())
        self.current[_statement_name(query)] += record.elapsed


_REST = "the rest: subject keys, COPYs + sealing, ack"


def _statement_name(query: str) -> str:
    for marker, name in (
        ("UPDATE plan AS p", "move on the existing plans"),
        ("INSERT INTO plan AS p", "create plans (after a race with the API)"),
        ("INSERT INTO upload", "store acknowledgement"),
        ("DELETE FROM plan", "delete plans"),
    ):
        if marker in query:
            return name
    return "other (lock, checks, BEGIN/COMMIT)"


async def copy_round(conn: asyncpg.Connection, records: bytes) -> float:
    await conn.execute(
        "DROP TABLE IF EXISTS raw_upload; CREATE TABLE raw_upload (action text, plan_id text,"
        " nhs_number text, plan_type text, start_date date, end_date date, delete_date date,"
        " birth_date date, family_name text, given_name text)"
    )
    started = time.perf_counter()
    await conn.copy_to_table("raw_upload", source=_Chunks(records), format="csv")
    return time.perf_counter() - started


# The stored-shape tables: plan's and plan_version's columns, keys, indexes and
# checks (LIKE … INCLUDING ALL), and their foreign keys, which LIKE leaves out.
_STORED_TABLES = """
    DROP TABLE IF EXISTS stored_plan_version, stored_plan;
    CREATE TABLE stored_plan (LIKE plan INCLUDING ALL,
        FOREIGN KEY (la_ods) REFERENCES local_authority (ods_code));
    CREATE TABLE stored_plan_version (LIKE plan_version INCLUDING ALL,
        FOREIGN KEY (plan_id) REFERENCES stored_plan (id) ON DELETE CASCADE);
"""


async def stored_rows(conn: asyncpg.Connection) -> tuple[bytes, bytes]:
    """The plan rows and their first versions, as stored (sealed), in COPY's binary form."""
    plans, versions = io.BytesIO(), io.BytesIO()
    await conn.copy_from_query("SELECT * FROM plan", output=plans, format="binary")
    await conn.copy_from_query(
        "SELECT * FROM plan_version WHERE version = 1", output=versions, format="binary"
    )
    return plans.getvalue(), versions.getvalue()


async def stored_round(conn: asyncpg.Connection, rows: tuple[bytes, bytes]) -> float:
    await conn.execute(_STORED_TABLES)
    plans, versions = rows
    started = time.perf_counter()
    async with conn.transaction():
        await conn.copy_to_table("stored_plan", source=_Chunks(plans), format="binary")
        await conn.copy_to_table("stored_plan_version", source=_Chunks(versions), format="binary")
    return time.perf_counter() - started


class _Chunks:
    """The record lines as an async iterable of 1 MB chunks (as psql's \\copy sends them)."""

    def __init__(self, data: bytes, size: int = 1 << 20) -> None:
        self.data, self.size = data, size

    async def __aiter__(self) -> Any:
        for i in range(0, len(self.data), self.size):
            yield self.data[i : i + self.size]


async def upload_round(
    db: PgDatabase, data: bytes, count: int, profile: cProfile.Profile | None
) -> tuple[float, float]:
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    parsed = parse_upload(data, content_type=None, filename="bench.csv")
    parsed_at = time.perf_counter()
    if isinstance(parsed, UploadRejected):
        raise BenchError(f"the generated file was refused: {parsed.reason}")
    ack, applied = await apply_upload(db, SystemClock(), parsed)
    done = time.perf_counter()
    if profile is not None:
        profile.disable()
    if not applied or ack.file_code != "CPF02" or ack.summary != {"CPR06": count}:
        raise BenchError(f"the upload was not applied in full: {ack.file_code} {ack.summary}")
    return parsed_at - started, done - parsed_at


def sealing_time(vault: FieldVault, parsed: ParsedUpload) -> float:
    """The adapter's subject keys and plan_version rows for every upsert, alone (no database)."""
    plans = [
        (r.plan_id, r.fields)
        for r in parsed.records
        if r.action is RecordAction.UPSERT and r.plan_id and r.fields
    ]
    first: dict[str, list[Any]] = {plan_id: [uuid.uuid4(), 1] for plan_id, _ in plans}
    at = datetime.now(UTC)
    started = time.perf_counter()
    for _, fields in plans:
        vault.subject_key(fields.nhs_number)
    for _ in PgTransaction(None, vault)._version_rows(plans, first, at, None):  # type: ignore[arg-type]
        pass
    return time.perf_counter() - started


async def run(args: argparse.Namespace, db_url: str) -> Results:
    env = os.environ | {"CPIS_DATABASE_URL": db_url}
    settings = Settings.from_env(env)
    vault = FieldVault.from_keys(load_keys(settings, log=_Quiet()))
    pool = await create_pool(db_url, min_size=2, max_size=2, statement_timeout_ms=600_000)
    times = StatementTimes()
    try:
        await migrate(pool)
        db = PgDatabase(pool, vault)
        await db.upsert_la(LA)
        # Both pooled connections log their statements' times; the raw COPY uses its own.
        held = [await pool.acquire() for _ in range(2)]
        for conn in held:
            conn.add_query_logger(times)
        for conn in held:
            await pool.release(conn)
        records = record_lines(args.records, seed=args.seed)
        results = Results(args.records, len(upload_file(records, args.records, 1)))
        raw = await asyncpg.connect(db_url)
        stored: tuple[bytes, bytes] | None = None
        try:
            for n in range(1, args.rounds + 1):
                copy_s = await copy_round(raw, records)
                data = upload_file(records, args.records, n)
                times.current.clear()
                profile = cProfile.Profile() if args.profile and n == args.rounds else None
                parse_s, apply_s = await upload_round(db, data, args.records, profile)
                if stored is None:
                    stored = await stored_rows(raw)
                stored_s = await stored_round(raw, stored)
                # asyncpg's logger does not see a COPY: it is in the rest of the apply.
                times.current[_REST] = apply_s - sum(times.current.values())
                for name, elapsed in times.current.items():
                    results.statements.setdefault(name, []).append(elapsed)
                kind = "creates every plan" if n == 1 else "replaces every plan"
                done = Round(copy_s, parse_s, apply_s, stored_s, kind)
                results.rounds.append(done)
                print(
                    f"  round {n}: copy {copy_s:.2f}s, upload {done.upload_s:.2f}s"
                    f" (parse {parse_s:.2f}s + apply {apply_s:.2f}s; {kind}),"
                    f" stored copy {stored_s:.2f}s; ratios {done.ratio:.2f},"
                    f" {done.stored_ratio:.2f}",
                    flush=True,
                )
                if profile is not None:
                    profile.dump_stats(args.profile)
            await raw.execute("DROP TABLE IF EXISTS raw_upload, stored_plan_version, stored_plan")
        finally:
            await raw.close()
        parsed = parse_upload(upload_file(records, args.records, 1), content_type="text/csv")
        assert not isinstance(parsed, UploadRejected)
        results.sealing_s = sealing_time(vault, parsed)
        return results
    finally:
        await pool.close()


def report(results: Results) -> bool:
    n = results.records
    print(f"\n{n:,} records, {results.file_bytes / 1e6:.1f} MB CSV\n")
    print(
        f"{'round':<7}{'COPY':>7}{'stored':>8}{'upload':>8}{'parse':>7}{'apply':>7}"
        f"{'ratio':>8}{'vs stored':>11}"
    )
    for i, r in enumerate(results.rounds, start=1):
        print(
            f"{i:<7}{r.copy_s:>7.2f}{r.stored_s:>8.2f}{r.upload_s:>8.2f}{r.parse_s:>7.2f}"
            f"{r.apply_s:>7.2f}{r.ratio:>8.2f}{r.stored_ratio:>11.2f}   {r.kind}"
        )
    print("(seconds; COPY: the file's rows into a plain table; stored: the sealed rows into")
    print(" tables shaped and indexed like plan and plan_version)")
    met = results.ratio <= TARGET_RATIO
    verdict = "met" if met else "MISSED"
    print(
        f"\nupload / COPY (SPEC §8), all rounds: {results.ratio:.2f}"
        f" (target <= {TARGET_RATIO:g}: {verdict})"
    )
    print(f"upload / stored-shape COPY, all rounds: {results.stored_ratio:.2f}")
    print("\nwhere an upload's time goes (median per round):")
    parse = statistics.median(r.parse_s for r in results.rounds)
    print(f"  {'parse (cpis.formats.upload_file)':<42}{parse:>7.2f}s")
    for name, values in sorted(
        results.statements.items(), key=lambda kv: -statistics.median(kv[1])
    ):
        print(f"  {'SQL: ' + name:<42}{statistics.median(values):>7.2f}s")
    print(
        f"  {'sealing + subject keys (timed alone)':<42}{results.sealing_s:>7.2f}s"
        "   (inside the rest above)"
    )
    return met


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", type=int, default=100_000, help="records in the file")
    p.add_argument("--rounds", type=int, default=3, help="copy/upload rounds, alternating")
    p.add_argument("--seed", type=int, default=4, help="seed for the synthetic records")
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument("--profile", type=Path, help="cProfile the last upload into this file")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args()

    # SIGTERM unwinds like Ctrl-C, so the finally below always cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="cpis-bench-upload-"))
    os.environ["CPIS_DATA_DIR"] = str(tmp / "cpis")
    external = os.environ.get("CPIS_DATABASE_URL")
    embedded = None
    server_url = ""
    name = f"cpis_bench_upload_{uuid.uuid4().hex[:8]}"
    created = False
    started = time.monotonic()
    try:
        print("bench/upload: setting up", flush=True)
        if external:
            server_url = external
        else:
            from cpis.adapters.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg", cleanup="delete")
            server_url = embedded.dsn
        asyncio.run(create_databases(server_url, [name], []))
        created = True
        results = asyncio.run(run(args, with_database(server_url, name)))
        met = report(results)
        if args.json:
            args.json.write_text(json.dumps(results.as_dict(), indent=2) + "\n")
        print(f"\n(whole benchmark {time.monotonic() - started:.0f}s)")
        return 1 if args.strict and not met else 0
    except BenchError as exc:
        print(f"bench/upload: {exc}", file=sys.stderr)
        return 1
    finally:
        if created:
            asyncio.run(drop_databases(server_url, [name]))
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
