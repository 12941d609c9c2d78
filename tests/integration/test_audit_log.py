"""The audit log's signed seals (cpis.adapters.audit_log) against a real PostgreSQL.

Issue 9 item 3: someone with the database but not the service's audit key
(a superuser, or a stolen dump restored elsewhere) could rewrite a line and
recompute every later seal, or delete the newest batch, and the hash chain
still checked. Each tampering test here does with SQL what such a person
can do, with the triggers that keep the log append-only switched off, and
checks that ``verify`` notices and says where. The others pin what the
service itself does that must never look like tampering (rolled-back
transactions, a sequence that jumped, key rotation, a backlog) and what
``verify`` reports when all is well.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import asyncpg
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from structlog.testing import capture_logs

from cpis.adapters.audit_log import Anchor, Seal, show_hash, sign_seal
from cpis.adapters.keys import audit_key_id
from cpis.adapters.postgres import PgAuditLog, PgDatabase
from cpis.model import AuditEntry
from tests.integration.conftest import FakeClock

STAFF_ID = "555011223344"


async def write(db: PgDatabase, clock: FakeClock, count: int = 1) -> None:
    """``count`` audit lines, each in its own transaction, as requests write them."""
    for _ in range(count):
        clock.advance(seconds=1)
        entry = AuditEntry(
            action="plan_search", outcome=200, client_id="ed", user_id=STAFF_ID, trace_id="t"
        )
        await db.append_audit(entry, clock.now())


async def batches(db: PgDatabase, audit: PgAuditLog, clock: FakeClock, *sizes: int) -> None:
    """One sealed batch of each size, in order."""
    for size in sizes:
        await write(db, clock, size)
        seal = await audit.seal()
        assert seal is not None and seal.rows == size


@asynccontextmanager
async def superuser(db: PgDatabase) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the audit tables' append-only triggers off, as their owner can."""
    async with db.pool.acquire() as conn:
        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
        await conn.execute("ALTER TABLE audit_seal DISABLE TRIGGER ALL")
        try:
            yield conn
        finally:
            await conn.execute("ALTER TABLE audit_log ENABLE TRIGGER ALL")
            await conn.execute("ALTER TABLE audit_seal ENABLE TRIGGER ALL")


async def newest_hash(db: PgDatabase) -> bytes:
    async with db.pool.acquire() as conn:
        return bytes(await conn.fetchval("SELECT hash FROM audit_seal ORDER BY batch DESC LIMIT 1"))


# --- what verify reports ----------------------------------------------------------


