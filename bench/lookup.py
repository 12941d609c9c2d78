"""Benchmark the unscheduled lookup against a bare aiohttp + asyncpg baseline (SPEC §8).

Run by ``bench/lookup`` (``make bench``). One PostgreSQL (embedded in a
temporary directory, or ``CPIS_DATABASE_URL``) holds two fresh databases: one
for ``cpis serve``, seeded through the CLI and the LA plan API, and one for
``bench/baseline_app.py``, seeded with as many rows. wrk (``bench/lookup.lua``)
then finds each server's peak throughput and the latency of each at half the
baseline's peak, and prints CPU per request by process. ``--pg-waits`` and
``--py-spy`` say where the service's time goes (``bench/diagnostics.py``).
See bench/README.md for the method, the figures and what dominates.

Exit status: 0 when every response was 2xx (targets missed are reported but
only fail with ``--strict``), 1 when any request failed, 2 on a set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import baseline_app
from diagnostics import CpuMeter, WaitSampler, py_spy_record
from harness import (
    ROOT,
    VENV_BIN,
    BenchError,
    Processes,
    create_databases,
    drop_databases,
    free_port,
    run_cli,
    wait_ready,
    with_database,
)

from cpis.matching.nhs_number import synthetic_numbers

LUA = ROOT / "bench" / "lookup.lua"

LA_ODS = "XBN01"
ED_ODS = "XBE01"
POOL_SIZE = baseline_app.POOL_SIZE
TARGET_RATIO = 0.6
TARGET_P99_MS = 25.0
MAX_WRK_SECONDS = 15


async def seed_baseline(url: str, subjects: list[str], hash_key: bytes) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(baseline_app.SCHEMA)
        rows = [
            (
                baseline_app.subject_key(hash_key, nhs),
                json.dumps({"plan_type": "CPP", "start_date": "2026-01-15", "la": LA_ODS}),
            )
            for nhs in subjects
        ]
        await conn.copy_records_to_table("plan", records=rows, columns=["subject_key", "payload"])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


# --- seeding the service -----------------------------------------------------


def plan_body(i: int, nhs: str) -> dict[str, Any]:
    plan_type = ("CPP", "LAC", "UCPP")[i % 3]
    body: dict[str, Any] = {
        "nhs_number": nhs,
        "plan_type": plan_type,
        "start_date": "2026-01-15",
        "family_name": "Benchchild",
        "given_name": f"Subject{i}",
    }
    if plan_type != "UCPP":
        body["birth_date"] = "2015-06-01"
    return body


async def put_plans(base_url: str, token: str, subjects: list[str]) -> None:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    queue = list(enumerate(subjects))
    timeout = aiohttp.ClientTimeout(total=30)

    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:

        async def worker() -> None:
            while queue:
                i, nhs = queue.pop()
                url = f"{base_url}/la/v1/plans/BENCH-{i:06d}"
                async with session.put(url, json=plan_body(i, nhs)) as resp:
                    if resp.status not in (200, 201):
                        raise BenchError(f"PUT plan {i}: {resp.status} {await resp.text()}")

        await asyncio.gather(*(worker() for _ in range(8)))


def seed_service_admin(env: dict[str, str], keys: Path) -> None:
    """The database and keys (`cpis migrate`), then the LA and the two clients, through
    the CLI, before the service starts."""
    run_cli(["migrate"], env)
    run_cli(
        [
            "la",
            "add",
            "--ods",
            LA_ODS,
            "--name",
            "Benchshire County Council",
            "--office-phone",
            "01632 960100",
            "--edt-phone",
            "01632 960199",
        ],
        env,
    )
    run_cli(
        [
            "client",
            "add",
            "--id",
            "bench-ed",
            "--role",
            "health",
            "--ods",
            ED_ODS,
            "--new-key",
            str(keys / "bench-ed.pem"),
            "--setting-type",
            "ED",
            "--org-name",
            "Benchshire General Hospital Emergency Department",
        ],
        env,
    )
    run_cli(
        [
            "client",
            "add",
            "--id",
            "bench-la",
            "--role",
            "la",
            "--ods",
            LA_ODS,
            "--new-key",
            str(keys / "bench-la.pem"),
        ],
        env,
    )


def token(env: dict[str, str], client: str, key: Path) -> str:
    return run_cli(["token", "--client", client, "--key", str(key)], env)


# --- load --------------------------------------------------------------------


@dataclass
class Run:
    requests: int
    seconds: float
    non2xx: int
    first_bad_status: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # CPU milliseconds per request, by process: filled in for the peak runs.
    cpu_ms: dict[str, float] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def failures(self) -> int:
        return self.non2xx + self.socket_errors


@dataclass
class Load:
    """wrk against one server with the shared Lua script."""

    subjects_file: Path
    token: str
    threads: int
    connections: int
    procs: Processes
    runs: int = 0

    def run(self, port: int, seconds: int, rate: float = 0) -> Run:
        seconds = min(seconds, MAX_WRK_SECONDS)
        self.runs += 1
        env = os.environ | {
            "BENCH_SUBJECTS": str(self.subjects_file),
            "BENCH_TOKEN": self.token,
            "BENCH_ORG": ED_ODS,
            "BENCH_THREADS": str(self.threads),
            "BENCH_OFFSET": str(self.runs * 10_000_000),
            "BENCH_RATE": f"{rate:.1f}",
        }
        argv = [
            "wrk",
            f"-t{self.threads}",
            f"-c{self.connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(LUA),
            f"http://127.0.0.1:{port}/",
        ]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
        )
        self.procs.check_alive()
        line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
        if done.returncode != 0 or line is None:
            raise BenchError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        r = json.loads(line.removeprefix("BENCH_RESULT "))
        lat = r["latency_us"]
        errors = r["errors"]
        return Run(
            requests=r["requests"],
            seconds=r["duration_us"] / 1e6,
            non2xx=r["non2xx"],
            first_bad_status=r["first_bad_status"],
            socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
            p50_ms=lat["p50"] / 1000,
            p90_ms=lat["p90"] / 1000,
            p99_ms=lat["p99"] / 1000,
            max_ms=lat["max"] / 1000,
        )


# --- the benchmark -------------------------------------------------------------


@dataclass
class Results:
    base_peak: Run
    svc_peak: Run
    rate: float
    base_half: Run
    svc_half: Run

    @property
    def ratio(self) -> float:
        return self.svc_peak.rps / self.base_peak.rps

    @property
    def runs(self) -> tuple[Run, ...]:
        return (self.base_peak, self.svc_peak, self.base_half, self.svc_half)

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.runs)

    def as_dict(self) -> dict[str, Any]:
        def run(r: Run) -> dict[str, Any]:
            return {
                "requests": r.requests,
                "seconds": round(r.seconds, 2),
                "rps": round(r.rps, 1),
                "p50_ms": r.p50_ms,
                "p90_ms": r.p90_ms,
                "p99_ms": r.p99_ms,
                "max_ms": r.max_ms,
                "non2xx": r.non2xx,
                "socket_errors": r.socket_errors,
                "cpu_ms_per_request": r.cpu_ms,
            }

        return {
            "baseline_peak": run(self.base_peak),
            "service_peak": run(self.svc_peak),
            "half_rate": round(self.rate, 1),
            "baseline_half": run(self.base_half),
            "service_half": run(self.svc_half),
            "ratio": round(self.ratio, 3),
        }


def report(res: Results, args: argparse.Namespace) -> bool:
    ok_ratio = res.ratio >= TARGET_RATIO
    ok_p99 = res.svc_half.p99_ms < TARGET_P99_MS
    ok_rate = res.svc_half.rps >= 0.95 * res.rate
    mark = {True: "ok", False: "MISSED"}

    def row(label: str, base: str, svc: str) -> None:
        print(f"{label:36}{base:>14}{svc:>14}")

    def p50_p99(r: Run) -> str:
        return f"{r.p50_ms:.1f} / {r.p99_ms:.1f}"

    sides = (res.base_peak, res.base_half), (res.svc_peak, res.svc_half)
    bad = [str(sum(r.non2xx for r in side)) for side in sides]
    errs = [str(sum(r.socket_errors for r in side)) for side in sides]
    print()
    print(
        f"Unscheduled lookup vs bare aiohttp + asyncpg: wrk -t{args.threads} "
        f"-c{args.connections}, {args.subjects} subjects, pool {POOL_SIZE},"
    )
    print(f"{os.cpu_count()} CPUs shared by wrk, both servers and PostgreSQL")
    print()
    row("", "baseline", "service")
    row("peak throughput (req/s)", f"{res.base_peak.rps:.0f}", f"{res.svc_peak.rps:.0f}")
    row("  p50 / p99 at peak (ms)", p50_p99(res.base_peak), p50_p99(res.svc_peak))
    for who in ("server", "postgres", "wrk"):
        row(
            f"  CPU per request, {who} (ms)",
            f"{res.base_peak.cpu_ms.get(who, 0):.3f}",
            f"{res.svc_peak.cpu_ms.get(who, 0):.3f}",
        )
    print(f"at half the baseline peak, {res.rate:.0f} req/s:")
    row("  achieved (req/s)", f"{res.base_half.rps:.0f}", f"{res.svc_half.rps:.0f}")
    row("  p50 latency (ms)", f"{res.base_half.p50_ms:.2f}", f"{res.svc_half.p50_ms:.2f}")
    row("  p99 latency (ms)", f"{res.base_half.p99_ms:.2f}", f"{res.svc_half.p99_ms:.2f}")
    row("non-2xx responses (all runs)", *bad)
    row("socket errors, timeouts (all runs)", *errs)
    print()
    print(
        f"ratio service/baseline      {res.ratio:6.2f}   target >= {TARGET_RATIO}    "
        f"{mark[ok_ratio]}"
    )
    print(
        f"service p99 at half load   {res.svc_half.p99_ms:6.2f}   target < {TARGET_P99_MS:.0f} ms  "
        f"{mark[ok_p99]}"
    )
    if not ok_rate:
        print(
            f"note: the service managed only {res.svc_half.rps:.0f} of {res.rate:.0f} req/s "
            "in its latency run, so that p99 is of an overloaded server"
        )
    return ok_ratio and ok_p99


def measure(
    load: Load,
    base_port: int,
    svc_port: int,
    args: argparse.Namespace,
    *,
    base_pid: int,
    svc_pid: int,
    server_url: str,
    svc_db: str,
) -> Results:
    def step(what: str) -> None:
        print(f"  {what}", flush=True)

    step(f"warm-up {args.warmup}s, then peak {args.duration}s: baseline")
    load.run(base_port, args.warmup)
    with CpuMeter(server_url, base_pid) as cpu:
        base_peak = load.run(base_port, args.duration)
    base_peak.cpu_ms = cpu.per_request_ms(base_peak.requests)
    step(f"  {base_peak.rps:.0f} req/s")
    step(f"warm-up {args.warmup}s, then peak {args.duration}s: service")
    load.run(svc_port, args.warmup)
    spy = py_spy_record(svc_pid, args.duration, args.py_spy) if args.py_spy else None
    waits = WaitSampler(server_url, svc_db) if args.pg_waits else contextlib.nullcontext()
    with waits, CpuMeter(server_url, svc_pid) as cpu:
        svc_peak = load.run(svc_port, args.duration)
    svc_peak.cpu_ms = cpu.per_request_ms(svc_peak.requests)
    step(f"  {svc_peak.rps:.0f} req/s")
    if spy is not None:
        spy.wait(timeout=60)
        step(f"  profile written to {args.py_spy}")
    if isinstance(waits, WaitSampler):
        waits.print()
    rate = base_peak.rps / 2
    step(f"latency at {rate:.0f} req/s, {args.duration}s each: baseline, service")
    base_half = load.run(base_port, args.duration, rate)
    svc_half = load.run(svc_port, args.duration, rate)
    return Results(base_peak, svc_peak, rate, base_half, svc_half)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run (max 15)")
    p.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each peak")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=32, help="wrk connections")
    p.add_argument("--subjects", type=int, default=1000, help="subjects with a plan")
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument(
        "--py-spy",
        type=Path,
        help="profile the service's peak run to this file "
        "(.svg flame graph, .json speedscope or .txt collapsed stacks); needs py-spy",
    )
    p.add_argument(
        "--pg-waits",
        action="store_true",
        help="sample the service database's wait events during its peak run",
    )
    p.add_argument(
        "--pg-set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a PostgreSQL setting for both databases (experiments, e.g. synchronous_commit=off)",
    )
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = p.parse_args()
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (run bench/lookup, which installs it)", file=sys.stderr)
        return 2

    # SIGTERM unwinds like Ctrl-C, so the finally below always cleans up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmp = Path(tempfile.mkdtemp(prefix="cpis-bench-"))
    procs = Processes(tmp)
    external = os.environ.get("CPIS_DATABASE_URL")
    embedded = None
    server_url = ""
    suffix = uuid.uuid4().hex[:8]
    dbs = [f"cpis_bench_svc_{suffix}", f"cpis_bench_base_{suffix}"]
    created = False
    started = time.monotonic()
    try:
        print("bench/lookup: setting up", flush=True)
        if external:
            server_url = external
        else:
            from cpis.adapters.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg", cleanup="delete")
            server_url = embedded.dsn
        asyncio.run(create_databases(server_url, dbs, args.pg_set))
        created = True
        svc_db, base_db = (with_database(server_url, name) for name in dbs)
        subjects = synthetic_numbers(args.subjects, start=100_000)
        subjects_file = tmp / "subjects.txt"
        subjects_file.write_text("\n".join(subjects) + "\n")

        svc_port, base_port = free_port(), free_port()
        svc_env = os.environ | {
            "CPIS_DATABASE_URL": svc_db,
            "CPIS_DATA_DIR": str(tmp / "cpis"),
            "CPIS_PORT": str(svc_port),
            "CPIS_LOG_LEVEL": "warning",
            "CPIS_LOG_FORMAT": "json",
            "CPIS_RATE_LIMIT_PER_SECOND": "1000000",
            "CPIS_RATE_LIMIT_BURST": "1000000",
            "CPIS_SOURCE_RATE_LIMIT_PER_SECOND": "1000000",
            "CPIS_SOURCE_RATE_LIMIT_BURST": "1000000",
            "CPIS_DB_POOL_MAX": str(POOL_SIZE),
            # The lookup is what is measured here. Notification delivery is left
            # out (no worker runs; in production it may be its own `cpis worker`
            # process); the delivery pipeline needs its own benchmark (issue 3).
            "CPIS_WORKERS_IN_SERVE": "false",
        }
        seed_service_admin(svc_env, tmp)
        svc = procs.start("service", [str(VENV_BIN / "cpis"), "serve"], svc_env)

        hash_key = secrets.token_bytes(32)
        asyncio.run(seed_baseline(base_db, subjects, hash_key))
        base_env = os.environ | {
            "BASELINE_DATABASE_URL": base_db,
            "BASELINE_PORT": str(base_port),
            "BASELINE_HASH_KEY": hash_key.hex(),
        }
        base = procs.start(
            "baseline",
            [str(VENV_BIN / "python"), str(ROOT / "bench" / "baseline_app.py")],
            base_env,
        )

        wait_ready(f"http://127.0.0.1:{svc_port}/readyz", procs)
        wait_ready(f"http://127.0.0.1:{base_port}/readyz", procs)
        la_token = token(svc_env, "bench-la", tmp / "bench-la.pem")
        asyncio.run(put_plans(f"http://127.0.0.1:{svc_port}", la_token, subjects))
        load = Load(
            subjects_file,
            token(svc_env, "bench-ed", tmp / "bench-ed.pem"),
            args.threads,
            args.connections,
            procs,
        )
        print(
            f"  {args.subjects} subjects seeded in each database "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )

        results = measure(
            load,
            base_port,
            svc_port,
            args,
            base_pid=base.pid,
            svc_pid=svc.pid,
            server_url=server_url,
            svc_db=dbs[0],
        )
        met = report(results, args)
        if args.json:
            args.json.write_text(json.dumps(results.as_dict(), indent=2) + "\n")
        print(f"\n(whole benchmark {time.monotonic() - started:.0f}s)")
        if results.failures:
            statuses = sorted({r.first_bad_status for r in results.runs if r.first_bad_status})
            print(
                f"\nFAILED: {results.failures} requests did not get a 2xx answer "
                f"(statuses seen: {statuses or 'none; socket errors or timeouts'})\n"
                f"service log:\n{procs.tail('service')}\nbaseline log:\n{procs.tail('baseline')}",
                file=sys.stderr,
            )
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
                    asyncio.run(drop_databases(server_url, dbs))
            if embedded is not None:
                embedded.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
