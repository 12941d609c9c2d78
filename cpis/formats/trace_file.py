"""A trace file and its review (``cpis trace FILE``, issue 4), without I/O.

A trace file is an LA's file in the upload format (``schemas/uploads.md``), with
or without NHS numbers, and may carry the child's ``sex`` and ``postcode``
beyond it (JSON fields or CSV columns; :data:`EXTRA_COLUMNS`): the LA knows
both, and they tell a child from a namesake. Neither is ever written to the
review.

The reader is deliberately tolerant, unlike the upload parser
(:mod:`cpis.formats.upload_file`): a trace file is work in progress, so plan
fields are not validated, unknown CSV columns are ignored, and a date it cannot
read counts as missing (with a reason). Only a file that cannot be read at all
is refused (:class:`cpis.errors.TraceFileError`). Deletes are counted and skipped.

The review (CSV, :data:`REVIEW_COLUMNS`) has one row per record: its number in
the file, the LA's plan id, the status, a proposed NHS number (certain and
possible only), the score and reason codes. It never holds the index's names
or birth dates, so it can be handed to anyone on the LA's side.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any, TextIO

import orjson

from cpis.errors import TraceFileError
from cpis.formats.plan_fields import DATE_RE, PLAN_ID_RE
from cpis.formats.upload_file import (
    CSV_COLUMNS,
    Malformed,
    csv_header_block,
    csv_rows,
    decode_text,
    detect_form,
)
from cpis.model.tracing import ReviewRow, TraceFile, TraceRecord

REVIEW_COLUMNS = ("record", "plan_id", "status", "proposed_nhs_number", "score", "reasons")
EXTRA_COLUMNS = ("sex", "postcode")
"""Optional fields a trace file may carry beyond the upload format: the LA
knows the child's sex and address, and they tell a child from a namesake."""

_DEMOGRAPHICS = ("family_name", "given_name", "birth_date")


def read_trace_file(data: bytes, *, filename: str | None = None) -> TraceFile:
    """The records of an upload-format file; raises TraceFileError."""
    if not data.strip():
        raise TraceFileError("the file is empty")
    try:
        form = detect_form(data, None, filename)
        text = decode_text(data)
        return _read_json(text) if form == "json" else _read_csv(text)
    except Malformed as exc:
        raise TraceFileError(exc.reason) from None


def _read_json(text: str) -> TraceFile:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(
            f"the file is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    raw = doc.get("records") if isinstance(doc, dict) else doc
    if not isinstance(raw, list):
        raise Malformed("the file must be an upload file with a records array")
    out: list[TraceRecord] = []
    deletes = 0
    for n, rec in enumerate(raw, start=1):
        if not isinstance(rec, dict):
            raise Malformed(f"record {n} is not a JSON object")
        if rec.get("action") == "delete":
            deletes += 1
        else:
            out.append(_record(n, rec))
    return TraceFile(tuple(out), deletes)


def _read_csv(text: str) -> TraceFile:
    rows = csv_rows(text)
    _header, first = csv_header_block(rows)
    if first is None:
        raise Malformed("the file has no header row of column names")
    line, names = first
    columns: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in CSV_COLUMNS or name in EXTRA_COLUMNS:
            if name in columns:
                raise Malformed(f"line {line}: column {name} appears twice in the header row")
            columns[name] = i
    if "plan_id" not in columns or not any(c in columns for c in _DEMOGRAPHICS):
        raise Malformed(
            f"line {line}: the header row needs a plan_id column and at least one of "
            "family_name, given_name, birth_date"
        )
    out: list[TraceRecord] = []
    deletes = 0
    for line, row in rows:
        values = {name: row[i] for name, i in columns.items() if i < len(row) and row[i]}
        if values.get("action") == "delete":
            deletes += 1
        else:
            out.append(_record(line, values))
    return TraceFile(tuple(out), deletes)


def _record(index: int, raw: Mapping[str, Any]) -> TraceRecord:
    problems: list[str] = []
    plan_id = raw.get("plan_id")
    if not isinstance(plan_id, str) or not PLAN_ID_RE.fullmatch(plan_id):
        plan_id = None
    number = raw.get("nhs_number")
    if number is not None and not isinstance(number, str):
        number = str(number)  # a JSON number: checked (and refused) like any other
    if isinstance(number, str) and not number.strip():
        number = None
    born: date | None = None
    raw_birth = raw.get("birth_date")
    if raw_birth is not None:
        if isinstance(raw_birth, str) and DATE_RE.fullmatch(raw_birth.strip()):
            try:
                born = date.fromisoformat(raw_birth.strip())
            except ValueError:
                problems.append("birth-date-unreadable")
        else:
            problems.append("birth-date-unreadable")
    return TraceRecord(
        record=index,
        plan_id=plan_id,
        nhs_number=number,
        given_name=_text(raw.get("given_name")),
        family_name=_text(raw.get("family_name")),
        birth_date=born,
        problems=tuple(problems),
        sex=_text(raw.get("sex")),
        postcode=_text(raw.get("postcode")),
    )


def _text(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def write_review(rows: Sequence[ReviewRow], out: TextIO) -> None:
    """The review CSV of ``rows`` onto ``out`` (opened with ``newline=""``)."""
    writer = csv.writer(out)
    writer.writerow(REVIEW_COLUMNS)
    for row in rows:
        writer.writerow(
            (
                row.record,
                row.plan_id or "",
                row.status,
                row.proposed_nhs_number or "",
                "" if row.score is None else f"{row.score:.2f}",
                " ".join(row.reasons),
            )
        )
