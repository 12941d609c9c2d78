"""Read a person index load file ("PDS batch-trace style" CSV), without I/O.

The format is documented for operators in ``schemas/person-index.md``; an
example is ``schemas/examples/person-index-example.csv``. In short: UTF-8 CSV
(a byte order mark is allowed), a header row naming the columns in any order,
then one person per row:

    nhs_number, family_name, given_names, birth_date, sex, postcode,
    sensitive, superseded_by, and optionally active

A file is loaded whole or not at all, so every fault is collected (up to
``MAX_ERRORS``) and reported together as :class:`IndexFileRejected`. Each
error names the line and the column, never the value: the values are NHS
numbers, names and dates of birth, and errors end up on terminals and in logs.

:func:`read_rows` yields rows one at a time so that a loader can stream a
million-row file into the database without holding every person in memory;
:func:`parse` is the whole-file convenience (it also refuses a number that
appears twice, which a streaming loader checks in SQL instead).

Pure standard library: the adapter that loads the rows lives in
``cpis.adapters.person_index``.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from datetime import date
from typing import TYPE_CHECKING

from cpis.errors import IndexFileRejected
from cpis.matching import nhs_number
from cpis.model.persons import FileError, IndexFileRow, IndexPerson

if TYPE_CHECKING:
    from _csv import Reader

REQUIRED_COLUMNS: tuple[str, ...] = (
    "nhs_number",
    "family_name",
    "given_names",
    "birth_date",
    "sex",
    "postcode",
    "sensitive",
    "superseded_by",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("active",)
MAX_ERRORS = 100
MAX_NAME = 100

# ASCII digits only: ``\d`` would let other scripts' digits reach int().
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_COMPACT_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_POSTCODE = re.compile(r"[A-Z0-9][A-Z0-9 ]{1,8}[A-Z0-9]")
_EARLIEST_YEAR = 1850

# PDS's four genders, from the words, letters and NHS "person stated gender"
# codes that extracts use (0 not known, 1 male, 2 female, 9 not specified).
_SEXES = {
    "male": "male",
    "m": "male",
    "1": "male",
    "female": "female",
    "f": "female",
    "2": "female",
    "other": "other",
    "9": "other",
    "unknown": "unknown",
    "u": "unknown",
    "0": "unknown",
}
# The per-row error collector: fail(column, reason).
_Fail = Callable[[str, str], None]

_YES = frozenset({"y", "yes", "true", "1"})
_NO = frozenset({"n", "no", "false", "0"})


def read_rows(data: bytes) -> Iterator[IndexFileRow]:
    """Each data row of ``data`` in file order.

    Faults in the file as a whole raise :class:`IndexFileRejected`: encoding
    and header faults here, before the first row; a file with no rows when the
    rows run out. Faults in a row are reported on that row, so the caller can
    go on collecting them.
    """
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error:
        raise IndexFileRejected((FileError(1, None, "the header row is not valid CSV"),)) from None
    if header is None:
        raise IndexFileRejected((FileError(None, None, "the file is empty"),))
    return _data_rows(reader, _columns(header), len(header))


def _data_rows(reader: Reader, positions: dict[str, int], width: int) -> Iterator[IndexFileRow]:
    seen_rows = False
    line = reader.line_num
    while True:
        start = line + 1
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error:
            # The reader cannot resynchronise after a quoting fault: stop here.
            yield IndexFileRow(
                start, None, (FileError(start, None, "not valid CSV (check the quotes)"),)
            )
            return
        line = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        seen_rows = True
        if len(fields) != width:
            reason = f"has {len(fields)} fields where the header has {width}"
            yield IndexFileRow(start, None, (FileError(start, None, reason),))
            continue
        yield _row(start, fields, positions)
    if not seen_rows:
        raise IndexFileRejected((FileError(None, None, "the file has a header but no rows"),))


def parse(data: bytes) -> tuple[IndexPerson, ...]:
    """Every person in ``data``, or :class:`IndexFileRejected` with every fault found."""
    people: list[IndexPerson] = []
    errors: list[FileError] = []
    first_line: dict[str, int] = {}
    for row in read_rows(data):
        errors.extend(row.errors)
        if row.person is not None:
            earlier = first_line.setdefault(row.person.nhs_number, row.line)
            if earlier != row.line:
                errors.append(
                    FileError(row.line, "nhs_number", f"the same NHS number is on line {earlier}")
                )
            people.append(row.person)
        if len(errors) >= MAX_ERRORS:
            raise IndexFileRejected(tuple(errors[:MAX_ERRORS]), truncated=True)
    if errors:
        raise IndexFileRejected(tuple(errors))
    return tuple(people)


# --- the file as a whole ---------------------------------------------------------------


def _decode(data: bytes) -> str:
    body = data.removeprefix(codecs.BOM_UTF8)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = body.count(b"\n", 0, exc.start) + 1
        raise IndexFileRejected((FileError(line, None, "the file is not UTF-8"),)) from None
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise IndexFileRejected((FileError(line, None, "the file contains a NUL character"),))
    return text


def _columns(header: list[str]) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    known = set(REQUIRED_COLUMNS) | set(OPTIONAL_COLUMNS)
    if not known.intersection(names):
        reason = (
            f"the first line must be a header row naming the columns {', '.join(REQUIRED_COLUMNS)}"
        )
        raise IndexFileRejected((FileError(1, None, reason),))
    errors: list[FileError] = []
    positions: dict[str, int] = {}
    for i, name in enumerate(names):
        if name not in known:
            # Named by position, not echoed: a file with no header row would
            # otherwise have its first person's details printed back.
            errors.append(FileError(1, None, f"column {i + 1} of the header is not a known column"))
        elif name in positions:
            errors.append(FileError(1, name, "the column appears twice in the header"))
        else:
            positions[name] = i
    missing = [c for c in REQUIRED_COLUMNS if c not in positions]
    if missing:
        errors.append(FileError(1, None, f"the header lacks the column(s): {', '.join(missing)}"))
    if errors:
        raise IndexFileRejected(tuple(errors))
    return positions


# --- one row -----------------------------------------------------------------------------


def _row(line: int, fields: list[str], positions: dict[str, int]) -> IndexFileRow:
    errors: list[FileError] = []

    def value(column: str) -> str:
        at = positions.get(column)
        return "" if at is None else fields[at].strip()

    def fail(column: str, reason: str) -> None:
        errors.append(FileError(line, column, reason))

    number = nhs_number.check(value("nhs_number"))
    if not number.valid:
        fail("nhs_number", f"not a valid NHS number ({number.reason})")
    family = _name(value("family_name"), "family_name", fail)
    given = _name(value("given_names"), "given_names", fail)
    birth = _birth_date(value("birth_date"), fail)
    sex: str | None = None
    raw_sex = value("sex")
    if raw_sex:
        sex = _SEXES.get(raw_sex.lower())
        if sex is None:
            fail("sex", "must be male, female, other, unknown (or M, F, U, 1, 2, 9, 0)")
    postcode = _postcode(value("postcode"), fail)
    sensitive = _flag(value("sensitive"), "sensitive", default=False, fail=fail)
    superseded_by: str | None = None
    raw_new = value("superseded_by")
    if raw_new:
        new = nhs_number.check(raw_new)
        if not new.valid:
            fail("superseded_by", f"not a valid NHS number ({new.reason})")
        elif new.value == number.value:
            fail("superseded_by", "a number cannot supersede itself")
        else:
            superseded_by = new.value
    raw_active = value("active")
    active = _flag(raw_active, "active", default=True, fail=fail)
    if superseded_by is not None:
        if raw_active and active:
            fail("active", "a superseded number cannot be active")
        active = False  # the number is no longer in use: its replacement is
    if errors or number.value is None:
        return IndexFileRow(line, None, tuple(errors))
    return IndexFileRow(
        line,
        IndexPerson(
            nhs_number=number.value,
            family_name=family,
            given_names=given,
            birth_date=birth,
            sex=sex,
            postcode=postcode,
            sensitive=sensitive,
            superseded_by=superseded_by,
            active=active,
        ),
    )


def _name(raw: str, column: str, fail: _Fail) -> str | None:
    if not raw:
        return None
    if len(raw) > MAX_NAME:
        fail(column, f"longer than {MAX_NAME} characters")
        return None
    if not raw.isprintable():
        fail(column, "has characters that are not allowed")
        return None
    return " ".join(raw.split())


def _birth_date(raw: str, fail: _Fail) -> date | None:
    if not raw:
        return None
    match = _ISO_DATE.fullmatch(raw) or _COMPACT_DATE.fullmatch(raw)
    if match is None:
        fail("birth_date", "must be a date as YYYY-MM-DD or YYYYMMDD")
        return None
    try:
        born = date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        fail("birth_date", "is not a real date")
        return None
    if born.year < _EARLIEST_YEAR:
        fail("birth_date", f"is before {_EARLIEST_YEAR}")
        return None
    return born


def _postcode(raw: str, fail: _Fail) -> str | None:
    if not raw:
        return None
    compact = " ".join(raw.upper().split())
    if not _POSTCODE.fullmatch(compact):
        fail("postcode", "must be 3-10 letters, digits and spaces")
        return None
    return compact


def _flag(raw: str, column: str, *, default: bool, fail: _Fail) -> bool:
    if not raw:
        return default
    lowered = raw.lower()
    if lowered in _YES:
        return True
    if lowered in _NO:
        return False
    fail(column, "must be Y or N (or true/false, blank for the default)")
    return default