async def test_verify_reports_lines_batches_seq_and_time_ranges_and_the_last_hash(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """Five lines over three batches: verify says it checked 5 lines in every batch, seq 1
    to 5 all accounted for, from the first line's time to the last's, signed by the
    service's key, nothing pending, and gives the newest seal's hash as the next anchor."""
    first = clock.now() + timedelta(seconds=1)
    await batches(db, audit, clock, 2, 2, 1)
    report = await audit.verify()

    assert report.intact, report.problem
    assert (report.rows, report.first_seq, report.last_seq) == (5, 1, 5)
    # the three batches, and one of no lines that accounts for the last seq numbers
    assert report.batches == 4
    assert (report.seq_final, report.void, report.pending) == (5, 0, 0)
    assert (report.first_at, report.last_at) == (first, clock.now())
    assert report.key_ids == {audit.key_id}
    assert report.last_hash == await newest_hash(db)
    assert report.last_anchor == Anchor(report.last_hash, 4)
    printed = "\n".join(report.lines())
    assert "checked 5 lines in 4 batches: seq 1 to 5" in printed
    assert f"last seal (keep it as the next anchor): {report.last_anchor}" in printed


async def test_lines_of_transactions_still_running_are_reported_pending(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A line written after a transaction that is still open cannot be sealed yet (its
    batch is not final): verify counts it as pending and is not troubled by it."""
    await write(db, clock, 2)
    async with db.pool.acquire() as slow, slow.transaction():
        await slow.execute("SELECT pg_current_xact_id()")  # an old transaction, still open
        await write(db, clock, 3)
        report = await audit.verify()
    assert report.intact, report.problem
    assert (report.rows, report.pending) == (2, 3)
    report = await audit.verify()
    assert (report.rows, report.pending) == (5, 0)


async def test_rolled_back_lines_and_a_jumping_sequence_are_accounted_for_not_breaks(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A transaction that wrote a line and rolled back leaves a seq number with no line,
    and so does a sequence that skipped ahead (as PostgreSQL's do after a crash): the
    sealer records them as never written, and verify counts them without failing."""
    await write(db, clock)
    async with db.pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await conn.execute(
                    "SELECT audit_append(now(), 'plan_search', 500, 'ed', NULL, NULL, NULL,"
                    " NULL, NULL, NULL, 't', '{}')"
                )
                raise RuntimeError("the request failed after its audit line")
        await conn.execute("SELECT setval('audit_log_seq', 40)")
    await write(db, clock, 2)
    report = await audit.verify()
    assert report.intact, report.problem
    assert (report.rows, report.first_seq, report.last_seq) == (3, 1, 42)
    assert (report.seq_final, report.void) == (42, 39)


async def test_a_backlog_is_sealed_in_bounded_batches(
    db: PgDatabase, audit_key: ed25519.Ed25519PrivateKey, clock: FakeClock
) -> None:
    """After an outage of the sealer, the backlog is sealed in batches of at most the
    limit (a batch's text is built in memory), and chains as any other."""
    small = PgAuditLog(db.pool, key=audit_key, max_batch_rows=2)
    await write(db, clock, 5)
    assert await small.seal_pending() == 5
    async with db.pool.acquire() as conn:
        sizes = [r["rows"] for r in await conn.fetch("SELECT rows FROM audit_seal ORDER BY batch")]
    assert sizes == [2, 2, 1]
    assert (await small.verify()).intact


# --- anchors outside the database -------------------------------------------------


async def test_each_seal_is_logged_and_written_to_the_anchor_file(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock, tmp_path: Path
) -> None:
    """Every seal leaves its anchor outside the database: an ``audit_sealed`` log line
    (batch, seq range, hash, key id, nothing about the lines' people) and the anchor
    file, which verify accepts as an anchor."""
    await write(db, clock, 2)
    with capture_logs() as logs:
        seal = await audit.seal()
    assert seal is not None
    digest = await newest_hash(db)
    (line,) = [e for e in logs if e["event"] == "audit_sealed"]
    assert line == {
        "event": "audit_sealed",
        "log_level": "info",
        "batch": 1,
        "first_seq": 1,
        "last_seq": 2,
        "rows": 2,
        "seq_final": 0,
        "void": 0,
        "hash": show_hash(digest),
        "key_id": audit.key_id,
        "backlog": False,
    }
    assert STAFF_ID not in repr(logs)
    kept = Anchor.from_file(tmp_path / "audit-anchor.json")
    assert kept == Anchor(digest, 1)
    assert Anchor.parse(line["hash"]) == Anchor(digest)
    report = await audit.verify(anchor=kept)
    assert report.intact and report.anchor_found


def test_a_hash_is_shown_so_the_logs_nhs_number_mask_cannot_touch_it() -> None:
    """The log masks any ten digits in a row (an NHS number's shape); a hash of all
    digits, shown as the log line and the CLI show it, keeps every digit, and reads back."""
    from cpis.log import mask_nhs_numbers

    digest = bytes.fromhex("1234567890" * 6 + "1234")
    shown = show_hash(digest)
    assert mask_nhs_numbers(None, "info", {"hash": shown}) == {"hash": shown}
    assert Anchor.parse(f"7:{shown}") == Anchor(digest, 7)
    assert Anchor.parse(digest.hex().upper()) == Anchor(digest)


async def test_deleting_the_newest_batch_fails_against_the_kept_anchor(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock, tmp_path: Path
) -> None:
    """A superuser deletes the newest batch: its lines and its seal. Every seal left still
    verifies, so only an anchor kept outside the database shows the cut: verify fails
    against it whether the chain now stops short of it or has carried on past it."""
    await batches(db, audit, clock, 2, 3, 2)
    kept = Anchor.from_file(tmp_path / "audit-anchor.json")
    assert kept.batch == 3
    async with superuser(db) as conn:
        await conn.execute(
            "DELETE FROM audit_log a USING audit_seal s"
            " WHERE s.batch = 3 AND a.xid >= s.xid_lo AND a.xid < s.xid_hi"
        )
        await conn.execute("DELETE FROM audit_seal WHERE batch = 3")

    short = await audit.verify(anchor=kept, seal_first=False)
    assert not short.intact
    assert short.problem == (
        "the chain ends at batch 2, before the anchor's batch 3: sealed lines were removed"
    )
    assert (await audit.verify(seal_first=False)).intact  # why anchors matter

    await write(db, clock)  # the service carries on and seals a new batch 3
    carried_on = await audit.verify(anchor=kept)
    assert not carried_on.intact
    assert (carried_on.problem or "").startswith("no seal has the anchor's hash")


# --- rewriting the chain -----------------------------------------------------------


Signer = Callable[[Seal], tuple[Seal, bytes | None]]


def keep_signatures(seal: Seal) -> tuple[Seal, bytes | None]:
    return seal, None


def _own_key(key: ed25519.Ed25519PrivateKey, *, claim: str | None) -> Signer:
    def sign(seal: Seal) -> tuple[Seal, bytes | None]:
        seal = dataclasses.replace(seal, key_id=claim or audit_key_id(key.public_key()))
        return seal, sign_seal(seal, key)[1]

    return sign


async def rewrite_from(conn: asyncpg.Connection, batch: int, sign: Signer) -> None:
    """Recompute every seal from ``batch`` on over the lines as they now are, exactly as
    the service would (the format is public), signing each with ``sign``."""
    prev = await conn.fetchval("SELECT hash FROM audit_seal WHERE batch = $1", batch - 1)
    prev = b"\x00" if prev is None else bytes(prev)
    for row in await conn.fetch("SELECT * FROM audit_seal WHERE batch >= $1 ORDER BY batch", batch):
        lines = await conn.fetchrow(
            "SELECT * FROM audit_batch_rows($1, $2)", row["xid_lo"], row["xid_hi"]
        )
        # The seal as stored, over the lines as they are now.
        seal = Seal(
            batch=int(row["batch"]),
            xid_lo=int(row["xid_lo"]),
            xid_hi=int(row["xid_hi"]),
            rows=lines["rows"],
            first_seq=lines["first_seq"],
            last_seq=lines["last_seq"],
            rows_hash=bytes(lines["rows_hash"]),
            seq_final=int(row["seq_final"]),
            seq_void=tuple(int(v) for v in row["seq_void"]),
            seq_ceiling=int(row["seq_ceiling"]),
            xid_ceiling=int(row["xid_ceiling"]),
            prev_hash=prev,
            sealed_at=row["sealed_at"],
            key_id=str(row["key_id"]),
        )
        seal, signature = sign(seal)
        prev = seal.digest()
        await conn.execute(
            "UPDATE audit_seal SET rows = $2, first_seq = $3, last_seq = $4, rows_hash = $5,"
            " prev_hash = $6, hash = $7, key_id = $8, signature = coalesce($9, signature)"
            " WHERE batch = $1",
            seal.batch,
            seal.rows,
            seal.first_seq,
            seal.last_seq,
            seal.rows_hash,
            seal.prev_hash,
            prev,
            seal.key_id,
            signature,
        )


@pytest.mark.parametrize("how", ["kept signatures", "own key, service's key id", "own key"])
async def test_a_line_rewritten_and_every_later_seal_recomputed_is_detected(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock, how: str
) -> None:
    """A superuser edits a sealed line, then recomputes that batch's seal and every later
    one so the hashes all chain again. Without the audit key the seals cannot be signed:
    verify names the rewritten batch, whether the old signatures were left, the seals
    were signed with another key under the service's key id, or under that key's own id.
    The rewritten chain is otherwise perfect: it verifies against the forger's key."""
    await batches(db, audit, clock, 2, 2, 2)
    forger = ed25519.Ed25519PrivateKey.generate()
    sign = {
        "kept signatures": keep_signatures,
        "own key, service's key id": _own_key(forger, claim=audit.key_id),
        "own key": _own_key(forger, claim=None),
    }[how]
    async with superuser(db) as conn:
        await conn.execute("UPDATE audit_log SET outcome = 403 WHERE seq = 3")
        await rewrite_from(conn, 2, sign)

    report = await audit.verify(seal_first=False)
    assert not report.intact
    assert report.broken_batch == 2
    if how == "own key":
        forger_id = audit_key_id(forger.public_key())
        assert report.problem == f"batch 2 is signed by an unknown key {forger_id}"
        forged = await audit.verify(
            seal_first=False,
            public_keys={audit.key_id: audit_key_public(audit), forger_id: forger.public_key()},
        )
        assert forged.intact, forged.problem
    else:
        assert report.problem == "batch 2: the seal is not the one the audit key signed"


def audit_key_public(audit: PgAuditLog) -> ed25519.Ed25519PublicKey:
    return audit._key.public_key()  # the service's own public key, as an auditor holds it


async def test_a_line_deleted_from_a_sealed_batch_is_detected(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A sealed line removed from the middle of its batch: verify names the batch and its
    first seq."""
    await batches(db, audit, clock, 3, 3)
    async with superuser(db) as conn:
        await conn.execute("DELETE FROM audit_log WHERE seq = 5")
    report = await audit.verify()
    assert not report.intact
    assert (report.broken_batch, report.broken_seq) == (2, 4)
    assert "seq 4 to 6): its lines were changed, removed or added" in (report.problem or "")


async def test_a_seq_gap_made_by_renumbering_a_sealed_line_is_detected(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A sealed line renumbered out of the way (a gap where it was) breaks its batch."""
    await batches(db, audit, clock, 3)
    async with superuser(db) as conn:
        await conn.execute("UPDATE audit_log SET seq = 1000 WHERE seq = 2")
    report = await audit.verify()
    assert not report.intact and report.broken_batch == 1


async def test_a_line_slipped_in_under_a_seq_already_accounted_for_is_detected(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A seq number the seals say was never written (a rolled-back line) cannot be filled
    in later: a line inserted under it, in a transaction of its own, is sealed into a new
    batch, and verify says a seal's accounted-for span got a line after it was sealed."""
    await write(db, clock)
    async with db.pool.acquire() as conn:
        await conn.execute("SELECT setval('audit_log_seq', 5)")
    await write(db, clock)
    assert (await audit.verify()).void == 4
    async with superuser(db) as conn:
        await conn.execute(
            "INSERT INTO audit_log (seq, at, action, outcome, detail)"
            " VALUES (3, now(), 'plan_search', 200, '{}')"
        )
    report = await audit.verify()
    assert not report.intact
    assert "written after it was sealed" in (report.problem or "")


async def test_a_line_with_a_transaction_id_never_issued_is_detected(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A line stamped with a transaction id from the future would never be sealed and
    would sit forever as "pending": verify refuses it."""
    await write(db, clock, 2)
    async with superuser(db) as conn:
        await conn.execute(
            "INSERT INTO audit_log (seq, at, action, outcome, detail, xid)"
            " VALUES (1000000, now(), 'plan_search', 200, '{}', '99999999999'::xid8)"
        )
    report = await audit.verify()
    assert not report.intact
    assert report.problem == "1 lines after the last seal carry transaction ids never issued"


async def test_a_missing_batch_is_detected(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """A seal deleted from the middle of the chain (its lines left in place)."""
    await batches(db, audit, clock, 1, 1, 1)
    async with superuser(db) as conn:
        await conn.execute("DELETE FROM audit_seal WHERE batch = 2")
    report = await audit.verify(seal_first=False)
    assert report.problem == "batch 2 is missing (the next seal is batch 3)"


async def test_sealing_while_lines_are_written_and_rolled_back_never_looks_like_tampering(
    db: PgDatabase, audit: PgAuditLog, clock: FakeClock
) -> None:
    """Writers commit and roll back lines in interleaved transactions while the sealer
    runs flat out: every committed line is sealed once, every rolled-back seq is
    accounted as never written, and the chain verifies. (A seq is declared void only
    once no running transaction can still hold it; a mistake there shows up here as a
    line "written after it was sealed".)"""
    stop = asyncio.Event()

    async def sealer() -> None:
        while not stop.is_set():
            await audit.seal()
            await asyncio.sleep(0)

    async def writer(n: int) -> int:
        committed = 0
        for i in range(40):
            async with db.pool.acquire() as conn:
                try:
                    async with conn.transaction():
                        await conn.execute(
                            "SELECT audit_append(now(), 'plan_search', 200, 'ed', NULL, NULL,"
                            " NULL, NULL, NULL, NULL, 't', '{}')"
                        )
                        await asyncio.sleep(0.001 * ((n + i) % 3))
                        if (n + i) % 4 == 0:
                            raise LookupError("roll back")
                    committed += 1
                except LookupError:
                    pass
        return committed

    sealing = asyncio.create_task(sealer())
    try:
        written = sum(await asyncio.gather(*(writer(n) for n in range(3))))
    finally:
        stop.set()
        await sealing
    report = await audit.verify()
    assert report.intact, report.problem
    assert report.rows == written
    assert report.seq_final == 120  # the last seq drawn may be a rolled-back one
    assert report.void == 120 - written


# --- keys ---------------------------------------------------------------------------


async def test_seals_made_before_a_key_rotation_still_verify(
    db: PgDatabase, clock: FakeClock
) -> None:
    """After rotation new seals name the new key; old ones verify with the old public
    key, which the service keeps. An auditor holding only the new key cannot check the
    old seals and is told so."""
    old, new = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    before = PgAuditLog(db.pool, key=old)
    await write(db, clock)
    await before.seal()
    after = PgAuditLog(db.pool, key=new, public_keys={before.key_id: old.public_key()})
    await write(db, clock)
    report = await after.verify()
    assert report.intact, report.problem
    assert report.key_ids == {before.key_id, after.key_id}
    only_new = await after.verify(public_keys={after.key_id: new.public_key()})
    assert only_new.problem == f"batch 1 is signed by an unknown key {before.key_id}"


async def test_two_sealers_at_once_make_one_chain(
    db: PgDatabase, audit_key: ed25519.Ed25519PrivateKey, clock: FakeClock
) -> None:
    """Replicas seal concurrently: one seals each batch, the others find nothing, and the
    chain has no duplicate or missing batch."""
    sealers = [PgAuditLog(db.pool, key=audit_key) for _ in range(3)]
    for _ in range(4):
        await write(db, clock, 2)
        await asyncio.gather(*(s.seal_pending() for s in sealers))
    report = await sealers[0].verify()
    assert report.intact, report.problem
    assert report.rows == 8


# --- the command line --------------------------------------------------------------


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cpis", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _verify_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    return await _cli(env, "audit", "verify", *args)


def _anchor_printed(out: str) -> str:
    (kept,) = [line.rpartition(": ")[2] for line in out.splitlines() if "next anchor" in line]
    return kept


async def test_cpis_audit_verify_reports_and_fails_against_a_kept_anchor(
    database_url: str, tmp_path: Path
) -> None:
    """`cpis audit verify` seals what is pending with the service's audit key, prints what
    it checked and the anchor to keep (also written to the data directory). With the
    newest batch deleted, an older anchor still holds, but the newest fails, given back
    with --anchor or, by default, from the data directory's anchor file. It can check
    with public keys only, and refuses an anchor that is not one."""
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CPIS_")} | {
        "CPIS_DATABASE_URL": database_url,
        "CPIS_DATA_DIR": str(data),
        "CPIS_LOG_FORMAT": "json",
    }
    conn = await asyncpg.connect(database_url)

    async def lines(count: int) -> None:
        for _ in range(count):
            await conn.execute(
                "SELECT audit_append(now(), 'plan_search', 200, 'ed', NULL, NULL, NULL, NULL,"
                " NULL, NULL, 't', '{}')"
            )

    try:
        # As an operator sets a service up: migrate makes the data directory's keys.
        code, _out, err = await _cli(env, "migrate")
        assert code == 0, err
        await lines(3)
        code, out, err = await _verify_cli(env)
        assert code == 0, err
        assert "checked 3 lines in 2 batches: seq 1 to 3" in out
        assert "every seq up to 3 accounted for; 0 never written" in out
        assert out.rstrip().endswith("audit log intact")
        older = _anchor_printed(out)
        assert Anchor.parse(older).batch == 2
        assert '"event": "audit_sealed"' in err

        await lines(2)
        code, out, err = await _verify_cli(env, "--anchor", older)
        assert code == 0, err
        assert "checked 5 lines in 4 batches: seq 1 to 5" in out
        newest = _anchor_printed(out)
        anchor_file = orjson.loads((data / "audit-anchor.json").read_bytes())
        assert f"{anchor_file['batch']}:{anchor_file['hash']}" == newest

        key = serialization.load_pem_private_key(
            (data / "keys" / "audit.pem").read_bytes(), password=None
        )
        public = tmp_path / "audit-public.pem"
        public.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        code, out, err = await _verify_cli(env, "--anchor", newest, "--public-key", str(public))
        assert code == 0, err

        await conn.execute("ALTER TABLE audit_log DISABLE TRIGGER ALL")
        await conn.execute("ALTER TABLE audit_seal DISABLE TRIGGER ALL")
        await conn.execute("DELETE FROM audit_log WHERE seq > 3")
        await conn.execute("DELETE FROM audit_seal WHERE batch > 2")
    finally:
        await conn.close()

    code, out, err = await _verify_cli(env, "--anchor", older)
    assert code == 0, err
    code, out, err = await _verify_cli(env, "--anchor", newest)
    assert code == 1
    assert err.strip().endswith(
        "the chain ends at batch 2, before the anchor's batch 4: sealed lines were removed"
    )
    code, out, err = await _verify_cli(env)
    assert code == 1
    assert f"checking against the anchor from {data / 'audit-anchor.json'}" in out
    assert "audit log broken" in err
    code, _out, err = await _verify_cli(env, "--anchor", "not-a-hash")
    assert code == 2 and "64 hex digits" in err
