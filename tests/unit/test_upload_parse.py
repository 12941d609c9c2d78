"""Upload file parsing (SPEC §5): file faults are CPF01, record faults CPR04/CPR07.

Every NHS number here is from the 999 range (never issued to a person) and
every name is invented.
"""

from __future__ import annotations

import codecs
import json
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from cpis.formats.upload_file import CSV_COLUMNS, parse_upload
from cpis.matching.nhs_number import synthetic_numbers
from cpis.model import PlanType
from cpis.model.uploads import (
    ParsedUpload,
    RecordAction,
    RecordRejection,
    RecordResult,
    UploadRejected,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
EXAMPLES = SCHEMAS / "examples"
SCHEMA = json.loads((SCHEMAS / "upload.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)


NHS = synthetic_numbers(8)
# A 999-range number whose check digit is wrong.
BAD_CHECK = NHS[0][:9] + str((int(NHS[0][9]) + 1) % 10)
FAMILY, GIVEN = "Testchild", "Alexandrina"
HEADER = {"la_ods": "XDM01", "sequence": 42, "created": "2026-03-02T18:30:00Z"}


def upsert(plan_id: Any = "P-1", **fields: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "action": "upsert",
        "plan_id": plan_id,
        "nhs_number": NHS[0],
        "plan_type": "CPP",
        "start_date": "2026-03-02",
        "birth_date": "2016-07-14",
        "family_name": FAMILY,
        "given_name": GIVEN,
    }
    rec.update(fields)
    return {k: v for k, v in rec.items() if v is not None}


def json_file(records: list[Any], **header: Any) -> bytes:
    doc = {**HEADER, **header, "records": records}
    return json.dumps(doc).encode()


def csv_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_file(
    records: list[dict[str, Any]],
    *,
    columns: tuple[str, ...] = CSV_COLUMNS,
    header_block: str | None = None,
    eol: str = "\r\n",
) -> bytes:
    block = (
        header_block
        if header_block is not None
        else eol.join(f"#{k},{v}" for k, v in HEADER.items()) + eol
    )
    lines = [",".join(columns)]
    lines += [",".join(csv_cell(rec.get(c)) for c in columns) for rec in records]
    return (block + eol.join(lines) + eol).encode()


def parsed(result: ParsedUpload | UploadRejected) -> ParsedUpload:
    assert isinstance(result, ParsedUpload), result
    return result


def rejected(result: ParsedUpload | UploadRejected) -> UploadRejected:
    assert isinstance(result, UploadRejected), result
    assert result.code == "CPF01"
    return result


def as_json(data: bytes) -> ParsedUpload | UploadRejected:
    return parse_upload(data, content_type="application/json")


def as_csv(data: bytes) -> ParsedUpload | UploadRejected:
    return parse_upload(data, content_type="text/csv")


def summary(upload: ParsedUpload) -> list[tuple[Any, ...]]:
    """What must match between the JSON and CSV forms of the same records."""
    return [(r.plan_id, r.action, r.fields, r.rejection) for r in upload.records]


# --- good files ---------------------------------------------------------------------------------


def test_example_json_is_parsed_into_plan_fields() -> None:
    """The documented example parses: three upserts with their fields, one delete."""
    upload = parsed(as_json((EXAMPLES / "upload-example.json").read_bytes()))
    assert (upload.la_ods, upload.sequence, upload.form) == ("XDM01", 42, "json")
    assert upload.created == datetime(2026, 3, 2, 18, 30, tzinfo=UTC)
    assert [r.index for r in upload.records] == [1, 2, 3, 4]
    assert all(r.accepted for r in upload.records)
    first, lac, ucpp, delete = upload.records
    assert first.fields is not None
    assert first.fields.plan_type is PlanType.CPP
    assert first.fields.birth_date == date(2016, 7, 14)
    assert first.fields.family_name == "Testchild"
    assert lac.fields is not None and lac.fields.nhs_number == "9990000026"  # spaces removed
    assert lac.fields.end_date == date(2026, 2, 28)
    assert ucpp.fields is not None and ucpp.fields.plan_type is PlanType.UCPP
    assert (delete.action, delete.plan_id, delete.fields) == (
        RecordAction.DELETE,
        "DEMO-CPP-0099",
        None,
    )


def test_example_csv_says_the_same_as_example_json() -> None:
    """The CSV example is the JSON example in the other form: same header, same records."""
    from_json = parsed(as_json((EXAMPLES / "upload-example.json").read_bytes()))
    from_csv = parsed(as_csv((EXAMPLES / "upload-example.csv").read_bytes()))
    assert from_csv.form == "csv"
    assert (from_csv.la_ods, from_csv.sequence, from_csv.created) == (
        from_json.la_ods,
        from_json.sequence,
        from_json.created,
    )
    assert summary(from_csv) == summary(from_json)
    # CSV records are numbered by line: four header lines and the column row come first.
    assert [r.index for r in from_csv.records] == [6, 7, 8, 9]


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("csv-crlf", lambda: csv_file([upsert()])),
        ("csv-lf", lambda: csv_file([upsert()], eol="\n")),
        ("csv-cr", lambda: csv_file([upsert()], eol="\r")),
        ("csv-bom", lambda: codecs.BOM_UTF8 + csv_file([upsert()])),
        ("json-bom", lambda: codecs.BOM_UTF8 + json_file([upsert()])),
        ("json-pretty", lambda: json.dumps({**HEADER, "records": [upsert()]}, indent=2).encode()),
        ("csv-reordered-columns", lambda: csv_file([upsert()], columns=CSV_COLUMNS[::-1])),
        (
            "csv-spreadsheet-padded-header",
            lambda: csv_file(
                [upsert()],
                header_block="#created,2026-03-02T18:30:00Z,,,\r\n#la_ods,XDM01,,\r\n"
                "#sequence,42,,,,,,,,\r\n",
            ),
        ),
        ("csv-blank-lines", lambda: csv_file([upsert()]).replace(b"\r\nupsert", b"\r\n\r\nupsert")),
    ],
)
def test_good_file_variants_parse_to_the_same_record(name: str, make: Any) -> None:
    """Line endings, a BOM, column order and spreadsheet padding change nothing."""
    data = make()
    upload = parsed(parse_upload(data, content_type=None))
    assert (upload.la_ods, upload.sequence) == ("XDM01", 42)
    assert len(upload.records) == 1
    record = upload.records[0]
    assert record.accepted and record.fields is not None
    assert (record.fields.nhs_number, record.fields.given_name) == (NHS[0], GIVEN)


@pytest.mark.parametrize(
    ("content_type", "filename", "form"),
    [
        ("application/json", None, "json"),
        ("application/json; charset=utf-8", None, "json"),
        ("application/vnd.cpis.upload+json", None, "json"),
        ("text/csv", None, "csv"),
        ("text/csv; charset=UTF-8", None, "csv"),
        ("application/csv", None, "csv"),
        ("application/octet-stream", "XDM01-42.CSV", "csv"),
        ("application/octet-stream", "XDM01-42.json", "json"),
        (None, None, "json"),  # from the first byte
        (None, "upload", "json"),
    ],
)
def test_form_comes_from_content_type_then_filename_then_first_byte(
    content_type: str | None, filename: str | None, form: str
) -> None:
    """MESH and the CLI may not say what the file is, so the parser works it out."""
    data = json_file([upsert()]) if form == "json" else csv_file([upsert()])
    upload = parsed(parse_upload(data, content_type=content_type, filename=filename))
    assert upload.form == form


def test_csv_without_content_type_or_name_is_detected() -> None:
    """A file that does not start with '{' is taken as CSV."""
    assert parsed(parse_upload(csv_file([upsert()]), content_type=None)).form == "csv"


@pytest.mark.parametrize("form", ["json", "csv"])
def test_a_file_with_no_records_is_valid(form: str) -> None:
    """A day with no changes still sends a file, so its sequence is acknowledged."""
    data = json_file([]) if form == "json" else csv_file([])
    assert parsed(parse_upload(data, content_type=None)).records == ()


def test_csv_quoted_values_may_hold_commas_and_quotes() -> None:
    """RFC 4180 quoting: a name with a comma or a quote survives."""
    upload = parsed(as_csv(csv_file([upsert(family_name='O"Testname, Jr')])))
    fields = upload.records[0].fields
    assert fields is not None and fields.family_name == 'O"Testname, Jr'


def test_csv_index_is_the_line_a_record_starts_on() -> None:
    """A quoted value over two lines moves later records down; rejections point at lines."""
    data = csv_file([upsert("P-1", given_name="Two\nLines"), upsert("P-2"), upsert("P-3")])
    upload = parsed(as_csv(data))
    assert [r.index for r in upload.records] == [5, 7, 8]
    assert upload.records[0].rejection == RecordRejection(
        "CPR07", "given_name has characters that are not allowed"
    )


def test_empty_csv_cells_are_absent_and_names_are_trimmed() -> None:
    """Empty cells are absent optional fields, as null is in JSON."""
    rec = upsert(birth_date=None, family_name="  Testchild ", given_name=None)
    fields = parsed(as_csv(csv_file([rec]))).records[0].fields
    assert fields is not None
    assert (fields.birth_date, fields.family_name, fields.given_name) == (None, "Testchild", None)


def test_json_null_is_absent() -> None:
    """null for an optional field is the same as leaving it out."""
    rec = {**upsert(), "end_date": None, "delete_date": None, "given_name": None}
    fields = parsed(as_json(json_file([rec]))).records[0].fields
    assert fields is not None and fields.end_date is None and fields.given_name is None


# --- deletes and duplicates -----------------------------------------------------------------


@pytest.mark.parametrize("form", ["json", "csv"])
def test_delete_needs_only_plan_id_and_ignores_other_fields(form: str) -> None:
    """A plan uploaded in error can be removed whatever its (possibly bad) data."""
    records = [
        {"action": "delete", "plan_id": "P-1"},
        {"action": "delete", "plan_id": "P-2", "nhs_number": BAD_CHECK, "start_date": "x"},
    ]
    data = json_file(records) if form == "json" else csv_file(records)
    upload = parsed(parse_upload(data, content_type=None))
    assert [(r.plan_id, r.action, r.accepted) for r in upload.records] == [
        ("P-1", RecordAction.DELETE, True),
        ("P-2", RecordAction.DELETE, True),
    ]


def test_json_delete_with_an_unknown_field_is_rejected() -> None:
    """Unknown keys are refused on deletes as on upserts: they mean a misbuilt file."""
    upload = parsed(as_json(json_file([{"action": "delete", "plan_id": "P-1", "colour": "x"}])))
    assert upload.records[0].rejection == RecordRejection("CPR07", "unknown field: colour")


@pytest.mark.parametrize("form", ["json", "csv"])
def test_later_records_with_a_repeated_plan_id_are_rejected(form: str) -> None:
    """The first record for a plan_id stands; every later one is CPR07, even a delete."""
    records = [
        upsert("P-1"),
        upsert("P-2"),
        upsert("P-1", nhs_number=NHS[1]),
        {"action": "delete", "plan_id": "P-1"},
    ]
    data = json_file(records) if form == "json" else csv_file(records)
    results = parsed(parse_upload(data, content_type=None)).records
    assert [r.accepted for r in results] == [True, True, False, False]
    dup = RecordRejection("CPR07", "duplicate plan_id in file")
    assert (results[2].plan_id, results[2].rejection) == ("P-1", dup)
    assert results[3].rejection == dup


def test_a_rejected_first_record_still_claims_its_plan_id() -> None:
    """Which of two versions the LA meant is not guessed, even if the first was bad."""
    results = parsed(as_json(json_file([upsert("P-1", nhs_number=BAD_CHECK), upsert("P-1")])))
    codes = [r.rejection.code if r.rejection else None for r in results.records]
    assert codes == ["CPR04", "CPR07"]


# --- per-record rejections --------------------------------------------------------------------

RECORD_CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("nhs-missing", upsert(nhs_number=None), "CPR04", "nhs_number is required"),
    ("nhs-check-digit", upsert(nhs_number=BAD_CHECK), "CPR04", "nhs_number check digit is wrong"),
    ("nhs-nine-digits", upsert(nhs_number=NHS[0][:9]), "CPR04", "nhs_number must be 10 digits"),
    ("nhs-letters", upsert(nhs_number="999000001X"), "CPR04", "nhs_number must be 10 digits"),
    (
        "nhs-same-digits",
        upsert(nhs_number="9999999999"),
        "CPR04",
        "nhs_number all digits are the same",
    ),
    ("type-missing", upsert(plan_type=None), "CPR07", "plan_type must be CPP, LAC or UCPP"),
    ("type-unknown", upsert(plan_type="cpp"), "CPR07", "plan_type must be CPP, LAC or UCPP"),
    ("start-missing", upsert(start_date=None), "CPR07", "start_date is required"),
    (
        "start-format",
        upsert(start_date="02/03/2026"),
        "CPR07",
        "start_date must be a date as YYYY-MM-DD",
    ),
    ("start-unreal", upsert(start_date="2026-02-30"), "CPR07", "start_date is not a real date"),
    ("end-format", upsert(end_date="2026-3-1"), "CPR07", "end_date must be a date as YYYY-MM-DD"),
    ("end-before-start", upsert(end_date="2026-03-01"), "CPR07", "end_date is before start_date"),
    (
        "birth-after-start",
        upsert(birth_date="2026-03-03"),
        "CPR07",
        "birth_date is after start_date",
    ),
    ("birth-unreal", upsert(birth_date="2016-13-01"), "CPR07", "birth_date is not a real date"),
    (
        "delete-date-format",
        upsert(delete_date="soon"),
        "CPR07",
        "delete_date must be a date as YYYY-MM-DD",
    ),
    (
        "family-too-long",
        upsert(family_name="T" * 101),
        "CPR07",
        "family_name must be a non-empty string of at most 100 characters",
    ),
    (
        "given-blank",
        upsert(given_name="   "),
        "CPR07",
        "given_name must be a non-empty string of at most 100 characters",
    ),
    (
        "given-control",
        upsert(given_name="Al\tex"),
        "CPR07",
        "given_name has characters that are not allowed",
    ),
    ("plan-id-missing", upsert(plan_id=None), "CPR07", "plan_id is required"),
    (
        "plan-id-bad",
        upsert(plan_id="P 1/2"),
        "CPR07",
        "plan_id must be 1-64 letters, digits, '.', '_' or '-'",
    ),
    (
        "plan-id-long",
        upsert(plan_id="P" * 65),
        "CPR07",
        "plan_id must be 1-64 letters, digits, '.', '_' or '-'",
    ),
    ("action-missing", upsert(action=None), "CPR07", "action is required"),
    ("action-unknown", upsert(action="update"), "CPR07", "action must be upsert or delete"),
    ("action-case", upsert(action="UPSERT"), "CPR07", "action must be upsert or delete"),
]


