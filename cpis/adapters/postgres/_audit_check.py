"""What ``cpis audit verify`` checks of the sealed log, in one snapshot (the list is in
:mod:`cpis.adapters.audit_log`'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from cpis.adapters.audit_log import Anchor, AuditKeys, AuditReport, Seal, signature_holds

# The hash a first seal follows on from.
_GENESIS = b"\x00"


def seal_from_row(r: asyncpg.Record, *, key_id: str | None = None) -> Seal:
    """A seal from a row of ``audit_seal`` or ``audit_seal_next()``."""
    return Seal(
        batch=int(r["batch"]),
        xid_lo=int(r["xid_lo"]),
        xid_hi=int(r["xid_hi"]),
        rows=int(r["rows"]),
        first_seq=None if r["first_seq"] is None else int(r["first_seq"]),
        last_seq=None if r["last_seq"] is None else int(r["last_seq"]),
        rows_hash=bytes(r["rows_hash"]),
        seq_final=int(r["seq_final"]),
        seq_void=tuple(int(v) for v in r["seq_void"]),
        seq_ceiling=int(r["seq_ceiling"]),
        xid_ceiling=int(r["xid_ceiling"]),
        prev_hash=bytes(r["prev_hash"]),
        sealed_at=r["sealed_at"],
        key_id=key_id if key_id is not None else str(r["key_id"]),
    )


async def check(conn: Any, keys: AuditKeys, report: AuditReport) -> None:
    """Check the sealed log as ``conn``'s snapshot has it, into ``report``."""
    previous = _Previous()
    async for r in conn.cursor(_SEALS_WITH_LINES):
        if not _check_seal(r, keys, previous, report):
            return
    await _check_pending(conn, previous, report)
    _check_anchor(previous, report)


def _check_seal(r: Any, keys: AuditKeys, previous: _Previous, report: AuditReport) -> bool:
    """One seal and its batch; False once something does not hold."""
    seal = seal_from_row(r)
    where = {"batch": seal.batch, "seq": seal.first_seq}
    expected = previous.batch + 1
    if seal.batch != expected:
        report.fail(f"batch {expected} is missing (the next seal is batch {seal.batch})", **where)
        return False
    if seal.prev_hash != previous.hash or seal.xid_lo != previous.xid_hi:
        report.fail(f"batch {seal.batch} does not follow on from batch {previous.batch}", **where)
        return False
    key = keys.get(seal.key_id)
    if key is None:
        report.fail(f"batch {seal.batch} is signed by an unknown key {seal.key_id}", **where)
        return False
    digest = seal.digest()
    if digest != bytes(r["hash"]) or not signature_holds(digest, bytes(r["signature"]), key):
        report.fail(f"batch {seal.batch}: the seal is not the one the audit key signed", **where)
        return False
    if (r["l_rows"], r["l_first"], r["l_last"], r["l_hash"]) != (
        seal.rows,
        seal.first_seq,
        seal.last_seq,
        seal.rows_hash,
    ):
        report.fail(
            f"batch {seal.batch} (seq {seal.first_seq} to {seal.last_seq}): its lines were"
            " changed, removed or added after sealing",
            **where,
        )
        return False
    problem = _continuity_problem(seal, previous.seq_final, r)
    if problem is not None:
        report.fail(f"batch {seal.batch}: {problem}", batch=seal.batch, seq=previous.seq_final + 1)
        return False
    report.batches += 1
    report.rows += seal.rows
    report.void += seal.void_count
    report.seq_final = seal.seq_final
    report.first_seq = _least(report.first_seq, seal.first_seq)
    report.last_seq = _greatest(report.last_seq, seal.last_seq)
    report.first_at = _least(report.first_at, r["l_first_at"])
    report.last_at = _greatest(report.last_at, r["l_last_at"])
    report.last_batch, report.last_hash = seal.batch, digest
    report.key_ids.add(seal.key_id)
    if report.anchor is not None and report.anchor.hash == digest:
        report.anchor_found = True
        if report.anchor.batch not in (None, seal.batch):
            report.fail(
                f"the anchor was batch {report.anchor.batch}'s hash; the chain has it at"
                f" batch {seal.batch}",
                batch=seal.batch,
            )
            return False
        report.anchor = Anchor(digest, seal.batch)
    previous.move_on(seal, digest)
    return True


