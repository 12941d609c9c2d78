"""England's volume in a CP-IS database, generated in bulk (``bench/national``).

152 local authorities, each with a subscription; the plans (live ones, and a
year's expiries whose delete date has passed); a year of access events spread
over every plan's subject; one notification per shown visit, delivered, and
acknowledged once a week old. The values the service keeps sealed or keyed
(subject keys, NHS numbers, birth dates, viewers) are made with the service's
own keys in Python and sent with COPY, a few hundred thousand at most; the
millions of rows are made by PostgreSQL itself with ``generate_series``, in
chunks, so the whole country takes minutes, not hours, on two cores. No row
goes through the API: the benchmark measures what the service does with this
volume, not how it got there.

Everything is synthetic: 999-range NHS numbers, made-up staff and organisations.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import orjson

from cpis.adapters.postgres._at_rest import practitioner_role_id, seal_viewer, user_key
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import Accessor, SettingType

BENCH_LA = "XBN01"  # bench/lookup's LA: one of the 152, so it gets its share
LAS = 152
ED_ORGS = 150
VIEWERS = 3000
CHUNK = 500_000

# A time-ordered UUID (version 7) at a given time, as cpis_uuid7() makes one now.
_UUID7_AT = (
    "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing"
    " substring(int8send(floor(extract(epoch FROM {ts}) * 1000)::bigint) FROM 3)"
    " FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid"
)


@dataclass(frozen=True)
class Volume:
    """How much to make; :meth:`england` at ``scale`` 1 is the country."""

    live_plans: int
    expiring_plans: int  # due for purge: a year's expiries
    access_events: int
    first_nhs: int  # where this database's synthetic NHS numbers start

    @classmethod
    def england(cls, scale: float) -> Volume:
        return cls(
            live_plans=round(130_000 * scale),
            expiring_plans=round(40_000 * scale),
            access_events=round(5_000_000 * scale),
            first_nhs=200_000,
        )

    def only_expiries(self) -> Volume:
        """The same year's expiries, with their share of the visits, and nothing else."""
        subjects = self.live_plans + self.expiring_plans
        events = round(self.access_events * self.expiring_plans / subjects) if subjects else 0
        return Volume(0, self.expiring_plans, events, self.first_nhs)


def la_codes() -> list[str]:
    return [BENCH_LA] + [f"XN{i:03d}" for i in range(1, LAS)]


def _viewers(vault: Any) -> list[tuple[Any, ...]]:
    rows = []
    for n in range(VIEWERS):
        org = f"XE{n % ED_ORGS:03d}"
        accessor = Accessor(
            client_id="bench-ed",
            org_ods=org,
            org_name=f"Benchshire Hospital {n % ED_ORGS} Emergency Department",
            setting_type=SettingType.ED,
            user_id=f"55500{n:07d}",
            user_name=f"Bench Nurse {n}",
            user_role="Staff Nurse",
            trace_id="generated",
        )
        rows.append(
            (
                n,
                user_key(vault, accessor.user_id),
                seal_viewer(vault, accessor),
                practitioner_role_id(vault, accessor),
                org,
                accessor.org_name,
            )
        )
    return rows