@pytest.mark.parametrize("form", ["json", "csv"])
@pytest.mark.parametrize(
    ("name", "record", "code", "reason"), RECORD_CASES, ids=[c[0] for c in RECORD_CASES]
)
def test_a_bad_record_is_rejected_alone_with_its_reason(
    form: str, name: str, record: dict[str, Any], code: str, reason: str
) -> None:
    """One bad record gets its code and reason; the good records either side stand."""
    records = [upsert("GOOD-1", nhs_number=NHS[1]), record, upsert("GOOD-2", nhs_number=NHS[2])]
    data = json_file(records) if form == "json" else csv_file(records)
    results = parsed(parse_upload(data, content_type=None)).records
    assert [r.accepted for r in results] == [True, False, True]
    bad = results[1]
    assert bad.rejection == RecordRejection(code, reason)  # type: ignore[arg-type]
    assert bad.fields is None
    valid_plan_id = name not in ("plan-id-missing", "plan-id-bad", "plan-id-long")
    assert bad.plan_id == (record["plan_id"] if valid_plan_id else None)


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (upsert(nhs_number=9990000018), "nhs_number must be a string of 10 digits"),
        (upsert(start_date=20260302), "start_date must be a date as YYYY-MM-DD"),
        (upsert(plan_type=["CPP"]), "plan_type must be CPP, LAC or UCPP"),
        (upsert(family_name=7), "family_name must be a non-empty string of at most 100 characters"),
        (upsert(plan_id=17), "plan_id must be 1-64 letters, digits, '.', '_' or '-'"),
        (upsert(action=True), "action must be upsert or delete"),
        (upsert(plan_id="P-1\n"), "plan_id must be 1-64 letters, digits, '.', '_' or '-'"),
        (upsert(colour="blue"), "unknown field: colour"),
        ({**upsert(), NHS[3]: "x"}, "the body has a field that is not a plan field"),
    ],
)
def test_json_only_record_faults(record: dict[str, Any], reason: str) -> None:
    """Wrong JSON types and unknown keys are record faults with the plan API's messages."""
    code = "CPR04" if reason.startswith("nhs_number") else "CPR07"
    result = parsed(as_json(json_file([record]))).records[0]
    assert result.rejection == RecordRejection(code, reason)  # type: ignore[arg-type]


