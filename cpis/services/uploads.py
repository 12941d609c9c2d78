"""An LA's upload file (SPEC §5), received, checked, applied and acknowledged.

:func:`receive` is the one way in: ``POST /la/v1/uploads`` (``cpis.web.uploads``),
the MESH inbox (``cpis.workers.mesh_uploads``) and ``cpis upload`` (``cpis.cli``)
each hand it the file as it arrived (:class:`~cpis.model.uploads.UploadFile`)
and send back the :class:`~cpis.model.uploads.Acknowledgement` it returns, so
a file gets the same answer whichever way it comes. It parses the file
(:mod:`cpis.formats.upload_file`; a malformed file, or one for an LA its sender
may not upload for, is CPF01 and changes nothing), then applies it
(:func:`apply_upload`) in one transaction:

- A file whose sequence number was applied before gets the acknowledgement it
  got then, and nothing is applied again (safe to resend).
- A sequence number lower than the LA's last applied one is refused (CPF04,
  nothing applied, nothing stored): the LA's system is replaying old data.
- With a person index, upserts are checked against it first (CPR01/02/03/05,
  ``cpis.services.verification``). If the index cannot answer, the file gets CPF05:
  nothing applied and nothing stored, so the same sequence can be sent again.
- Otherwise every accepted record is applied (CPR06) and every other record
  says why not (the parser's CPR04/CPR07, the index's, or CPR07 here, e.g.
  deleting a plan that does not exist); the file code is CPF02 (all applied),
  CPF03 (some) or CPF04 (none). The acknowledgement is stored with the file's
  sequence in the same transaction as the changes.

The records are applied in bulk (SPEC §8: a 100,000-record file within 3x a
raw COPY of its rows), with exactly the outcome of applying them one by one in
file order. Only a plan's own records interact, and for one plan id only its
last delete matters to what is stored: every delete is made first (which tells
whether the plan was there), then the upserts after each plan's last delete,
in file order. Each record's code follows from those two facts.

Acknowledgements name records by their number in the file and the LA's own
plan id, and never carry an NHS number, name or birth date, except the new NHS
number of a CPR05 record, which the LA needs (stored sealed by the adapter).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

from cpis.errors import PersonIndexUnavailable
from cpis.formats.upload_file import parse_upload
from cpis.model import PlanFields
from cpis.model.uploads import (
    AcknowledgedCode,
    Acknowledgement,
    FileCode,
    ParsedUpload,
    RecordAcknowledgement,
    RecordAction,
    RecordResult,
    UploadFile,
    UploadRejected,
)
from cpis.ports.clock import Clock
from cpis.ports.database import Database, Transaction
from cpis.ports.person_index import PersonIndex
from cpis.services.verification import verify_records


async def receive(
    db: Database,
    clock: Clock,
    file: UploadFile,
    *,
    index: PersonIndex | None,
    max_bytes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Acknowledgement:
    """Parse, check and apply ``file``; its acknowledgement, stored when it was applied.

    ``max_bytes`` refuses a larger file whole (CPF01), for a channel that has no
    limit of its own (HTTP answers 413 before a body that large is read).
    ``progress`` is told ``(records dealt with, records in the file)`` once the
    file is parsed, every few thousand records, and once at the end; a file that
    does not parse never tells it anything.
    """
    if max_bytes is not None and len(file.data) > max_bytes:
        return refusal(f"the file is larger than the {max_bytes} bytes uploads are limited to")
    parsed = parse_upload(
        file.data,
        content_type=file.content_type,
        filename=file.filename,
        allowed_la_ods=file.may_upload_for,
    )
    if isinstance(parsed, UploadRejected):
        return _rejected(parsed)
    report: Callable[[int], None] | None = None
    if progress is not None:
        total = len(parsed.records)
        progress(0, total)
        report = functools.partial(_progress, progress, total)
    ack, _applied_now = await apply_upload(db, clock, parsed, index=index, progress=report)
    return ack


def refusal(reason: str) -> Acknowledgement:
    """The acknowledgement of a file refused whole before it was read (CPF01): for a
    channel's own reasons, such as a MESH sender no LA is registered to."""
    return _rejected(UploadRejected(reason))


def _rejected(rejected: UploadRejected) -> Acknowledgement:
    return Acknowledgement(rejected.code, reason=rejected.reason)


def _progress(progress: Callable[[int, int], None], total: int, done: int) -> None:
    progress(done, total)


