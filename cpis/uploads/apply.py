"""Applying a parsed upload (SPEC §5): one transaction per file, CPF/CPR codes.

- A file whose sequence number was applied before gets the acknowledgement it
  got then, and nothing is applied again (safe to resend).
- A sequence number lower than the LA's last applied one is refused (CPF04,
  nothing applied, nothing stored): the LA's system is replaying old data.
- Otherwise every accepted record is applied (CPR06) and every other record
  says why not (the parser's CPR04/CPR07, or CPR07 here, e.g. deleting a plan
  that does not exist); the file code is CPF02 (all applied), CPF03 (some) or
  CPF04 (none). The acknowledgement is stored with the file's sequence in the
  same transaction as the changes.

Acknowledgements name records by their number in the file and the LA's own
plan id, and never carry an NHS number, name or birth date.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from cpis.ports import Clock, Database
from cpis.uploads.parse import ParsedUpload, RecordAction, UploadRejected


def rejected_acknowledgement(rejected: UploadRejected) -> dict[str, Any]:
    return {"file_code": rejected.code, "reason": rejected.reason, "records": []}


async def apply_upload(
    db: Database,
    clock: Clock,
    parsed: ParsedUpload,
    *,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], bool]:
    """Apply ``parsed``; returns its acknowledgement and whether it was applied just now.

    ``progress`` is told how many records have been dealt with, as they are.
    """
    la = parsed.la_ods
    async with db.transaction() as tx:
        await tx.lock_uploads(la)
        previous = await tx.upload_acknowledgement(la, parsed.sequence)
        if previous is not None:
            return previous, False
        if await tx.get_la(la) is None:
            return _refused(parsed, "the local authority is not registered"), False
        last = await tx.last_upload_sequence(la)
        if last is not None and parsed.sequence < last:
            return _refused(
                parsed, f"sequence {parsed.sequence} is lower than the last applied ({last})"
            ), False
        now = clock.now()
        records: list[dict[str, Any]] = []
        for rec in parsed.records:
            entry: dict[str, Any] = {
                "record": rec.index,
                "plan_id": rec.plan_id,
                "action": None if rec.action is None else rec.action.value,
            }
            if rec.rejection is not None:
                entry |= {"code": rec.rejection.code, "reason": rec.rejection.reason}
            elif rec.action is RecordAction.DELETE:
                assert rec.plan_id is not None
                if await tx.delete_plan(la, rec.plan_id):
                    entry["code"] = "CPR06"
                else:
                    entry |= {"code": "CPR07", "reason": "no such plan to delete"}
            else:
                assert rec.plan_id is not None and rec.fields is not None
                await tx.put_plan(la, rec.plan_id, rec.fields, now)
                entry["code"] = "CPR06"
            records.append(entry)
            if progress is not None:
                progress(len(records))
        applied = sum(1 for r in records if r["code"] == "CPR06")
        if applied == len(records):
            file_code = "CPF02"
        elif applied:
            file_code = "CPF03"
        else:
            file_code = "CPF04"
        ack = {
            "la_ods": la,
            "sequence": parsed.sequence,
            "created": parsed.created.isoformat(),
            "received_at": now.isoformat(),
            "file_code": file_code,
            "summary": dict(sorted(Counter(r["code"] for r in records).items())),
            "records": records,
        }
        await tx.store_upload(la, parsed.sequence, file_code, ack, now)
    return ack, True


def _refused(parsed: ParsedUpload, reason: str) -> dict[str, Any]:
    return {
        "la_ods": parsed.la_ods,
        "sequence": parsed.sequence,
        "file_code": "CPF04",
        "reason": reason,
        "records": [],
    }