def test_ucpp_birth_date_may_follow_start() -> None:
    """An unborn child's plan starts before birth, so a later birth_date is fine."""
    record = upsert(plan_type="UCPP", birth_date="2026-06-01", end_date="2026-06-15")
    result = parsed(as_json(json_file([record]))).records[0]
    assert result.accepted and result.fields is not None
    assert result.fields.plan_type is PlanType.UCPP


# --- CPF01: the whole file is refused -------------------------------------------------------

GOOD_CSV = csv_file([upsert()]).decode()
COLS = ",".join(CSV_COLUMNS)
ROW = GOOD_CSV.splitlines()[-1]

FILE_CASES: list[tuple[str, bytes, str | None, str]] = [
    ("empty", b"", None, "the file is empty"),
    ("whitespace", b" \r\n", "text/csv", "the file is empty"),
    ("latin-1", GOOD_CSV.replace(GIVEN, "Zoë").encode("latin-1"), "text/csv", "not UTF-8"),
    ("utf-16", GOOD_CSV.encode("utf-16"), "text/csv", "not UTF-8"),
    ("declared-charset", GOOD_CSV.encode(), "text/csv; charset=iso-8859-1", "other than UTF-8"),
    ("json-truncated", json_file([upsert()])[:-20], "application/json", "not valid JSON"),
    ("json-trailing", json_file([upsert()]) + b"}", "application/json", "not valid JSON"),
    ("csv-as-json", GOOD_CSV.encode(), "application/json", "not valid JSON (line 1, column 1)"),
    ("json-array", b"[]", "application/json", "must be a JSON object"),
    (
        "json-no-la",
        json.dumps({"sequence": 1, "created": "2026-03-02T18:30:00Z", "records": []}).encode(),
        None,
        "la_ods is missing",
    ),
    ("json-no-records", json.dumps(HEADER).encode(), None, "records is missing"),
    ("json-unknown-key", json_file([], checksum="x"), None, "unknown key: checksum"),
    ("json-bad-ods", json_file([], la_ods="xdm01"), None, "la_ods must be an ODS code"),
    ("json-sequence-zero", json_file([], sequence=0), None, "sequence must be a whole number"),
    ("json-sequence-string", json_file([], sequence="42"), None, "sequence must be a whole number"),
    ("json-sequence-bool", json_file([], sequence=True), None, "sequence must be a whole number"),
    (
        "json-sequence-fraction",
        json_file([], sequence=1.5),
        None,
        "sequence must be a whole number",
    ),
    ("json-created-naive", json_file([], created="2026-03-02T18:30:00"), None, "created must be"),
    ("json-created-unreal", json_file([], created="2026-02-30T18:30:00Z"), None, "created must be"),
    (
        "json-records-object",
        json.dumps({**HEADER, "records": {}}).encode(),
        None,
        "records must be an array",
    ),
    ("json-record-not-object", json_file([upsert(), "P-2"]), None, "record 2 is not a JSON object"),
    (
        "csv-unterminated-quote",
        (GOOD_CSV + 'upsert,P-2,"Testch\r\n').encode(),
        "text/csv",
        "never closed",
    ),
    (
        "csv-no-final-newline",
        GOOD_CSV.rstrip().encode(),
        "text/csv",
        "does not end with a line break",
    ),
    ("csv-short-row", (GOOD_CSV + "upsert,P-2\r\n").encode(), "text/csv", "line 6: has 2 values"),
    (
        "csv-long-row",
        (GOOD_CSV + ROW.replace("P-1", "P-2") + ",x\r\n").encode(),
        "text/csv",
        "has 11 values",
    ),
    (
        "csv-bad-quoting",
        (GOOD_CSV + 'upsert,"P-2"x\r\n').encode(),
        "text/csv",
        "line 6: not valid CSV",
    ),
    (
        "csv-unknown-column",
        GOOD_CSV.replace("nhs_number", "nhs").encode(),
        "text/csv",
        "column 3 of the header row",
    ),
    (
        "csv-missing-column",
        GOOD_CSV.replace(",given_name", "").encode(),
        "text/csv",
        "header row has no given_name column",
    ),
    (
        "csv-duplicate-column",
        GOOD_CSV.replace("given_name", "family_name").encode(),
        "text/csv",
        "family_name appears twice",
    ),
    (
        "csv-no-header-row",
        b"#la_ods,XDM01\r\n#sequence,1\r\n#created,2026-03-02T18:30:00Z\r\n",
        "text/csv",
        "no header row",
    ),
    (
        "csv-header-row-is-a-record",
        GOOD_CSV.replace(COLS + "\r\n", "").encode(),
        "text/csv",
        "line 4: column 1",
    ),
    (
        "csv-no-sequence",
        GOOD_CSV.replace("#sequence,42\r\n", "").encode(),
        "text/csv",
        "no #sequence line",
    ),
    (
        "csv-bad-sequence",
        GOOD_CSV.replace("#sequence,42", "#sequence,4 2").encode(),
        "text/csv",
        "sequence must be",
    ),
    (
        "csv-unknown-header-key",
        GOOD_CSV.replace("#sequence", "#seq").encode(),
        "text/csv",
        "line 2: not a known header key",
    ),
    (
        "csv-repeated-header-key",
        ("#la_ods,XDM01\r\n" + GOOD_CSV).encode(),
        "text/csv",
        "#la_ods is given twice",
    ),
    (
        "csv-header-extra-value",
        GOOD_CSV.replace("#la_ods,XDM01", "#la_ods,XDM01,XDM02").encode(),
        "text/csv",
        "must be #la_ods,value",
    ),
    (
        "csv-records-mismatch",
        GOOD_CSV.replace("#la_ods", "#records,2\r\n#la_ods").encode(),
        "text/csv",
        "#records says 2 but the file has 1",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "content_type", "reason"), FILE_CASES, ids=[c[0] for c in FILE_CASES]
)
def test_a_malformed_file_is_refused_whole(
    name: str, data: bytes, content_type: str | None, reason: str
) -> None:
    """Each file-level fault is CPF01 with a reason that says where, and no records."""
    result = rejected(parse_upload(data, content_type=content_type))
    assert reason in result.reason
    for value in (*NHS, BAD_CHECK, FAMILY, GIVEN, "Testch"):
        assert value not in result.reason