async def generate(
    pool: Any, vault: Any, volume: Volume, say: Callable[[str], None] = print
) -> dict[str, int]:
    """Make ``volume`` in the database behind ``pool`` (migrated, with bench/lookup's
    LA and clients registered); the rows made, by table."""
    started = time.monotonic()
    codes = la_codes()
    subjects = volume.live_plans + volume.expiring_plans
    numbers = synthetic_numbers(subjects, start=volume.first_nhs) if subjects else []
    keys = [vault.subject_key(n) for n in numbers]
    sealed = vault.seal_many("nhs_number", numbers)
    births = [vault.seal("birth_date", (date(2012, 1, 1) + timedelta(days=d)).isoformat())
              for d in range(0, 3650, 73)]  # fmt: skip
    today = date.today()
    async with pool.acquire() as conn:
        # Bulk statements run for minutes: not under the service's statement timeout.
        await conn.execute("SET synchronous_commit = off; SET statement_timeout = 0")
        await conn.execute(
            "INSERT INTO local_authority (ods_code, name, office_phone, edt_phone,"
            " repeat_window_hours) SELECT c, 'Generated council ' || c, '01632 960100',"
            " '01632 960199', 24 FROM unnest($1::text[]) c ON CONFLICT DO NOTHING",
            codes,
        )
        await conn.execute(
            "INSERT INTO subscription (id, la_ods, client_id, status, topic, endpoint,"
            " payload, created_at, updated_at)"
            " SELECT gen_random_uuid(), c, 'bench-la', 'active', 'generated',"
            " 'https://la.invalid/hook', 'id-only', now(), now() FROM unnest($1::text[]) c",
            codes,
        )
        await conn.execute(
            "CREATE TEMP TABLE g_subj (n int PRIMARY KEY, subject_key bytea, nhs_sealed bytea,"
            " la_ods text, plan_id uuid, la_plan_id text, expiring boolean)"
        )
        await conn.copy_records_to_table(
            "g_subj",
            records=[
                (
                    n, keys[n], sealed[n], codes[n % LAS], uuid.uuid4(), f"GEN-{n:07d}",
                    n >= volume.live_plans,
                )
                for n in range(subjects)
            ],
        )  # fmt: skip
        await conn.execute("CREATE TEMP TABLE g_birth (n int PRIMARY KEY, sealed bytea)")
        await conn.copy_records_to_table("g_birth", records=list(enumerate(births)))
        await conn.execute(
            "CREATE TEMP TABLE g_viewer (n int PRIMARY KEY, user_key bytea, viewer_sealed bytea,"
            " pr_id uuid, org_ods text, org_name text)"
        )
        await conn.copy_records_to_table("g_viewer", records=_viewers(vault))
        await conn.execute("ANALYZE g_subj; ANALYZE g_birth; ANALYZE g_viewer")
        await conn.execute(
            "INSERT INTO plan (id, la_ods, la_plan_id, subject_key, version, updated_at)"
            " SELECT plan_id, la_ods, la_plan_id, subject_key, 1, now() FROM g_subj"
        )
        # Live plans started up to two years ago; expiring ones were deleted for good
        # (delete_date) on a day in the past year. CPP and LAC carry a birth date.
        await conn.execute(
            "INSERT INTO plan_version (plan_id, version, nhs_sealed, plan_type, start_date,"
            " end_date, delete_date, birth_sealed, recorded_at)"
            " SELECT s.plan_id, 1, s.nhs_sealed, (ARRAY['CPP','LAC','UCPP'])[s.n % 3 + 1],"
            " $1::date - 400 - (s.n % 330), NULL,"
            " CASE WHEN s.expiring THEN $1::date - 1 - (s.n % 365) END,"
            " CASE WHEN s.n % 3 < 2 THEN b.sealed END, now()"
            " FROM g_subj s JOIN g_birth b ON b.n = s.n % $2",
            today,
            len(births),
        )
        say(f"    {subjects} plans ({time.monotonic() - started:.0f}s)")
        cursor = await conn.fetchval("SELECT coalesce(max(event_number), 0) FROM delivery")
        # Millions of rows into random places of a dozen indexes is most of the time:
        # the secondary indexes are dropped for the load and built again after it, by
        # their own definitions, so the schema ends as migrate made it.
        indexes = await conn.fetch(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            " AND tablename = ANY($1::text[]) AND indexname NOT IN (SELECT conname"
            " FROM pg_constraint WHERE connamespace = current_schema()::regnamespace)",
            ["access_event", "outbox", "delivery"],
        )
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        for first in range(0, volume.access_events, CHUNK):
            last = min(volume.access_events, first + CHUNK) - 1
            await _visits(conn, first, last, volume.access_events, subjects, cursor)
            say(f"    {last + 1} access events ({time.monotonic() - started:.0f}s)")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        say(f"    {len(indexes)} indexes built again ({time.monotonic() - started:.0f}s)")
        await conn.execute("DROP TABLE g_subj, g_birth, g_viewer")
        await conn.execute("ANALYZE")
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for table in ("plan", "access_event", "outbox", "delivery")
        }
    say(f"    generated in {time.monotonic() - started:.0f}s: {orjson.dumps(counts).decode()}")
    return counts


async def _visits(conn: Any, first: int, last: int, total: int, subjects: int, cursor: int) -> None:
    """Access events ``first``..``last`` of ``total``, spread evenly over the past year,
    and for each shown one (nine in ten) its notification, delivered by rest-hook to
    the LA's subscription, acknowledged once a week old."""
    at = "now() - interval '365 days' * (($3 - g)::float8 / $3)"
    await conn.execute(
        f"""
        WITH ev AS (
            INSERT INTO access_event (id, subject_key, nhs_sealed, occurred_at, client_id,
                org_ods, org_name, setting_type, trace_id, la_codes, is_repeat,
                user_verified, practitioner_role_id, user_key, viewer_sealed)
            SELECT {_UUID7_AT.format(ts=at)}, s.subject_key, s.nhs_sealed, {at},
                'bench-ed', v.org_ods, v.org_name, 'ED', 'generated-' || g,
                ARRAY[s.la_ods], g % 10 = 9, false, v.pr_id, v.user_key, v.viewer_sealed
            FROM generate_series($1::bigint, $2::bigint) g
            JOIN g_subj s ON s.n = (g * 7919) % $4
            JOIN g_viewer v ON v.n = g % {VIEWERS}
            RETURNING id, subject_key, occurred_at, org_ods, user_key, la_codes[1] AS la_ods,
                is_repeat
        ), note AS (
            INSERT INTO outbox (notification_id, kind, la_ods, access_event_id, subject_key,
                org_ods, plan_ids, created_at, state, attempts, next_attempt_at,
                delivered_at, acknowledged_at, user_key)
            SELECT {_UUID7_AT.format(ts="ev.occurred_at")}, 'access', ev.la_ods, ev.id,
                ev.subject_key, ev.org_ods, ARRAY[s.la_plan_id], ev.occurred_at, 'fanned', 1,
                ev.occurred_at, ev.occurred_at + interval '2 seconds',
                CASE WHEN ev.occurred_at < now() - interval '7 days'
                    THEN ev.occurred_at + interval '1 day' END,
                ev.user_key
            FROM ev JOIN g_subj s ON s.subject_key = ev.subject_key
            WHERE NOT ev.is_repeat
            RETURNING notification_id, la_ods, created_at, delivered_at
        )
        INSERT INTO delivery (notification_id, la_ods, channel, target, event_number, state,
            attempts, next_attempt_at, created_at, delivered_at)
        SELECT note.notification_id, note.la_ods, 'rest-hook', sub.id::text,
            $5 + row_number() OVER (), 'delivered', 1, note.created_at, note.created_at,
            note.delivered_at
        FROM note JOIN subscription sub ON sub.la_ods = note.la_ods
        """,
        first,
        last,
        total,
        subjects,
        cursor + first,
    )