async def apply_upload(
    db: Database,
    clock: Clock,
    parsed: ParsedUpload,
    *,
    index: PersonIndex | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Acknowledgement, bool]:
    """Apply ``parsed``; returns its acknowledgement and whether it was applied just now.

    The step of :func:`receive` after parsing, for a file already parsed (the
    tests and ``bench/upload`` measure it on its own). ``progress`` is told how
    many records have been dealt with, every few thousand records and once at
    the end.
    """
    # Cheap checks first, without a transaction: a resent or refused file must
    # not cost person index calls, and those calls must not hold one open.
    async with db.connection() as conn:
        settled = await _settled(conn, parsed)
    if settled is not None:
        return settled, False
    records = parsed.records
    if index is not None:
        try:
            records = await verify_records(index, records)
        except PersonIndexUnavailable:
            return _refused(parsed, "person index unavailable, resubmit", "CPF05"), False
    la = parsed.la_ods
    async with db.transaction() as tx:
        await tx.lock_uploads(la)
        # Again under the lock: the same file may have been applied meanwhile.
        settled = await _settled(tx, parsed)
        if settled is not None:
            return settled, False
        now = clock.now()
        deletes, upserts = _changes(records)
        existed = await tx.delete_plans(la, deletes)
        await tx.put_plans(
            la, upserts, now, progress=_offset(progress, len(records) - len(upserts))
        )
        entries = _entries(records, existed)
        applied = sum(1 for e in entries if e.code == "CPR06")
        file_code: FileCode
        if applied == len(entries):
            file_code = "CPF02"
        elif applied:
            file_code = "CPF03"
        else:
            file_code = "CPF04"
        ack = Acknowledgement(
            file_code,
            la_ods=la,
            sequence=parsed.sequence,
            created=parsed.created,
            received_at=now,
            records=entries,
        )
        await tx.store_upload(la, parsed.sequence, file_code, ack, now)
    if progress is not None:
        progress(len(records))
    return ack, True


def _offset(progress: Callable[[int], None] | None, done: int) -> Callable[[int], None] | None:
    """``progress`` for the upserts: every other record is dealt with before them."""
    if progress is None:
        return None
    report = progress
    return lambda n: report(done + n)


async def _settled(tx: Transaction, parsed: ParsedUpload) -> Acknowledgement | None:
    """The stored acknowledgement, or a refusal, or None when the file may be applied."""
    la = parsed.la_ods
    previous = await tx.upload_acknowledgement(la, parsed.sequence)
    if previous is not None:
        return previous
    if await tx.get_la(la) is None:
        return _refused(parsed, "the local authority is not registered")
    last = await tx.last_upload_sequence(la)
    if last is not None and parsed.sequence < last:
        return _refused(
            parsed, f"sequence {parsed.sequence} is lower than the last applied ({last})"
        )
    return None


def _changes(
    records: Sequence[RecordResult],
) -> tuple[list[str], list[tuple[str, PlanFields]]]:
    """The plans to delete, then the upserts to make, for the file-order outcome.

    A plan's upserts before its last delete are undone by it, so only the
    ones after it are made (a new plan, as after any delete).
    """
    last_delete: dict[str, int] = {}
    for i, rec in enumerate(records):
        if rec.rejection is None and rec.action is RecordAction.DELETE:
            assert rec.plan_id is not None
            last_delete[rec.plan_id] = i
    upserts: list[tuple[str, PlanFields]] = []
    for i, rec in enumerate(records):
        if rec.rejection is None and rec.action is RecordAction.UPSERT:
            assert rec.plan_id is not None and rec.fields is not None
            if i > last_delete.get(rec.plan_id, -1):
                upserts.append((rec.plan_id, rec.fields))
    return sorted(last_delete), upserts


def _entries(
    records: Sequence[RecordResult], existed: frozenset[str]
) -> tuple[RecordAcknowledgement, ...]:
    """One acknowledgement entry per record, in file order.

    ``existed`` is which of the deleted plans were there before the file; from
    it, walking the file tells whether each delete found its plan.
    """
    present = set(existed)
    entries: list[RecordAcknowledgement] = []
    for rec in records:
        code: AcknowledgedCode = "CPR06"
        reason = new_nhs_number = None
        if rec.rejection is not None:
            code, reason, new_nhs_number = rec.rejection
        elif rec.action is RecordAction.DELETE:
            if rec.plan_id in present:
                present.discard(rec.plan_id)
            else:
                code, reason = "CPR07", "no such plan to delete"
        else:
            assert rec.plan_id is not None
            present.add(rec.plan_id)
        entries.append(
            RecordAcknowledgement(rec.index, rec.plan_id, rec.action, code, reason, new_nhs_number)
        )
    return tuple(entries)


def _refused(parsed: ParsedUpload, reason: str, code: FileCode = "CPF04") -> Acknowledgement:
    return Acknowledgement(code, la_ods=parsed.la_ods, sequence=parsed.sequence, reason=reason)
