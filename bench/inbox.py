"""Benchmark an LA's inbox with 10,000 unacknowledged attendances (issue 12, item 7).

Run by ``bench/inbox``. One PostgreSQL (embedded in a temporary directory, or
the server named by ``CPIS_DATABASE_URL``) holds one fresh database, migrated
and opened with :func:`cpis.app.build` as ``cpis serve`` opens it, with a clock
the benchmark moves. It registers two LAs: ``XLA01``, the busy one, and
``XLA09``, whose inbox is empty (the baseline). XLA01 gets ``--children``
plans, then ``--acknowledged`` + ``--attendances`` unscheduled lookups through
the lookup service (each by a different user, so every one notifies), a few
minutes apart, each of a child drawn at random; ``--acknowledged`` of them,
drawn at random, are then acknowledged. So the busy inbox has 10,000 new
attendances among 30,000 acknowledged ones, interleaved over 70 days.

Then, ``--samples`` times each, it times the page's data, the call the LA pages
and ``GET /la/v1/notifications`` make (:func:`cpis.services.inbox.page`, 25
children, 10 attendances each):

- **baseline**: the empty inbox's first page (the same statements, no rows);
- **first**: the busy inbox's first page;
- **deep**: the page halfway through, from its cursor;
- **last**: the last page;
- **acknowledged**: the first page of the acknowledged filter;

and the same first and deep pages over HTTP (the JSON route, an LA client's
real token, served in-process as ``cpis serve`` serves it; the client shares
the event loop, so this is an upper bound); the web inbox's HTML page, empty,
first and deep, as a signed-in caseworker gets it (the session looked up, the
page rendered, the view audited); last, the first and deep pages
again without migration 0004's partial index, dropped for the purpose
(the database is thrown away after). It prints p50, p95 and max in ms,
each p95 as a ratio to the baseline's, and the indexes PostgreSQL used for the
deep page, marked ``(by time)`` where the time is in the index condition (the
cursor must be, so that page N costs what page 1 does). Target: p95 under
200 ms for every busy page.

Exit status: 0 (a missed target is reported, and fails only with ``--strict``),
2 on a set-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from harness import BenchError, create_databases, drop_databases, free_port, with_database

from cpis.adapters.tokens import generate_client_key, make_client_assertion
from cpis.app import Runtime, Start, build, create_app
from cpis.log import configure_logging
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import (
    Accessor,
    AuditEntry,
    Client,
    LocalAuthority,
    Organisation,
    PlanFields,
    PlanType,
    Role,
    SettingType,
)
from cpis.model.la import InboxCursor, LaActor
from cpis.model.web import WebRole, WebSession, WebUser
from cpis.services import inbox, lookup, web_sign_in
from cpis.settings import Secret, Settings
from cpis.web.server import serving

BUSY = LocalAuthority("XLA01", "Benchshire", "01632 960001", "01632 960101", 24)
EMPTY = LocalAuthority("XLA09", "Quietborough", "01632 960009", "01632 960109", 24)
ED = Organisation("XED01", "Bench General Emergency Department", SettingType.ED)
TARGET_MS = 200.0
PAGE = 25
PER_CHILD = 10
CONCURRENCY = 8
SESSION_COOKIE = "cpis-session"  # served on plain-HTTP localhost: not a __Host- cookie


class BenchClock:
    """Now, as the benchmark sets it: lookups are spread over weeks."""

    def __init__(self, start: datetime) -> None:
        self.at = start

    def now(self) -> datetime:
        return self.at

    def today(self) -> date:
        return self.at.date()


@dataclass
class Timing:
    name: str
    samples: list[float]

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    def as_dict(self) -> dict[str, float]:
        return {
            "p50_ms": statistics.median(self.samples),
            "p95_ms": self.pct(0.95),
            "max_ms": max(self.samples),
        }


async def seed(rt: Runtime, clock: BenchClock, args: argparse.Namespace) -> None:
    db = rt.db
    await db.upsert_la(BUSY)
    await db.upsert_la(EMPTY)
    await db.upsert_organisation(ED)
    kids = synthetic_numbers(args.children, start=50_000)
    async with db.transaction() as tx:
        plans = [
            (f"B-{i}", PlanFields(nhs, PlanType.CPP, date(2025, 1, 6)))
            for i, nhs in enumerate(kids)
        ]
        await tx.put_plans(BUSY.ods_code, plans, clock.now())
    rng = random.Random(args.seed)
    total = args.acknowledged + args.attendances
    picks = [rng.choice(kids) for _ in range(total)]
    step = timedelta(days=70) / total
    next_n = 0

    async def worker() -> None:
        nonlocal next_n
        while next_n < total:
            n = next_n
            next_n += 1
            clock.at += step
            accessor = Accessor(
                "ed-bench", ED.ods_code, ED.name, ED.setting_type, f"user-{n}",
                "Bench Nurse", "Staff Nurse", f"trace-{n}",
            )  # fmt: skip
            await lookup.lookup(
                db, clock, nhs_number=picks[n], accessor=accessor, unscheduled=True,
                audit=AuditEntry(action="plan_search", outcome=200, client_id="ed-bench"),
            )  # fmt: skip
            if n and n % 5000 == 0:
                print(f"  {n} lookups", flush=True)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    # Acknowledged ones drawn at random from all of them, so new and acknowledged
    # attendances interleave in time (some old ones left unread, most recent ones read):
    # the harder case for a walk newest first, which must not wade through the read ones.
    async with rt.pool.acquire() as conn:
        every = [
            r["notification_id"]
            for r in await conn.fetch(
                "SELECT notification_id FROM outbox WHERE la_ods = $1 ORDER BY notification_id",
                BUSY.ods_code,
            )
        ]
    chosen = rng.sample(every, args.acknowledged)
    system = LaActor.system(BUSY.ods_code, "la-bench")
    for i in range(0, len(chosen), inbox.MAX_ACKNOWLEDGE):
        await inbox.acknowledge(rt.outbox, clock, actor=system, ids=chosen[i : i + 500])
    async with rt.pool.acquire() as conn:
        await conn.execute("ANALYZE")
        counts = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE acknowledged_at IS NULL) AS new,"
            " count(*) FILTER (WHERE acknowledged_at IS NOT NULL) AS acknowledged,"
            " count(DISTINCT subject_key) FILTER (WHERE acknowledged_at IS NULL) AS children"
            " FROM outbox WHERE la_ods = $1",
            BUSY.ods_code,
        )
    print(
        f"  {BUSY.ods_code}: {counts['new']} new attendances of {counts['children']} children,"
        f" {counts['acknowledged']} acknowledged; {EMPTY.ods_code}: none"
    )


async def timed(name: str, call: Callable[[], Awaitable[Any]], samples: int) -> Timing:
    for _ in range(min(10, samples)):
        await call()
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return Timing(name, out)


async def cursors(rt: Runtime, clock: BenchClock, actor: LaActor) -> list[InboxCursor | None]:
    """The cursor of every page of the actor's new inbox, the first page's None."""
    found: list[InboxCursor | None] = [None]
    while True:
        page = await inbox.page(rt.outbox, clock, actor=actor, after=found[-1], children=PAGE)
        if page.next is None:
            return found
        found.append(page.next)


async def used_indexes(rt: Runtime, actor: LaActor, after: InboxCursor, clock: BenchClock) -> str:
    """The indexes PostgreSQL uses for the deep page's statement, from its EXPLAIN."""
    from cpis.adapters.postgres._inbox import _PAGE_QUERIES  # the statement the store runs

    async with rt.pool.acquire() as conn:
        plan = await conn.fetchval(
            "EXPLAIN (FORMAT JSON) " + _PAGE_QUERIES[("new", True)],
            actor.la_ods, after.at, after.notification_id, PAGE + 1,
            clock.now() - timedelta(days=inbox.RECENT_DAYS), PER_CHILD,
        )  # fmt: skip
    names: list[str] = []

    def walk(node: dict[str, Any]) -> None:
        if "Index Name" in node:
            cond = node.get("Index Cond", "")
            names.append(f"{node['Index Name']}{' (by time)' if 'created_at' in cond else ''}")
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan)[0]["Plan"])
    return ", ".join(sorted(set(names)))


