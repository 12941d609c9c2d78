"""Uploads: the per-LA lock, and each applied file's acknowledgement, kept by sequence."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cpis.adapters.postgres._connection import UPLOAD_STATEMENTS, Session
from cpis.formats.acknowledgement import acknowledgement_json, parse_acknowledgement
from cpis.model.la import UploadSummary
from cpis.model.uploads import Acknowledgement


class PgUploads(Session):
    """The :class:`~cpis.ports.uploads.UploadStore` port over one connection."""

    async def lock_uploads(self, la_ods: str) -> None:
        """Take the LA's upload lock, first thing in an upload's transaction; from
        then on the transaction is as long as the file, so its deadline is
        :data:`UPLOAD_STATEMENTS` statements' worth, from now."""
        if self._deadline is not None:
            self._deadline.allow_statements(UPLOAD_STATEMENTS)
        await self._conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('upload:' || $1, 0))", la_ods
        )

    async def upload_acknowledgement(self, la_ods: str, sequence: int) -> Acknowledgement | None:
        ack = await self._conn.fetchval(
            "SELECT acknowledgement FROM upload WHERE la_ods = $1 AND sequence = $2",
            la_ods,
            sequence,
        )
        return None if ack is None else parse_acknowledgement(self._opened_ack(ack))

    async def last_upload_sequence(self, la_ods: str) -> int | None:
        value = await self._conn.fetchval(
            "SELECT max(sequence) FROM upload WHERE la_ods = $1", la_ods
        )
        return None if value is None else int(value)

    async def store_upload(
        self, la_ods: str, sequence: int, file_code: str, ack: Acknowledgement, at: datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO upload (la_ods, sequence, received_at, file_code, acknowledgement,"
            " record_codes, records) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            la_ods,
            sequence,
            at,
            file_code,
            self._sealed_ack(acknowledgement_json(ack)),
            ack.summary,
            len(ack.records),
        )

    async def list_uploads(
        self, la_ods: str, *, before: int | None, limit: int
    ) -> Sequence[UploadSummary]:
        # Newest first by sequence, a page at a time from the primary key; the counts
        # are columns of their own (0004_la_views.sql), so no acknowledgement is read.
        rows = await self._conn.fetch(
            "SELECT sequence, received_at, file_code, records, record_codes FROM upload"
            " WHERE la_ods = $1 AND ($2::bigint IS NULL OR sequence < $2)"
            " ORDER BY sequence DESC LIMIT $3",
            la_ods,
            before,
            limit,
        )
        return [
            UploadSummary(
                sequence=r["sequence"],
                received_at=r["received_at"],
                file_code=r["file_code"],
                records=r["records"],
                record_codes=dict(r["record_codes"]),
            )
            for r in rows
        ]

    # An acknowledgement is stored as jsonb, and a database dump must not give
    # away an NHS number (SPEC §6): the new number a CPR05 record carries is
    # kept sealed, as new_nhs_number_sealed, and opened when it is read back.

    def _sealed_ack(self, ack: dict[str, Any]) -> dict[str, Any]:
        records = ack.get("records")
        if not records or not any("new_nhs_number" in r for r in records):
            return ack
        sealed = []
        for record in records:
            if "new_nhs_number" in record:
                record = dict(record)
                value = self._vault.seal("nhs_number", record.pop("new_nhs_number"))
                record["new_nhs_number_sealed"] = base64.b64encode(value).decode("ascii")
            sealed.append(record)
        return ack | {"records": sealed}

    def _opened_ack(self, ack: dict[str, Any]) -> dict[str, Any]:
        records = ack.get("records")
        if not records or not any("new_nhs_number_sealed" in r for r in records):
            return dict(ack)
        opened = []
        for record in records:
            if "new_nhs_number_sealed" in record:
                record = dict(record)
                value = base64.b64decode(record.pop("new_nhs_number_sealed"))
                record["new_nhs_number"] = self._vault.open("nhs_number", value)
            opened.append(record)
        return ack | {"records": opened}
