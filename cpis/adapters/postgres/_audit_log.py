"""The audit log in PostgreSQL: the line each request appends (``audit_append``), and
the seals that chain the lines, made and checked (:mod:`cpis.adapters.audit_log` says
how and why)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519

from cpis.adapters.audit_log import Anchor, AuditKeys, AuditReport, Seal, export_anchor, sign_seal
from cpis.adapters.keys import audit_key_id
from cpis.adapters.postgres._at_rest import seal_user_id, user_key
from cpis.adapters.postgres._audit_check import check, seal_from_row
from cpis.adapters.postgres._connection import LONG_SECONDS, UNAVAILABLE, Connection, Pool, borrow
from cpis.errors import Unavailable
from cpis.model import AuditEntry
from cpis.ports.vault import Vault

# A batch's text is built in memory by the database; after a long outage the
# backlog is sealed in batches of at most this many lines.
MAX_BATCH_ROWS = 20_000


async def append_audit_line(
    conn: Connection,
    vault: Vault,
    entry: AuditEntry,
    at: datetime,
    known: Mapping[str, bytes] | None = None,
) -> None:
    """Append ``entry`` as one line (``audit_append``); the subject's keyed hash is
    taken from ``known`` when the transaction has worked it out already."""
    subject = None
    if entry.subject is not None:
        key = (known or {}).get(entry.subject) or vault.subject_key(entry.subject)
        subject = key.hex()
    user = entry.user_id
    await conn.execute(
        "SELECT audit_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        at,
        entry.action,
        entry.outcome,
        entry.client_id,
        entry.role,
        entry.org_ods,
        None if user is None else user_key(vault, user),
        None if user is None else seal_user_id(vault, user),
        entry.resource,
        subject,
        entry.trace_id,
        entry.detail,
    )


class PgAuditLog:
    """Seals the audit log in PostgreSQL with the audit key, and checks it."""

    def __init__(
        self,
        pool: Pool,
        *,
        key: ed25519.Ed25519PrivateKey,
        public_keys: AuditKeys | None = None,
        anchor_file: Path | None = None,
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        self._pool = pool
        self._key = key
        self.key_id = audit_key_id(key.public_key())
        self._public_keys = dict(public_keys or {}) | {self.key_id: key.public_key()}
        self._anchor_file = anchor_file
        self._max_rows = max_batch_rows

    # --- sealing -----------------------------------------------------------------

    async def seal(self, *, wait: bool = False) -> Seal | None:
        """Seal one batch, if anything is final; the seal made, or None.

        Without ``wait``, returns None at once while another session seals.
        """
        try:
            async with borrow(self._pool) as conn, conn.transaction():
                row = await conn.fetchrow(
                    "SELECT * FROM audit_seal_next($1, $2)", wait, self._max_rows
                )
                if row is None:
                    return None
                seal = seal_from_row(row, key_id=self.key_id)
                digest, signature = sign_seal(seal, self._key)
                await conn.execute(
                    "INSERT INTO audit_seal (batch, xid_lo, xid_hi, rows, first_seq, last_seq,"
                    " rows_hash, seq_final, seq_void, seq_ceiling, xid_ceiling, prev_hash, hash,"
                    " sealed_at, key_id, signature)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
                    " $16)",
                    seal.batch,
                    seal.xid_lo,
                    seal.xid_hi,
                    seal.rows,
                    seal.first_seq,
                    seal.last_seq,
                    seal.rows_hash,
                    seal.seq_final,
                    list(seal.seq_void),
                    seal.seq_ceiling,
                    seal.xid_ceiling,
                    seal.prev_hash,
                    digest,
                    seal.sealed_at,
                    seal.key_id,
                    signature,
                )
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
        export_anchor(seal, digest, full=bool(row["full_batch"]), anchor_file=self._anchor_file)
        return seal

    async def seal_pending(self, *, wait: bool = False) -> int:
        """Seal until nothing final is left; how many lines were sealed."""
        sealed = 0
        while (seal := await self.seal(wait=wait)) is not None:
            sealed += seal.rows
            if seal.rows < self._max_rows:
                break  # caught up; under steady load, looping on would make tiny seals
        return sealed

    # --- verifying ---------------------------------------------------------------

    async def verify(
        self,
        *,
        anchor: Anchor | None = None,
        public_keys: AuditKeys | None = None,
        seal_first: bool = True,
    ) -> AuditReport:
        """Check the whole log (see :mod:`cpis.adapters.audit_log`); the report says what held.

        ``public_keys`` replaces this service's own keys, for an auditor who
        checks with the public keys they were given.
        """
        keys = dict(public_keys) if public_keys is not None else self._public_keys
        report = AuditReport(anchor=anchor)
        try:
            if seal_first:
                await self.seal_pending(wait=True)
                # Once more: the lines just sealed have their seq accounted for by the
                # next seal (see audit_seal_next), which has no lines of its own if
                # nothing new came in.
                await self.seal(wait=True)
            async with (
                # The whole log, read statement by statement: long by design.
                borrow(self._pool, within=LONG_SECONDS) as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                await check(conn, keys, report)
        except UNAVAILABLE as exc:
            raise Unavailable("database unreachable") from exc
        return report