@pytest.mark.parametrize("form", ["json", "csv"])
def test_a_file_for_another_la_is_refused(form: str) -> None:
    """A caller may upload only for its own LA; the file is refused before any record."""
    data = json_file([upsert()]) if form == "json" else csv_file([upsert()])
    result = rejected(parse_upload(data, content_type=None, allowed_la_ods=("XOT01",)))
    assert result.reason == "la_ods is not a local authority this caller may upload for"
    assert parsed(parse_upload(data, content_type=None, allowed_la_ods=("XOT01", "XDM01")))


@pytest.mark.parametrize("form", ["json", "csv"])
def test_too_many_records_is_refused(form: str) -> None:
    """max_records bounds the work one file can cause."""
    records = [upsert(f"P-{i}") for i in range(4)]
    data = json_file(records) if form == "json" else csv_file(records)
    result = rejected(parse_upload(data, content_type=None, max_records=3))
    assert result.reason == "the file has more than 3 records"
    assert parsed(parse_upload(data, content_type=None, max_records=4))


def test_truncated_example_is_refused() -> None:
    """The documented bad example: a JSON file cut short in transfer."""
    data = (EXAMPLES / "upload-bad-truncated.json").read_bytes()
    assert "not valid JSON" in rejected(as_json(data)).reason


