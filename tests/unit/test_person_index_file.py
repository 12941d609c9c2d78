"""Reading a person index load file (``schemas/person-index.md``).

Every NHS number here is from the 999 range and every name is invented.
"""

from __future__ import annotations

import codecs
import json
from datetime import date
from pathlib import Path

import jsonschema
import pytest

from cpis.errors import IndexFileRejected
from cpis.formats.person_index_file import MAX_ERRORS, parse, read_rows
from cpis.formats.upload_file import parse_upload
from cpis.matching.blocking import BlockIndex
from cpis.model.persons import FileError, IndexPerson
from cpis.model.uploads import ParsedUpload
from cpis.services.verification import check_against_index

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
HEADER = "nhs_number,family_name,given_names,birth_date,sex,postcode,sensitive,superseded_by"


def csv_file(*rows: str, header: str = HEADER) -> bytes:
    return ("\n".join((header, *rows)) + "\n").encode()


def rejected(data: bytes) -> IndexFileRejected:
    with pytest.raises(IndexFileRejected) as caught:
        parse(data)
    return caught.value


def test_a_good_file_reads_every_accepted_spelling() -> None:
    """Both date forms, every sex spelling and flag spelling, a BOM, CRLF, blank lines."""
    data = (
        codecs.BOM_UTF8
        + (
            HEADER + ",active\r\n"
            "9990000018,Testchild,Alexander  James,2016-07-14,male,ls1 4ap,N,,Y\r\n"
            "\r\n"
            '999 000 0026,"Example, Family",Sam,20120105,F,,true,,\r\n'
            "9990000034,,,,9,,,9990000042,\r\n"
            "9990000050,Retired,Casey,2015-08-08,0,,no,,N\r\n"
        ).encode()
    )
    assert parse(data) == (
        IndexPerson(
            "9990000018", "Testchild", "Alexander James", date(2016, 7, 14), "male", "LS1 4AP"
        ),
        IndexPerson(
            "9990000026",
            "Example, Family",
            "Sam",
            date(2012, 1, 5),
            "female",
            None,
            sensitive=True,
        ),
        IndexPerson("9990000034", sex="other", superseded_by="9990000042", active=False),
        IndexPerson(
            "9990000050", "Retired", "Casey", date(2015, 8, 8), "unknown", None, active=False
        ),
    )


def test_columns_may_come_in_any_order_and_case() -> None:
    header = "Superseded_By, SEX ,postcode,sensitive,birth_date,given_names,family_name,nhs_number"
    (person,) = parse(csv_file(",M,,,2016-07-14,Alex,Testchild,9990000018", header=header))
    assert (person.nhs_number, person.sex, person.given_names) == ("9990000018", "male", "Alex")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "the file is empty"),
        (csv_file(), "the file has a header but no rows"),
        (
            b"9990000018,Testchild,Alex,2016-07-14,M,,,\n",
            "line 1: the first line must be a header row",
        ),
        (
            csv_file("9990000018,T,A,2016-07-14,M,,,", header=HEADER.replace(",sex", "")),
            "line 1: the header lacks the column(s): sex",
        ),
        (
            csv_file("9990000018,T,A,2016-07-14,M,,,,", header=HEADER + ",Testchild"),
            "line 1: column 9 of the header is not a known column",
        ),
        (
            csv_file("9990000018,T,A,2016-07-14,M,,,,", header=HEADER + ",sex"),
            "line 1, column sex: the column appears twice in the header",
        ),
        (HEADER.encode() + b"\n9990000018,Test\xe9,A,,,,,\n", "line 2: the file is not UTF-8"),
        (HEADER.encode() + b"\n9990000018,Te\x00st,A,,,,,\n", "line 2: the file contains a NUL"),
    ],
)
def test_a_file_fault_refuses_the_file(data: bytes, expected: str) -> None:
    error = rejected(data)
    assert str(error.errors[0]).startswith(expected)
    assert "Testchild" not in str(error)


@pytest.mark.parametrize(
    ("row", "column", "reason"),
    [
        ("9990000019,Secretname,A,2016-07-14,M,,,", "nhs_number", "check digit is wrong"),
        ("99900000,Secretname,A,2016-07-14,M,,,", "nhs_number", "must be 10 digits"),
        ("9990000018,Secretname,A,14/07/2016,M,,,", "birth_date", "YYYY-MM-DD or YYYYMMDD"),
        ("9990000018,Secretname,A,20160231,M,,,", "birth_date", "not a real date"),
        ("9990000018,Secretname,A,1016-07-14,M,,,", "birth_date", "before 1850"),
        ("9990000018,Secretname,A,2016-07-14,X,,,", "sex", "must be male, female"),
        ("9990000018,Secretname,A,2016-07-14,M,LS1 4AP!,,", "postcode", "letters, digits"),
        ("9990000018,Secretname,A,2016-07-14,M,,maybe,", "sensitive", "must be Y or N"),
        ("9990000018,Secretname,A,2016-07-14,M,,,9990000019", "superseded_by", "check digit"),
        ("9990000018,Secretname,A,2016-07-14,M,,,9990000018", "superseded_by", "itself"),
        ("9990000018," + "S" * 101 + ",A,2016-07-14,M,,,", "family_name", "longer than 100"),
        ("9990000018,Secretname,A\tB,2016-07-14,M,,,", "given_names", "not allowed"),
    ],
)
def test_a_bad_row_is_named_by_line_and_column_never_by_value(
    row: str, column: str, reason: str
) -> None:
    good = "9990000026,Goodname,Sam,2012-01-05,F,,,"
    error = rejected(csv_file(good, row))
    assert len(error.errors) == 1
    (fault,) = error.errors
    assert (fault.line, fault.column) == (3, column)
    assert reason in fault.reason
    for value in ("Secretname", "9990000018", "9990000019", "2016", "14/07", "LS1"):
        assert value not in str(error)