async def _check_pending(conn: Any, previous: _Previous, report: AuditReport) -> None:
    """Lines after the last seal: only those of transactions too recent to seal."""
    if report.problem is not None:
        return
    r = await conn.fetchrow(
        "SELECT count(*) AS n, min(seq) AS first,"
        " count(*) FILTER (WHERE xid >= pg_snapshot_xmax(pg_current_snapshot())) AS unissued,"
        " count(*) FILTER (WHERE seq <= $2) AS accounted"
        " FROM audit_log WHERE xid >= $1",
        previous.xid_hi,
        previous.seq_final,
    )
    report.pending = int(r["n"])
    if r["unissued"]:
        report.fail(
            f"{r['unissued']} lines after the last seal carry transaction ids never issued",
            seq=r["first"],
        )
    elif r["accounted"]:
        report.fail(
            f"{r['accounted']} lines after the last seal carry seq numbers a seal already"
            " accounted for",
            seq=r["first"],
        )


def _check_anchor(previous: _Previous, report: AuditReport) -> None:
    anchor = report.anchor
    if report.problem is not None or anchor is None or report.anchor_found:
        return
    if anchor.batch is not None and anchor.batch > previous.batch:
        report.fail(
            f"the chain ends at batch {previous.batch}, before the anchor's batch"
            f" {anchor.batch}: sealed lines were removed",
            batch=previous.batch + 1,
        )
    else:
        report.fail(
            "no seal has the anchor's hash: the chain was rewritten or cut short after the"
            " anchor was kept",
            batch=anchor.batch,
        )


# Each seal with its batch's lines recomputed, and the lines in its span of seq.
_SEALS_WITH_LINES = """
SELECT s.*, l.rows AS l_rows, l.first_seq AS l_first, l.last_seq AS l_last,
    l.first_at AS l_first_at, l.last_at AS l_last_at, l.rows_hash AS l_hash,
    c.present AS c_present, c.late AS c_late, c.in_void AS c_in_void
FROM (SELECT *, lag(seq_final, 1, 0::bigint) OVER (ORDER BY batch) AS seq_from
      FROM audit_seal) s
CROSS JOIN LATERAL audit_batch_rows(s.xid_lo, s.xid_hi) l
CROSS JOIN LATERAL audit_seq_span(s.seq_from, s.seq_final, s.xid_hi, s.seq_void) c
ORDER BY s.batch
"""


@dataclass(slots=True)
class _Previous:
    """Where the previous seal left the chain (the start, before the first)."""

    batch: int = 0
    hash: bytes = _GENESIS
    xid_hi: int = 0
    seq_final: int = 0

    def move_on(self, seal: Seal, digest: bytes) -> None:
        self.batch, self.hash = seal.batch, digest
        self.xid_hi, self.seq_final = seal.xid_hi, seal.seq_final


def _continuity_problem(seal: Seal, seq_from: int, r: Any) -> str | None:
    """Whether every seq in (seq_from, seal.seq_final] is a sealed line or a void, not both."""
    if seal.seq_final < seq_from:
        return "its seq accounting goes backwards"
    void = seal.seq_void
    if len(void) % 2:
        return "its list of seq numbers never written is malformed"
    bound = seq_from
    for lo, hi in zip(void[::2], void[1::2], strict=True):
        if lo <= bound or hi < lo or hi > seal.seq_final:
            return "its list of seq numbers never written is malformed"
        bound = hi
    if r["c_late"]:
        return "a line under a seq it accounts for was written after it was sealed"
    if r["c_in_void"]:
        return "a line carries a seq number it says was never written"
    span = seal.seq_final - seq_from
    if r["c_present"] + seal.void_count != span:
        return f"{span - r['c_present'] - seal.void_count} seq numbers are missing"
    return None


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _greatest(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)