def test_wrong_columns_example_is_refused() -> None:
    """The documented bad example: a CSV whose header row misspells a column."""
    data = (EXAMPLES / "upload-bad-columns.csv").read_bytes()
    assert "column 3 of the header row" in rejected(as_csv(data)).reason


# --- no personal data in reasons ------------------------------------------------------------


def test_no_reason_echoes_an_nhs_number_or_a_name() -> None:
    """Reasons reach acknowledgements and logs, so they name fields, never values."""
    records = [record for _, record, _, _ in RECORD_CASES] + [
        upsert("X-1", nhs_number=NHS[4], family_name=FAMILY * 20),
        {**upsert("X-2", nhs_number=NHS[5]), NHS[6]: GIVEN},
        {**upsert("X-3", nhs_number=NHS[7]), "Testfamily": "x"},
    ]
    # Distinct plan_ids so every record reaches its own fault.
    for n, record in enumerate(records):
        if record.get("plan_id") == "P-1":
            record["plan_id"] = f"R-{n}"
    personal = {*NHS, BAD_CHECK, NHS[0][:9], FAMILY, GIVEN, "9999999999", "999000001X"}
    for upload in (parsed(as_json(json_file(records))), parsed(as_csv(csv_file(records[:-2])))):
        reasons = [r.rejection.reason for r in upload.records if r.rejection]
        assert len(reasons) >= len(RECORD_CASES)
        for reason in reasons:
            assert not any(value in reason for value in personal), reason