async def http_token(rt: Runtime, base: str, session: aiohttp.ClientSession) -> str:
    pem, jwks = generate_client_key("ES256", kid="la-bench-1")
    await rt.db.upsert_client(
        Client(id="la-bench", role=Role.LA, ods_codes=(BUSY.ods_code, EMPTY.ods_code), jwks=jwks)
    )
    assertion = make_client_assertion(
        pem, client_id="la-bench", token_url=rt.settings.token_url, kid="la-bench-1", alg="ES256"
    )
    async with session.post(
        f"{base}/oauth2/token",
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion,
        },
    ) as resp:
        body = await resp.json()
        if resp.status != 200:
            raise BenchError(f"no token: {body}")
        return str(body["access_token"])


async def web_session(rt: Runtime, clock: BenchClock, la: LocalAuthority) -> str:
    """A signed-in caseworker of ``la``: a session made as the sign-in callback makes one."""
    session_id = secrets.token_urlsafe(32)
    now = clock.now()
    user = WebUser(f"bench-{la.ods_code}", "Bench Worker", WebRole.CASEWORKER, la.ods_code, la.name)
    await rt.web_sessions.create_session(
        web_sign_in.key_of(session_id),
        WebSession(user, created_at=now, last_seen_at=now, expires_at=now + timedelta(hours=12)),
    )
    return session_id