def test_a_superseded_number_cannot_be_stated_active() -> None:
    error = rejected(
        csv_file("9990000018,T,A,2016-07-14,M,,,9990000026,Y", header=HEADER + ",active")
    )
    assert error.errors == (FileError(2, "active", "a superseded number cannot be active"),)


def test_rows_of_the_wrong_width_and_broken_quotes_are_faults_too() -> None:
    error = rejected(csv_file("9990000018,T,A", '9990000026,"Unclosed,A,,,,,\n'))
    assert [(e.line, e.column) for e in error.errors] == [(2, None), (3, None)]
    assert "has 3 fields where the header has 8" in error.errors[0].reason
    assert "not valid CSV" in error.errors[1].reason


def test_the_same_number_twice_names_both_lines() -> None:
    error = rejected(
        csv_file("9990000018,T,A,2016-07-14,M,,,", "999 000 0026,,,,,,,", "999-000-0018,,,,,,,")
    )
    assert error.errors == (FileError(4, "nhs_number", "the same NHS number is on line 2"),)


def test_every_fault_is_listed_up_to_a_limit() -> None:
    """An operator fixes a file in one go, but a wholly wrong file does not flood the terminal."""
    few = rejected(csv_file("9990000019,,,,,,,", "9990000018,,,,Z,,,", "9990000026,,,x,,,,"))
    assert [(e.line, e.column) for e in few.errors] == [
        (2, "nhs_number"),
        (3, "sex"),
        (4, "birth_date"),
    ]
    assert not few.truncated
    many = rejected(csv_file(*["9990000019,,,,,,,"] * (MAX_ERRORS + 50)))
    assert len(many.errors) == MAX_ERRORS and many.truncated
    assert f"the first {MAX_ERRORS} shown" in str(many)


def test_read_rows_streams_and_reports_header_faults_before_any_row() -> None:
    with pytest.raises(IndexFileRejected):
        read_rows(b"nhs_number\n9990000018\n")
    rows = list(read_rows(csv_file("9990000018,,,,,,,", "9990000019,,,,,,,")))
    assert [r.line for r in rows] == [2, 3]
    assert rows[0].person is not None and rows[1].person is None and rows[1].errors


# --- the example files -------------------------------------------------------------------


def example_index() -> dict[str, IndexPerson]:
    data = (SCHEMAS / "examples" / "person-index-example.csv").read_bytes()
    return {p.nhs_number: p for p in parse(data)}


def example_upload(name: str) -> ParsedUpload:
    parsed = parse_upload(
        (SCHEMAS / "examples" / name).read_bytes(), content_type="application/json"
    )
    assert isinstance(parsed, ParsedUpload)
    return parsed


def codes(upload: ParsedUpload, index: dict[str, IndexPerson]) -> dict[str, str]:
    """Each record's code, with the index searched for rivals as the local index
    would search (the same blocking keys; numbers out of use never found)."""
    block = BlockIndex()
    for p in index.values():
        if p.active and p.superseded_by is None:
            block.add(p.nhs_number, p.family_name, p.given_names, p.birth_date)
    out = {}
    for r in upload.records:
        rejection = r.rejection
        if rejection is None and r.fields is not None:
            f = r.fields
            rivals = [index[n] for n in block.candidates(f.family_name, f.given_name, f.birth_date)]
            rejection = check_against_index(f, index.get(f.nhs_number), rivals)
        assert r.plan_id is not None
        out[r.plan_id] = "CPR06" if rejection is None else rejection.code
    return out


def test_the_index_example_gives_the_codes_its_documentation_promises() -> None:
    """schemas/person-index.md's table, record by record."""
    upload = example_upload("upload-example-index.json")
    assert codes(upload, example_index()) == {
        "DEMO-CPP-0001": "CPR06",
        "DEMO-LAC-0002": "CPR06",
        "DEMO-UCPP-0003": "CPR06",
        "IDX-CPP-0101": "CPR01",
        "IDX-CPP-0102": "CPR01",
        "IDX-CPP-0103": "CPR02",
        "IDX-CPP-0104": "CPR03",
        "IDX-LAC-0105": "CPR05",
        "IDX-CPP-0106": "CPR04",
        "IDX-CPP-0107": "CPR06",
        "IDX-CPP-0108": "CPR06",
        "IDX-CPP-0109": "CPR06",
        "IDX-CPP-0110": "CPR07",
    }
    merged = next(r for r in upload.records if r.plan_id == "IDX-LAC-0105")
    assert merged.fields is not None
    verdict = check_against_index(merged.fields, example_index()[merged.fields.nhs_number])
    assert verdict is not None and verdict.new_nhs_number == "9990000131"
    doc = (SCHEMAS / "person-index.md").read_text()
    for plan_id, code in codes(upload, example_index()).items():
        assert f"| `{plan_id}` |" in doc and code in doc


def test_the_index_example_lines_up_with_the_original_upload_example() -> None:
    """Its children match the index, the UCPP record on the mother's name and birth date."""
    assert codes(example_upload("upload-example.json"), example_index()) == {
        "DEMO-CPP-0001": "CPR06",
        "DEMO-LAC-0002": "CPR06",
        "DEMO-UCPP-0003": "CPR06",
        "DEMO-CPP-0099": "CPR06",  # a delete: not checked against the index
    }


def test_the_index_upload_example_follows_the_upload_schema() -> None:
    schema = json.loads((SCHEMAS / "upload.schema.json").read_text())
    doc = json.loads((SCHEMAS / "examples" / "upload-example-index.json").read_text())
    jsonschema.validate(doc, schema)
