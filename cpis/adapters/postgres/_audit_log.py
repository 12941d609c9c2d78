"""The audit log: the line each request appends (``audit_append``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from cpis.adapters.postgres._at_rest import seal_user_id, user_key
from cpis.adapters.postgres._connection import Connection
from cpis.model import AuditEntry
from cpis.ports.vault import Vault


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