# --- the JSON Schema agrees with the parser ---------------------------------------------------


def test_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The published schema is itself well formed."""
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize(
    ("example", "schema_valid", "all_accepted"),
    [
        ("upload-example.json", True, True),
        # Check digits, date order and duplicates are beyond a schema: valid, yet rejected.
        ("upload-example-rejections.json", True, False),
    ],
)
def test_examples_and_schema_agree(example: str, schema_valid: bool, all_accepted: bool) -> None:
    """What the schema accepts, the parser accepts as a file."""
    data = (EXAMPLES / example).read_bytes()
    assert VALIDATOR.is_valid(json.loads(data)) is schema_valid
    upload = parsed(as_json(data))
    assert all(r.accepted for r in upload.records) is all_accepted


def test_rejections_example_has_the_documented_outcomes() -> None:
    """The rejections example shows a CPR04, a CPR07 and a duplicate, as uploads.md says."""
    upload = parsed(as_json((EXAMPLES / "upload-example-rejections.json").read_bytes()))
    outcomes = [(r.index, r.plan_id, r.rejection) for r in upload.records]
    assert outcomes == [
        (1, "DEMO-CPP-0004", RecordRejection("CPR04", "nhs_number check digit is wrong")),
        (2, "DEMO-CPP-0005", RecordRejection("CPR07", "end_date is before start_date")),
        (3, "DEMO-CPP-0006", None),
        (4, "DEMO-CPP-0006", RecordRejection("CPR07", "duplicate plan_id in file")),
    ]


def test_json_files_the_parser_refuses_fail_the_schema() -> None:
    """Every refused JSON file that is JSON at all also fails the schema.

    (The caller's LA and max_records depend on the caller, not the file.)
    """
    checked = 0
    for name, data, _ctype, _reason in FILE_CASES:
        if not name.startswith("json-"):
            continue
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        if name == "json-created-unreal":
            # The pattern cannot know February has no 30th; "format" says so to
            # readers but is only an annotation in draft 2020-12.
            continue
        assert not VALIDATOR.is_valid(doc), name
        checked += 1
    assert checked >= 12


def test_generated_good_files_pass_the_schema() -> None:
    """The test helper's files are what the schema describes, so the tables test real files."""
    records = [upsert("P-1"), upsert("P-2", plan_type="UCPP", end_date="2026-06-01")]
    records.append({"action": "delete", "plan_id": "P-3"})
    VALIDATOR.validate(json.loads(json_file(records)))


# --- scale ------------------------------------------------------------------------------------


def test_a_100k_record_csv_parses() -> None:
    """A large daily file parses in one pass (timing is benchmarked in bench/, not here)."""
    numbers = synthetic_numbers(100_000)
    head = "#la_ods,XDM01\r\n#sequence,7\r\n#created,2026-03-02T18:30:00Z\r\n" + COLS + "\r\n"
    rows = [
        f"upsert,P-{i},{n},CPP,2026-01-01,,,2015-02-03,Testfamily,Testgiven\r\n"
        for i, n in enumerate(numbers)
    ]
    rows[10] = "delete,P-10,,,,,,,,\r\n"
    rows[20] = f"upsert,P-20,{BAD_CHECK},CPP,2026-01-01,,,,,\r\n"
    upload = parsed(as_csv((head + "".join(rows)).encode()))
    assert len(upload.records) == 100_000
    assert sum(r.accepted for r in upload.records) == 99_999
    assert sum(r.action is RecordAction.DELETE for r in upload.records) == 1


def test_record_result_is_a_plain_value() -> None:
    """Results compare by value, so services and tests can build them directly."""
    assert RecordResult(1, "P-1", RecordAction.DELETE) == RecordResult(
        1, "P-1", RecordAction.DELETE
    )
