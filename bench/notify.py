"""Benchmark notification delivery: access-to-delivery latency at a steady lookup load.

Run by ``bench/notify``. One embedded PostgreSQL (or ``CPIS_DATABASE_URL``)
holds a database for ``cpis serve``, which runs the dispatcher in-process (as
configured by default), and one for the lookup baseline
(``bench/baseline_app.py``). The service is seeded as ``bench/lookup`` seeds it;
then a rest-hook Subscription for the LA is inserted with SQL, pointing at a
receiver (this file with ``--receiver``, its own process) that records when
each event-notification Bundle arrives.

wrk (``bench/lookup.lua``) then drives first-view lookups at each steady rate,
so every lookup queues one notification. After each run the benchmark waits
(bounded) until every outbox row has been delivered, and reports, per rate:
lookups/s achieved, notifications delivered/s, p50/p99/max of receiver arrival
time minus the access event's ``occurred_at``, how much of that was spent
before fan-out, undelivered and duplicate counts. The baseline's peak req/s is
measured first in the same run, so each rate is also shown as a fraction of it.
See bench/README.md.

Exit status: 1 when a lookup failed, a notification arrived twice or with the
wrong focus, or a delivery went dead; 2 on a set-up error; otherwise 0. A rate
whose notifications are not all delivered within ``--drain`` seconds is
reported as MISSED (a backlog, not a loss: the rows are still queued) and
stops the higher rates; it fails the run only with ``--strict``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
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
from lookup import (
    LA_ODS,
    POOL_SIZE,
    Load,
    Run,
    put_plans,
    seed_baseline,
    seed_service_admin,
    token,
)

from cpis.matching.nhs_number import synthetic_numbers

MAX_WRK_SECONDS = 15

# --- the receiver (``notify.py --receiver PORT``, a process of its own) ---------


def receiver_main(port: int) -> None:
    """An LA's rest-hook endpoint on 127.0.0.1 that timestamps what arrives.

    GET /results?from=N returns the first arrivals from the N-th on, as
    [bundle id, focus AuditEvent id, arrival epoch seconds], and counters.
    """
    import orjson
    from aiohttp import web

    arrivals: list[tuple[str, str, float]] = []
    seen: set[str] = set()
    counts = {"duplicates": 0, "handshakes": 0, "other": 0}

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        bundle = orjson.loads(body)
        params = bundle["entry"][0]["resource"]["parameter"]
        kind = next((p["valueCode"] for p in params if p["name"] == "type"), "")
        if kind != "event-notification":
            counts["handshakes" if kind == "handshake" else "other"] += 1
            return web.Response(status=200)
        if bundle["id"] in seen:
            counts["duplicates"] += 1
            return web.Response(status=200)
        seen.add(bundle["id"])
        event = next(p for p in params if p["name"] == "notification-event")
        part = next(x for x in event["part"] if x["name"] == "focus")
        focus = part["valueReference"]["reference"]
        arrivals.append((bundle["id"], focus.rsplit("/", 1)[-1], at))
        return web.Response(status=200)

    async def results(request: web.Request) -> web.Response:
        start = int(request.query.get("from", "0"))
        return web.json_response({"arrivals": arrivals[start:], "received": len(arrivals)} | counts)

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/results", results)
    app.router.add_get("/readyz", lambda _r: web.Response(text="ok"))
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


def receiver_results(port: int, start: int) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/results?from={start}"
    with urllib.request.urlopen(url, timeout=10) as resp:
        return dict(json.loads(resp.read()))


# --- the subscription and the queue ----------------------------------------------


async def subscribe(url: str, endpoint: str, deadline: float) -> uuid.UUID:
    """A rest-hook Subscription for the LA, inserted as the API would; waits for 'active'."""
    sub_id = uuid.uuid4()
    conn = await asyncpg.connect(url)
    try:
        now = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint, headers,"
            " payload, timeout_seconds, created_at, updated_at)"
            " VALUES ($1, $2, 'bench-la', 'requested', 'topic', $3, '{}', 'id-only', 5, $4, $4)",
            sub_id,
            LA_ODS,
            endpoint,
            now,
        )
        while time.monotonic() < deadline:
            status, error = await conn.fetchrow(
                "SELECT status, error FROM subscription WHERE id = $1", sub_id
            )
            if status == "active":
                return sub_id
            if status == "error":
                raise BenchError(f"subscription handshake failed: {error}")
            await asyncio.sleep(0.05)
        raise BenchError("subscription not active in time (is the dispatcher running?)")
    finally:
        await conn.close()


@dataclass
class Queue:
    outbox_pending: int
    deliveries_pending: int
    deliveries_dead: int


async def queue_state(url: str) -> Queue:
    conn = await asyncpg.connect(url)
    try:
        r = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM outbox WHERE state = 'pending'),"
            " (SELECT count(*) FROM delivery WHERE state = 'pending'),"
            " (SELECT count(*) FROM delivery WHERE state = 'dead')"
        )
        return Queue(*r)
    finally:
        await conn.close()


async def notifications(url: str, known: set[str]) -> dict[str, tuple[str, float, float | None]]:
    """Outbox rows not in ``known``: notification id -> (access event id, occurred_at,
    delivery created_at, i.e. when it was fanned out), times as epoch seconds."""
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            "SELECT o.notification_id, e.id AS event_id, e.occurred_at, d.created_at AS fanned_at"
            " FROM outbox o JOIN access_event e ON e.id = o.access_event_id"
            " LEFT JOIN delivery d ON d.notification_id = o.notification_id"
            "   AND d.channel = 'rest-hook'"
        )
    finally:
        await conn.close()
    out = {}
    for r in rows:
        nid = str(r["notification_id"])
        if nid not in known:
            fanned = r["fanned_at"].timestamp() if r["fanned_at"] is not None else None
            out[nid] = (str(r["event_id"]), r["occurred_at"].timestamp(), fanned)
    return out


async def explain_claim(url: str) -> str:
    """The plan and timing of the dispatcher's claim query, on the queue as it is now
    (in a transaction rolled back, so nothing stays locked)."""
    from cpis.adapters.postgres import _outbox as outbox_store

    claim = getattr(outbox_store, "_CLAIM", None)
    if claim is None:
        return "(no _CLAIM query in cpis.adapters.postgres._outbox to explain)"
    conn = await asyncpg.connect(url)
    try:
        tr = conn.transaction()
        await tr.start()
        try:
            rows = await conn.fetch("EXPLAIN (ANALYZE, BUFFERS) " + claim, datetime.now(UTC))
        finally:
            await tr.rollback()
        return "\n".join(r[0] for r in rows)
    finally:
        await conn.close()


# --- one steady rate ---------------------------------------------------------------


@dataclass
class RateResult:
    rate: float
    lookups: Run
    notified: int
    delivered: int
    undelivered: int
    duplicates: int
    focus_mismatches: int
    delivered_per_s: float
    drain_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    fanout_p50_ms: float
    fanout_p99_ms: float
    send_p50_ms: float
    send_p99_ms: float

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "lookups"}
        d["lookups_per_s"] = round(self.lookups.rps, 1)
        d["lookup_p50_ms"] = self.lookups.p50_ms
        d["lookup_p99_ms"] = self.lookups.p99_ms
        d["lookup_failures"] = self.lookups.failures
        return d


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


@dataclass
class Bench:
    load: Load
    port: int
    db: str
    recv_port: int
    deadline: float
    known: set[str]
    received: int = 0
    duplicates: int = 0

    def wait_drained(self, expected: int, limit: float) -> float:
        """Seconds until the receiver has ``expected`` more first arrivals and the
        queue is empty (bounded by ``limit`` and the benchmark's deadline)."""
        t0 = time.monotonic()
        end = min(t0 + limit, self.deadline)
        while time.monotonic() < end:
            got = receiver_results(self.recv_port, self.received)["received"] - self.received
            if got >= expected:
                q = asyncio.run(queue_state(self.db))
                if q.outbox_pending == 0 and q.deliveries_pending == 0:
                    break
            time.sleep(0.1)
        return time.monotonic() - t0

    def run(self, rate: float, seconds: int, drain_limit: float) -> RateResult:
        wall0 = time.time()
        lookups = self.load.run(self.port, seconds, rate)
        wall1 = time.time()
        fresh = asyncio.run(notifications(self.db, self.known))
        self.wait_drained(len(fresh), drain_limit)
        fresh = asyncio.run(notifications(self.db, self.known))
        res = receiver_results(self.recv_port, self.received)
        arrivals = {bid: (focus, at) for bid, focus, at in res["arrivals"]}
        self.received = res["received"]
        dups = res["duplicates"] - self.duplicates
        self.duplicates = res["duplicates"]
        self.known |= fresh.keys()

        latencies, fanout, send, mismatched = [], [], [], 0
        for nid, (event_id, occurred, fanned) in fresh.items():
            if fanned is not None:
                fanout.append((fanned - occurred) * 1000)
            if nid not in arrivals:
                continue
            focus, at = arrivals[nid]
            mismatched += focus != event_id
            latencies.append((at - occurred) * 1000)
            if fanned is not None:
                send.append((at - fanned) * 1000)
        delivered = len(latencies)
        last = max((at for _f, at in arrivals.values()), default=wall1)
        return RateResult(
            rate=rate,
            lookups=lookups,
            notified=len(fresh),
            delivered=delivered,
            undelivered=len(fresh) - delivered,
            duplicates=dups,
            focus_mismatches=mismatched + len(set(arrivals) - fresh.keys()),
            delivered_per_s=delivered / max(1e-3, last - wall0),
            drain_s=max(0.0, last - wall1),
            p50_ms=pct(latencies, 50),
            p99_ms=pct(latencies, 99),
            max_ms=max(latencies, default=float("nan")),
            fanout_p50_ms=pct(fanout, 50),
            fanout_p99_ms=pct(fanout, 99),
            send_p50_ms=pct(send, 50),
            send_p99_ms=pct(send, 99),
        )


# --- the benchmark ----------------------------------------------------------------


def report(base_peak: Run, results: list[RateResult], args: argparse.Namespace) -> None:
    print()
    print(
        f"Notification delivery at steady first-view lookup load: one LA, one rest-hook "
        f"Subscription (id-only),\ndispatcher inside `cpis serve`; wrk -t{args.threads} "
        f"-c{args.connections}, {args.duration}s per rate; {os.cpu_count()} CPUs shared by all"
    )
    print(
        f"lookup baseline (bare aiohttp + asyncpg) peak: {base_peak.rps:.0f} req/s "
        f"(p50 / p99 {base_peak.p50_ms:.1f} / {base_peak.p99_ms:.1f} ms)"
    )
    print()
    cols = [f"{r.rate:.0f}/s" for r in results]

    def row(label: str, cells: list[str]) -> None:
        print(f"{label:40}" + "".join(f"{c:>14}" for c in cells))

    row("target lookup rate", cols)
    row("  as a fraction of the baseline peak", [f"{r.rate / base_peak.rps:.2f}" for r in results])
    row("lookups/s achieved", [f"{r.lookups.rps:.0f}" for r in results])
    row(
        "  lookup p50 / p99 (ms)",
        [f"{r.lookups.p50_ms:.1f} / {r.lookups.p99_ms:.1f}" for r in results],
    )
    row("notifications queued", [str(r.notified) for r in results])
    row("notifications delivered/s", [f"{r.delivered_per_s:.0f}" for r in results])
    row("access-to-delivery p50 (ms)", [f"{r.p50_ms:.0f}" for r in results])
    row("access-to-delivery p99 (ms)", [f"{r.p99_ms:.0f}" for r in results])
    row("access-to-delivery max (ms)", [f"{r.max_ms:.0f}" for r in results])
    row(
        "  of which access-to-fan-out p50/p99",
        [f"{r.fanout_p50_ms:.0f} / {r.fanout_p99_ms:.0f}" for r in results],
    )
    row(
        "  fan-out to arrival p50/p99",
        [f"{r.send_p50_ms:.0f} / {r.send_p99_ms:.0f}" for r in results],
    )
    row("drain after load stopped (s)", [f"{r.drain_s:.1f}" for r in results])
    row("undelivered after the drain (target 0)", [str(r.undelivered) for r in results])
    row("duplicates received", [str(r.duplicates) for r in results])
    row("wrong focus / unknown id", [str(r.focus_mismatches) for r in results])
    row("lookup non-2xx + socket errors", [str(r.lookups.failures) for r in results])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--receiver", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument(
        "--rates", default="50,200,400", help="steady lookup rates, req/s (comma-separated)"
    )
    p.add_argument("--duration", type=int, default=10, help="seconds per rate (max 15)")
    p.add_argument("--drain", type=float, default=30, help="max seconds to wait for delivery")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--connections", type=int, default=16, help="wrk connections")
    p.add_argument("--subjects", type=int, default=1000, help="subjects with a plan")
    p.add_argument("--budget", type=float, default=170, help="whole-run limit, seconds")
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a rate's notifications did not drain"
    )
    args = p.parse_args()
    if args.receiver:
        receiver_main(args.receiver)
        return 0
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (run bench/notify, which installs it)", file=sys.stderr)
        return 2
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    seconds = min(args.duration, MAX_WRK_SECONDS)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    deadline = started + args.budget
    tmp = Path(tempfile.mkdtemp(prefix="cpis-bench-notify-"))
    procs = Processes(tmp)
    external = os.environ.get("CPIS_DATABASE_URL")
    embedded = None
    suffix = uuid.uuid4().hex[:8]
    dbs = [f"cpis_bench_notify_{suffix}", f"cpis_bench_notify_base_{suffix}"]
    created = False
    server_url = ""
    try:
        print("bench/notify: setting up", flush=True)
        if external:
            server_url = external
        else:
            from cpis.adapters.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg", cleanup="delete")
            server_url = embedded.dsn
        asyncio.run(create_databases(server_url, dbs, []))
        created = True
        svc_db, base_db = (with_database(server_url, name) for name in dbs)
        subjects = synthetic_numbers(args.subjects, start=100_000)
        subjects_file = tmp / "subjects.txt"
        subjects_file.write_text("\n".join(subjects) + "\n")

        svc_port, base_port, recv_port = free_port(), free_port(), free_port()
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
            # What is measured: delivery by the dispatcher inside `cpis serve`.
            "CPIS_WORKERS_IN_SERVE": "true",
            # its receivers listen on loopback (public addresses only by default)
            "CPIS_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
        seed_service_admin(svc_env, tmp)
        procs.start("service", [str(VENV_BIN / "cpis"), "serve"], svc_env)
        procs.start(
            "receiver",
            [str(VENV_BIN / "python"), str(Path(__file__)), "--receiver", str(recv_port)],
            dict(os.environ),
        )
        hash_key = secrets.token_bytes(32)
        asyncio.run(seed_baseline(base_db, subjects, hash_key))
        base_env = os.environ | {
            "BASELINE_DATABASE_URL": base_db,
            "BASELINE_PORT": str(base_port),
            "BASELINE_HASH_KEY": hash_key.hex(),
        }
        procs.start(
            "baseline",
            [str(VENV_BIN / "python"), str(ROOT / "bench" / "baseline_app.py")],
            base_env,
        )
        for port in (svc_port, base_port, recv_port):
            wait_ready(f"http://127.0.0.1:{port}/readyz", procs)
        la_token = token(svc_env, "bench-la", tmp / "bench-la.pem")
        asyncio.run(put_plans(f"http://127.0.0.1:{svc_port}", la_token, subjects))
        asyncio.run(subscribe(svc_db, f"http://127.0.0.1:{recv_port}/hook", time.monotonic() + 15))
        load = Load(
            subjects_file,
            token(svc_env, "bench-ed", tmp / "bench-ed.pem"),
            args.threads,
            args.connections,
            procs,
        )
        print(
            f"  {args.subjects} subjects seeded, subscription active "
            f"({time.monotonic() - started:.0f}s)",
            flush=True,
        )

        print("  lookup baseline: warm-up 3s, then peak 10s", flush=True)
        load.run(base_port, 3)
        base_peak = load.run(base_port, 10)
        print(f"    {base_peak.rps:.0f} req/s", flush=True)

        bench = Bench(load, svc_port, svc_db, recv_port, deadline, known=set())
        print(f"  service warm-up: 3s at {rates[0]:.0f} req/s", flush=True)
        bench.run(rates[0], 3, args.drain)
        results = []
        for rate in rates:
            if time.monotonic() + seconds + 5 > deadline:
                print(f"  skipping {rate:.0f} req/s: out of time (--budget)", flush=True)
                continue
            print(f"  {rate:.0f} req/s for {seconds}s, then drain", flush=True)
            r = bench.run(rate, seconds, args.drain)
            print(
                f"    {r.lookups.rps:.0f} lookups/s, {r.delivered} of {r.notified} delivered, "
                f"p50 {r.p50_ms:.0f} ms, p99 {r.p99_ms:.0f} ms",
                flush=True,
            )
            results.append(r)
            if r.undelivered:
                print(
                    f"  {r.undelivered} notifications still queued after {args.drain:.0f}s: "
                    "the dispatcher fell behind; higher rates would only measure the backlog",
                    flush=True,
                )
                break
        procs.check_alive()
        report(base_peak, results, args)
        q = asyncio.run(queue_state(svc_db))
        print(
            f"\nqueue at the end: {q.outbox_pending} outbox rows and {q.deliveries_pending} "
            f"deliveries pending, {q.deliveries_dead} dead"
        )
        if args.json:
            doc = {
                "baseline_peak_rps": round(base_peak.rps, 1),
                "rates": [r.as_dict() for r in results],
            }
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"(whole benchmark {time.monotonic() - started:.0f}s)")
        if q.deliveries_pending:
            print("\nthe dispatcher's claim query on the queue left behind:")
            print(asyncio.run(explain_claim(svc_db)))
        bad = sum(r.lookups.failures + r.focus_mismatches + r.duplicates for r in results)
        if bad or q.deliveries_dead or not results:
            print(
                "\nFAILED: failed lookups, wrong or duplicate notifications, or dead "
                f"deliveries (see above)\nservice log:\n{procs.tail('service')}",
                file=sys.stderr,
            )
            return 1
        backlog = sum(r.undelivered for r in results)
        if backlog:
            print(
                f"\nMISSED: {backlog} notifications not delivered within {args.drain:.0f}s "
                "of the load stopping (queued, not lost)"
            )
        return 1 if args.strict and (backlog or len(results) < len(rates)) else 0
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        try:
            procs.stop_all()
            if created and external:
                try:
                    asyncio.run(drop_databases(server_url, dbs))
                except Exception as exc:  # best effort on the way out
                    print(f"bench: could not drop {dbs}: {exc}", file=sys.stderr)
            if embedded is not None:
                embedded.stop()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