async def run(args: argparse.Namespace, url: str, data_dir: Path) -> dict[str, Any]:
    port = free_port()
    settings = Settings(
        data_dir=data_dir,
        database_url=Secret(url),
        host="127.0.0.1",
        port=port,
        public_base_url=f"http://127.0.0.1:{port}",
        workers_in_serve=False,
        rate_limit_per_second=1_000_000,
        rate_limit_burst=1_000_000,
        source_rate_limit_per_second=1_000_000,
        source_rate_limit_burst=1_000_000,
        db_pool_min=2,
        db_pool_max=10,
    )
    clock = BenchClock(datetime.now(UTC) - timedelta(days=70))
    async with build(settings, start=Start.SERVE, clock=clock) as rt:
        started = time.monotonic()
        print("bench/inbox: seeding", flush=True)
        await seed(rt, clock, args)
        print(f"  seeded in {time.monotonic() - started:.0f}s", flush=True)
        # Now is now again: the token endpoint holds assertions to the service's clock.
        clock.at = datetime.now(UTC)
        busy = LaActor.system(BUSY.ods_code, "la-bench")
        empty = LaActor.system(EMPTY.ods_code, "la-bench")
        pages = await cursors(rt, clock, busy)
        deep, last = pages[len(pages) // 2], pages[-1]
        assert deep is not None and last is not None

        def page(actor: LaActor, after: InboxCursor | None, status: Any = "new") -> Any:
            return lambda: inbox.page(
                rt.outbox, clock, actor=actor, status=status, after=after,
                children=PAGE, per_child=PER_CHILD,
            )  # fmt: skip

        n = args.samples
        results = [
            await timed("baseline (empty inbox)", page(empty, None), n),
            await timed("first page", page(busy, None), n),
            await timed(f"deep page ({len(pages) // 2 + 1} of {len(pages)})", page(busy, deep), n),
            await timed(f"last page ({len(pages)})", page(busy, last), n),
            await timed("acknowledged, first page", page(busy, None, "acknowledged"), n),
        ]
        app = create_app(rt)
        async with serving(app, settings), aiohttp.ClientSession() as session:
            base = settings.public_base_url
            token = await http_token(rt, base, session)

            def get(la: str, after: InboxCursor | None) -> Any:
                params = {"limit": str(PAGE)}
                if after is not None:
                    params["after"] = inbox.cursor_text(after)
                headers = {"Authorization": f"Bearer {token}", "NHSD-End-User-Organisation-ODS": la}

                async def call() -> None:
                    async with session.get(
                        f"{base}/la/v1/notifications", params=params, headers=headers
                    ) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise BenchError(f"GET /la/v1/notifications: {resp.status}")

                return call

            results += [
                await timed("HTTP baseline (empty inbox)", get(EMPTY.ods_code, None), n),
                await timed("HTTP first page", get(BUSY.ods_code, None), n),
                await timed("HTTP deep page", get(BUSY.ods_code, deep), n),
            ]
            # The web inbox itself: the HTML page a signed-in social worker gets (its
            # session looked up, the page rendered, its view audited).
            cookies = {la.ods_code: await web_session(rt, clock, la) for la in (EMPTY, BUSY)}

            def html(la: str, after: InboxCursor | None) -> Any:
                params = {} if after is None else {"after": inbox.cursor_text(after)}
                headers = {"Cookie": f"{SESSION_COOKIE}={cookies[la]}"}

                async def call() -> None:
                    async with session.get(
                        f"{base}/inbox", params=params, headers=headers, allow_redirects=False
                    ) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise BenchError(f"GET /inbox: {resp.status}")

                return call

            results += [
                await timed("HTML baseline (empty inbox)", html(EMPTY.ods_code, None), n),
                await timed("HTML first page", html(BUSY.ods_code, None), n),
                await timed("HTML deep page", html(BUSY.ods_code, deep), n),
            ]
        indexes = await used_indexes(rt, busy, deep, clock)
        # The same pages without migration 0004's partial index (the database is thrown
        # away after): what it buys, measured in the same run.
        async with rt.pool.acquire() as conn:
            await conn.execute("DROP INDEX outbox_inbox_new_idx")
            await conn.execute("ANALYZE outbox")
        results += [
            await timed("without 0004's index: first page", page(busy, None), n),
            await timed("without 0004's index: deep page", page(busy, deep), n),
        ]
    return {"pages": len(pages), "indexes": indexes, "timings": results}


def report(out: dict[str, Any]) -> bool:
    timings: list[Timing] = out["timings"]
    print(f"\n{'':<34}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'p95 / baseline':>16}")
    met = True
    base = {t.name.split(" ")[0]: t.pct(0.95) for t in timings if "baseline" in t.name}
    for t in timings:
        b = base.get(t.name.split(" ")[0], base["baseline"])
        p95 = t.pct(0.95)
        flag = ""
        if "baseline" not in t.name and "without" not in t.name and p95 >= TARGET_MS:
            met, flag = False, "  MISSED"
        print(
            f"{t.name:<34}{statistics.median(t.samples):>9.1f}{p95:>9.1f}{max(t.samples):>9.1f}"
            f"{p95 / b:>15.1f}x{flag}"
        )
    print(f"\ntarget: p95 under {TARGET_MS:.0f} ms for every page of the busy inbox:"
          f" {'met' if met else 'MISSED'}")  # fmt: skip
    print(f"deep page statement uses: {out['indexes']}")
    return met


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--attendances", type=int, default=10_000, help="new (unacknowledged) ones")
    p.add_argument("--acknowledged", type=int, default=30_000, help="acknowledged ones besides")
    p.add_argument("--children", type=int, default=2_500, help="children with plans")
    p.add_argument("--samples", type=int, default=200, help="timed calls of each page")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--json", type=Path, help="also write the figures here as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = p.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure_logging(fmt="json", level="warning")  # a line per request would time the log
    tmp = Path(tempfile.mkdtemp(prefix="cpis-bench-inbox-"))
    external = os.environ.get("CPIS_DATABASE_URL")
    embedded = None
    name = f"cpis_bench_inbox_{uuid.uuid4().hex[:8]}"
    created = False
    server_url = ""
    started = time.monotonic()
    try:
        print("bench/inbox: setting up", flush=True)
        if external:
            server_url = external
        else:
            from cpis.adapters.embedded import EmbeddedPostgres

            embedded = EmbeddedPostgres(tmp / "pg", cleanup="delete")
            server_url = embedded.dsn
        asyncio.run(create_databases(server_url, [name], []))
        created = True
        out = asyncio.run(run(args, with_database(server_url, name), tmp / "cpis"))
        met = report(out)
        if args.json:
            doc = {
                "pages": out["pages"],
                "indexes": out["indexes"],
                "timings": {t.name: t.as_dict() for t in out["timings"]},
            }
            args.json.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"\n(whole benchmark {time.monotonic() - started:.0f}s)")
        return 1 if args.strict and not met else 0
    except BenchError as exc:
        print(f"bench/inbox: {exc}", file=sys.stderr)
        return 2
    finally:
        if created:
            asyncio.run(drop_databases(server_url, [name]))
        if embedded is not None:
            embedded.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
