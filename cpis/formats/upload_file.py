"""Parse a batch upload file (SPEC §5) into per-record outcomes, without I/O.

The format is documented for LA developers in ``schemas/uploads.md``; the JSON
form is pinned by ``schemas/upload.schema.json``. Two kinds of fault:

- the file itself is unusable (not UTF-8, not JSON/CSV, truncated, wrong
  columns, missing header, an LA the caller may not upload for): the whole file
  is refused with ``UploadRejected(code="CPF01")`` and nothing is applied;
- one record is wrong: that record carries a ``RecordRejection`` (``CPR04`` for
  the NHS number, ``CPR07`` with a detail reason otherwise) and the rest stand.

No reason ever echoes a value from the file: values are NHS numbers, names and
dates of birth, and reasons end up in acknowledgements, logs and the LA inbox.
Reasons name the line, column, key or record instead.

Performance matters (a 100,000-record file is parsed before a COPY), so every
pattern is compiled once at import and the per-record path does no allocation
beyond the record's own values.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime

import orjson

from cpis.formats.plan_fields import (
    PLAN_FIELDS,
    PLAN_ID_RE,
    PLAN_ID_RULE,
    check_plan_fields,
    safe_field_name,
    unknown_field,
)
from cpis.model.uploads import (
    FieldRejection,
    Form,
    ParsedUpload,
    RecordAction,
    RecordCode,
    RecordRejection,
    RecordResult,
    UploadRejected,
)

CSV_COLUMNS: tuple[str, ...] = ("action", "plan_id", *PLAN_FIELDS)
DEFAULT_MAX_RECORDS = 200_000
MAX_SEQUENCE = 2**63 - 1  # a PostgreSQL bigint

_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?"
    r"(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_ODS = re.compile(r"[A-Z0-9]{3,10}")
_SEQUENCE_DIGITS = re.compile(r"[0-9]{1,19}")
_UTF8_CHARSETS = frozenset({"utf-8", "utf8"})
_HEADER_KEYS = ("la_ods", "sequence", "created")
_CSV_HEADER_KEYS = frozenset({*_HEADER_KEYS, "records"})
_JSON_KEYS = frozenset({*_HEADER_KEYS, "records"})


_ACTIONS: dict[str, RecordAction] = {a.value: a for a in RecordAction}


class Malformed(Exception):
    """Unwinds a parse to ``UploadRejected`` (and a trace file read to ``TraceFileError``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- one record ------------------------------------------------------------------------------


def _reject(
    index: int, plan_id: str | None, action: RecordAction | None, code: RecordCode, reason: str
) -> RecordResult:
    return RecordResult(index, plan_id, action, rejection=RecordRejection(code, reason))


def _record(
    index: int,
    raw_action: object,
    raw_plan_id: object,
    body: Mapping[str, object],
    seen: set[str],
    *,
    check_unknown: bool,
) -> RecordResult:
    """Judge one record: plan_id, then duplicates, then action, then the fields.

    plan_id comes first so every other rejection can name the plan. A plan_id
    seen earlier in the file is a duplicate whatever became of the earlier
    record: which of two versions the LA meant is not ours to guess.
    """
    if raw_plan_id is None:
        return _reject(index, None, None, "CPR07", "plan_id is required")
    if not isinstance(raw_plan_id, str) or not PLAN_ID_RE.fullmatch(raw_plan_id):
        return _reject(index, None, None, "CPR07", PLAN_ID_RULE)
    plan_id = raw_plan_id
    if plan_id in seen:
        return _reject(index, plan_id, None, "CPR07", "duplicate plan_id in file")
    seen.add(plan_id)
    if raw_action is None:
        return _reject(index, plan_id, None, "CPR07", "action is required")
    action = _ACTIONS.get(raw_action) if isinstance(raw_action, str) else None
    if action is None:
        return _reject(index, plan_id, None, "CPR07", "action must be upsert or delete")
    if action is RecordAction.DELETE:
        # A delete needs only its plan_id; other fields are ignored unvalidated
        # so that a plan uploaded in error can be removed whatever its data.
        unknown = unknown_field(body) if check_unknown else None
        if unknown is not None:
            return _reject(index, plan_id, action, unknown.code, unknown.reason)
        return RecordResult(index, plan_id, action)
    fields = check_plan_fields(body)
    if isinstance(fields, FieldRejection):
        return _reject(index, plan_id, action, fields.code, fields.reason)
    return RecordResult(index, plan_id, action, fields=fields)


# --- the header: LA, sequence, creation time ----------------------------------------------------


def _la_ods(raw: object, allowed: Collection[str] | None) -> str:
    if not isinstance(raw, str) or not _ODS.fullmatch(raw):
        raise Malformed("la_ods must be an ODS code: 3-10 capital letters and digits")
    if allowed is not None and raw not in allowed:
        raise Malformed("la_ods is not a local authority this caller may upload for")
    return raw


def _sequence(raw: object) -> int:
    """A JSON integer (true is not 1), or a CSV cell already turned into one.

    ``7.0`` is an integer to JSON Schema, so the parser takes it too rather
    than refuse a file the published schema accepts.
    """
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_SEQUENCE:
        raise Malformed(f"sequence must be a whole number from 1 to {MAX_SEQUENCE}")
    return raw


def _created(raw: object) -> datetime:
    message = "created must be a date-time with a UTC offset, as 2026-03-02T18:30:00Z"
    if not isinstance(raw, str) or not _DATETIME.fullmatch(raw):
        raise Malformed(message)
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        raise Malformed(message) from None


# --- detecting the form and decoding ------------------------------------------------------------


def _media_type(content_type: str | None) -> tuple[str, str | None]:
    if not content_type:
        return "", None
    kind, *params = content_type.split(";")
    charset = None
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
    return kind.strip().lower(), charset


def detect_form(data: bytes, content_type: str | None, filename: str | None) -> Form:
    """JSON or CSV: the content type if it says, else the file name, else the first byte.

    MESH and the command line often send ``application/octet-stream`` or
    nothing at all, hence the fallbacks.
    """
    kind, charset = _media_type(content_type)
    if charset is not None and charset not in _UTF8_CHARSETS:
        raise Malformed("the content type declares a charset other than UTF-8")
    if kind == "application/json" or kind.endswith("+json"):
        return "json"
    if kind in ("text/csv", "application/csv"):
        return "csv"
    name = (filename or "").lower()
    if name.endswith(".json"):
        return "json"
    if name.endswith(".csv"):
        return "csv"
    return "json" if data.removeprefix(codecs.BOM_UTF8).lstrip()[:1] == b"{" else "csv"


def decode_text(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Malformed(f"the file is not UTF-8 (bad byte at offset {exc.start})") from None
    return text.removeprefix("\ufeff")


# --- JSON -------------------------------------------------------------------------------------


def _parse_json(text: str, allowed: Collection[str] | None, max_records: int) -> ParsedUpload:
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise Malformed(
            f"the file is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(doc, dict):
        raise Malformed("the file must be a JSON object")
    unknown = sorted(str(k) for k in doc if k not in _JSON_KEYS)
    if unknown:
        name = safe_field_name(unknown[0])
        raise Malformed(
            f"unknown key: {name}" if name else "the file has a key that is not allowed"
        )
    for key in (*_HEADER_KEYS, "records"):
        if key not in doc:
            raise Malformed(f"{key} is missing")
    la_ods = _la_ods(doc["la_ods"], allowed)
    sequence = _sequence(doc["sequence"])
    created = _created(doc["created"])
    raw_records = doc["records"]
    if not isinstance(raw_records, list):
        raise Malformed("records must be an array")
    if len(raw_records) > max_records:
        raise Malformed(f"the file has more than {max_records} records")
    seen: set[str] = set()
    results = []
    for n, rec in enumerate(raw_records, start=1):
        if not isinstance(rec, dict):
            raise Malformed(f"record {n} is not a JSON object")
        body = {k: v for k, v in rec.items() if k != "action" and k != "plan_id"}
        results.append(
            _record(n, rec.get("action"), rec.get("plan_id"), body, seen, check_unknown=True)
        )
    return ParsedUpload(la_ods, sequence, created, tuple(results), "json")


# --- CSV --------------------------------------------------------------------------------------


def csv_rows(text: str) -> Iterator[tuple[int, list[str]]]:
    """Rows with the line each starts on; blank lines skipped; CSV faults as Malformed."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    start = 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            if "end of data" in str(exc):
                raise Malformed(
                    f"line {start}: a quoted value is never closed (the file looks truncated)"
                ) from None
            raise Malformed(f"line {reader.line_num}: not valid CSV quoting") from None
        if row:
            yield start, row
        start = reader.line_num + 1


def csv_header_block(
    rows: Iterator[tuple[int, list[str]]],
) -> tuple[dict[str, str], tuple[int, list[str]] | None]:
    """The ``#key,value`` lines, and the first row after them (the column header)."""
    values: dict[str, str] = {}
    for line, row in rows:
        if not row[0].startswith("#"):
            return values, (line, row)
        key = row[0][1:]
        if key not in _CSV_HEADER_KEYS:
            raise Malformed(f"line {line}: not a known header key (la_ods, sequence, created)")
        if key in values:
            raise Malformed(f"line {line}: #{key} is given twice")
        # Spreadsheets pad every line to the widest; trailing empty cells are fine.
        if len(row) < 2 or any(row[2:]):
            raise Malformed(f"line {line}: a header line must be #{key},value")
        values[key] = row[1]
    return values, None


def _csv_columns(line: int, row: list[str]) -> dict[str, int]:
    columns: dict[str, int] = {}
    for i, name in enumerate(row, start=1):
        # Position, not value: a file missing its header row has a record here.
        if name not in CSV_COLUMNS:
            raise Malformed(f"line {line}: column {i} of the header row is not a known column")
        if name in columns:
            raise Malformed(f"line {line}: column {name} appears twice in the header row")
        columns[name] = i - 1
    for name in CSV_COLUMNS:
        if name not in columns:
            raise Malformed(f"line {line}: the header row has no {name} column")
    return columns


def _parse_csv(text: str, allowed: Collection[str] | None, max_records: int) -> ParsedUpload:
    if not text.endswith(("\n", "\r")):
        # Without this a file cut inside its last value would parse cleanly.
        raise Malformed("the file does not end with a line break (it looks truncated)")
    rows = csv_rows(text)
    header, first = csv_header_block(rows)
    for key in _HEADER_KEYS:
        if key not in header:
            raise Malformed(f"the header block has no #{key} line")
    la_ods = _la_ods(header["la_ods"], allowed)
    digits = header["sequence"]
    sequence = _sequence(int(digits) if _SEQUENCE_DIGITS.fullmatch(digits) else None)
    created = _created(header["created"])
    declared: int | None = None
    if "records" in header:
        if not _SEQUENCE_DIGITS.fullmatch(header["records"]):
            raise Malformed("#records must be a whole number")
        declared = int(header["records"])
    if first is None:
        raise Malformed("the file has no header row of column names")
    columns = _csv_columns(*first)
    width = len(columns)
    i_action, i_plan_id = columns["action"], columns["plan_id"]
    field_cols = tuple((name, columns[name]) for name in PLAN_FIELDS)
    seen: set[str] = set()
    results: list[RecordResult] = []
    for line, row in rows:
        if len(row) != width:
            raise Malformed(f"line {line}: has {len(row)} values, the header row has {width}")
        if len(results) >= max_records:
            raise Malformed(f"the file has more than {max_records} records")
        body = {name: row[i] for name, i in field_cols if row[i]}
        results.append(
            _record(
                line,
                row[i_action] or None,
                row[i_plan_id] or None,
                body,
                seen,
                check_unknown=False,
            )
        )
    if declared is not None and declared != len(results):
        raise Malformed(
            f"#records says {declared} but the file has {len(results)} (it looks truncated)"
        )
    return ParsedUpload(la_ods, sequence, created, tuple(results), "csv")


# --- entry point ------------------------------------------------------------------------------


def parse_upload(
    data: bytes,
    *,
    content_type: str | None,
    filename: str | None = None,
    max_records: int = DEFAULT_MAX_RECORDS,
    allowed_la_ods: Collection[str] | None = None,
) -> ParsedUpload | UploadRejected:
    """Parse an upload file; never raises for bad input.

    ``allowed_la_ods`` is the ODS codes the caller may upload for (the
    principal's, or the MESH mailbox's LA); a file for any other LA is refused
    whole, as CPF01, before any record is looked at. None skips that check
    (the command line, where the operator is trusted).
    """
    if not data.strip():
        return UploadRejected("the file is empty")
    try:
        form = detect_form(data, content_type, filename)
        text = decode_text(data)
        if form == "json":
            return _parse_json(text, allowed_la_ods, max_records)
        return _parse_csv(text, allowed_la_ods, max_records)
    except Malformed as exc:
        return UploadRejected(exc.reason)
