"""`cpis trace FILE` (cpis.services.tracing): a file in, a review CSV and a match rate out.

The person index is a small in-memory one of our own, built on the blocking
keys the local index uses (cpis.matching.blocking). Every NHS number is from
the 999 range and every name is invented.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from pathlib import Path

import orjson
import pytest
from rich.console import Console

from cpis.cli_person_index import render_summary, write_review
from cpis.errors import IndexSearchTimedOut, PersonIndexUnavailable, TraceFileError
from cpis.formats.trace_file import REVIEW_COLUMNS, read_trace_file
from cpis.matching import blocking
from cpis.model.persons import IndexPerson, PersonQuery
from cpis.model.tracing import TraceSummary
from cpis.services import tracing

TAMSIN, MORWENNA, RUBY, PIETER, OLD, HIDDEN = (
    "9990000018",
    "9990000026",
    "9990000034",
    "9990000042",
    "9990000050",
    "9990000069",
)
PEOPLE = [
    IndexPerson(TAMSIN, "Quarrell", "Tamsin Rose", date(2016, 4, 3), "female", "TR1 2AB"),
    IndexPerson(MORWENNA, "Quarrell", "Morwenna", date(2016, 4, 3), "female", "TR1 2AB"),
    IndexPerson(RUBY, "Penhallow-Trask", "Ruby", date(2012, 11, 20), "female", "TR7 1QQ"),
    IndexPerson(PIETER, "Vanderwielen", "Pieter", date(2019, 6, 30), "male", "LS6 9ZZ"),
    IndexPerson(OLD, "Vanderwielen", "Pieter", date(2019, 6, 30), superseded_by=PIETER),
    IndexPerson(HIDDEN, "Nancarrow", "Kerensa", date(2014, 1, 9), "female", sensitive=True),
]


async def trace_file(
    index: MemoryIndex,
    data: bytes,
    review: Path,
    *,
    filename: str | None = None,
    progress: Callable[[int], None] | None = None,
    retry_delays: Sequence[float] = tracing.RETRY_DELAYS,
) -> TraceSummary:
    """What `cpis trace` does: trace the file, then write the review whole."""
    report = None if progress is None else (lambda done, _total: progress(done))
    rows, summary = await tracing.trace(
        index, data, filename=filename, progress=report, retry_delays=retry_delays
    )
    write_review(rows, review)
    return summary


class MemoryIndex(blocking.MemoryIndex):
    """The in-memory index, able to fail as an unreachable one would."""

    def __init__(self, people: Sequence[IndexPerson], *, fail: bool = False) -> None:
        super().__init__(people)
        self.fail = fail

    async def get_many(self, nhs_numbers: Sequence[str]) -> Mapping[str, IndexPerson]:
        if self.fail:
            raise PersonIndexUnavailable("the person index did not answer")
        return await super().get_many(nhs_numbers)

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        if self.fail:
            raise PersonIndexUnavailable("the person index did not answer")
        return await super().search(query, limit=limit)


def upload(records: list[dict[str, object]]) -> bytes:
    return orjson.dumps(
        {"la_ods": "XTR01", "sequence": 1, "created": "2026-04-01T09:00:00Z", "records": records}
    )


def rec(plan_id: str, **fields: object) -> dict[str, object]:
    return {
        "action": "upsert",
        "plan_id": plan_id,
        "plan_type": "CPP",
        "start_date": "2026-03-01",
    } | fields


def read_review(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == REVIEW_COLUMNS
        return {row["plan_id"]: row for row in reader}


FILE = upload(
    [
        rec(
            "P1",
            nhs_number=TAMSIN,
            given_name="Tamsin",
            family_name="Quarrell",
            birth_date="2016-04-03",
        ),
        rec(
            "P2",
            nhs_number=MORWENNA,
            given_name="Tamsin",
            family_name="Quarrell",
            birth_date="2016-04-03",
        ),
        rec("P3", given_name="Ruby", family_name="Penhallow Trask", birth_date="2012-11-20"),
        rec("P4", given_name="Ruby", family_name="Trask", birth_date="2012-11-20"),
        rec("P5", given_name="Tamsin", family_name="Quarrell", birth_date="2016-04-13"),
        rec("P6", given_name="Nobody", family_name="Atall", birth_date="2001-01-01"),
        rec(
            "P7",
            nhs_number=OLD,
            given_name="Pieter",
            family_name="Vanderwielen",
            birth_date="2019-06-30",
        ),
        rec("P8", given_name="Kerensa", family_name="Nancarrow", birth_date="2014-01-09"),
        rec("P9", nhs_number="9990000019", given_name="Tamsin", family_name="Quarrell"),
        rec("P10", given_name="Pieter", family_name="Vanderwielen", birth_date="30/06/2019"),
        {"action": "delete", "plan_id": "P11"},
    ]
)


async def test_each_record_gets_its_status_and_the_summary_its_rate(tmp_path: Path) -> None:
    """Numbers are verified, records without one are traced, and the review says so."""
    review = tmp_path / "review.csv"
    summary = await trace_file(MemoryIndex(PEOPLE), FILE, review)
    rows = read_review(review)
    got = {pid: (row["status"], row["proposed_nhs_number"]) for pid, row in rows.items()}
    assert got == {
        "P1": ("verified", ""),  # the number agrees with the name and date
        "P2": ("number-rejected", ""),  # the twin's number: CPR03 would refuse it
        "P3": ("certain", RUBY),  # hyphen dropped
        "P4": ("certain", RUBY),  # one half of a double-barrelled name
        "P5": ("possible", TAMSIN),  # one digit of the date out: a person should look
        "P6": ("none", ""),
        "P7": ("certain", PIETER),  # a superseded number, followed
        "P8": ("possible", ""),  # sensitive: nothing revealed
        "P9": ("number-rejected", ""),  # a wrong check digit
        "P10": ("possible", PIETER),  # an unreadable date counts as missing
    }
    assert rows["P1"]["record"] == "1" and rows["P10"]["record"] == "10"
    assert rows["P8"]["reasons"] == "sensitive-record" and rows["P8"]["score"] == ""
    assert "nhs-number-superseded" in rows["P7"]["reasons"]
    assert "nhs-number-invalid" in rows["P9"]["reasons"]
    assert "birth-date-unreadable" in rows["P10"]["reasons"]
    assert float(rows["P3"]["score"]) >= 0.9
    assert summary.counts == {
        "verified": 1,
        "certain": 3,
        "possible": 3,
        "none": 1,
        "number-rejected": 2,
        "not-searched": 0,
    }
    assert summary.total == 10 and summary.skipped_deletes == 1
    assert summary.match_rate == pytest.approx(0.4)
    assert not summary.meets_target


async def test_the_review_never_holds_the_indexs_names_or_dates(tmp_path: Path) -> None:
    """The file goes to the LA: only its own plan ids, our codes, numbers and scores."""
    review = tmp_path / "review.csv"
    await trace_file(MemoryIndex(PEOPLE), FILE, review)
    text = review.read_text(encoding="utf-8").lower()
    for secret in ("quarrell", "tamsin", "morwenna", "nancarrow", "kerensa", "2016", "tr1", HIDDEN):
        assert secret not in text


async def test_csv_files_are_read_tolerantly(tmp_path: Path) -> None:
    """The upload CSV form, without numbers, with an extra column and short rows."""
    data = (
        b"#la_ods,XTR01\n#sequence,1\n#created,2026-04-01T09:00:00Z\n"
        b"action,plan_id,given_name,family_name,birth_date,notes\n"
        b"upsert,C1,Ruby,Penhallow-Trask,2012-11-20,moved in March\n"
        b"upsert,C2,Pieter,Vanderwielen\n"
        b"delete,C3,,,,\n"
    )
    review = tmp_path / "review.csv"
    summary = await trace_file(MemoryIndex(PEOPLE), data, review, filename="la.csv")
    rows = read_review(review)
    assert rows["C1"]["status"] == "certain" and rows["C1"]["proposed_nhs_number"] == RUBY
    assert rows["C2"]["status"] == "possible"  # no birth date: never certain
    assert rows["C1"]["record"] == "5"  # the line it is on
    assert summary.skipped_deletes == 1 and summary.total == 2


async def test_sex_and_postcode_columns_tell_a_child_from_a_namesake(tmp_path: Path) -> None:
    """Beyond the upload format, a trace file may carry the child's sex and
    postcode: a changed surname is certain when the postcode agrees too."""
    data = (
        b"action,plan_id,given_name,family_name,birth_date,sex,postcode\n"
        b"upsert,S1,Ruby,Trelawny,2012-11-20,F,TR7 1QQ\n"
        b"upsert,S2,Ruby,Trelawny,2012-11-20,F,LS6 9ZZ\n"
        b"upsert,S3,Ruby,Trelawny,2012-11-20,,\n"
    )
    review = tmp_path / "review.csv"
    await trace_file(MemoryIndex(PEOPLE), data, review, filename="la.csv")
    rows = read_review(review)
    assert (rows["S1"]["status"], rows["S1"]["proposed_nhs_number"]) == ("certain", RUBY)
    assert "postcode-exact" in rows["S1"]["reasons"]
    assert rows["S2"]["status"] == "possible"  # moved, or a namesake: a person looks
    assert rows["S3"]["status"] == "possible"
    assert "tr7" not in review.read_text(encoding="utf-8").lower()
    json_file = upload(
        [
            rec(
                "J1",
                given_name="Ruby",
                family_name="Trelawny",
                birth_date="2012-11-20",
                sex="female",
                postcode="TR7 1QQ",
            )
        ]
    )
    await trace_file(MemoryIndex(PEOPLE), json_file, review)
    assert read_review(review)["J1"]["status"] == "certain"


@pytest.mark.parametrize(
    ("data", "filename", "message"),
    [
        (b"", None, "empty"),
        (b"\xff\xfe{}", "x.json", "UTF-8"),
        (b'{"records": [', "x.json", "not valid JSON"),
        (b'{"records": [1]}', "x.json", "record 1"),
        (b"action,nhs_number\nupsert,9990000018\n", "x.csv", "plan_id column"),
    ],
)
async def test_an_unreadable_file_writes_nothing(
    tmp_path: Path, data: bytes, filename: str | None, message: str
) -> None:
    review = tmp_path / "review.csv"
    with pytest.raises(TraceFileError, match=message) as raised:
        await trace_file(MemoryIndex(PEOPLE), data, review, filename=filename)
    assert "9990000018" not in str(raised.value)
    assert not review.exists()


async def test_an_index_outage_is_reported_and_no_review_is_written(tmp_path: Path) -> None:
    review = tmp_path / "review.csv"
    with pytest.raises(PersonIndexUnavailable):
        await trace_file(MemoryIndex(PEOPLE, fail=True), FILE, review, retry_delays=())
    assert not review.exists()
    assert list(tmp_path.iterdir()) == []


async def test_many_records_are_traced_with_progress(tmp_path: Path) -> None:
    """Progress reaches the record count; every record is searched once."""
    records = [
        rec(f"M{i}", given_name="Ruby", family_name="Penhallow-Trask", birth_date="2012-11-20")
        for i in range(60)
    ]
    seen: list[int] = []
    index = MemoryIndex(PEOPLE)
    summary = await trace_file(index, upload(records), tmp_path / "r.csv", progress=seen.append)
    assert summary.counts["certain"] == 60 and summary.meets_target
    assert seen[-1] == 60 and index.searches == 60


def test_read_trace_file_keeps_deletes_out() -> None:
    read = read_trace_file(FILE)
    assert read.deletes == 1 and len(read.records) == 10
    assert read.records[2].nhs_number is None


def test_render_summary_shows_the_rate_against_the_target() -> None:
    summary = TraceSummary(
        {"verified": 90, "certain": 6, "possible": 3, "none": 1, "number-rejected": 0}
    )
    out = io.StringIO()
    Console(file=out, width=100).print(render_summary(summary, title="la.json"))
    text = out.getvalue()
    assert "96.0%" in text and "95%" in text and "met" in text and "not met" not in text
    assert "verified" in text and "number-rejected" in text


class FlakyIndex(MemoryIndex):
    """An index that cannot answer the first ``outages`` requests, then can."""

    def __init__(self, people: Sequence[IndexPerson], *, outages: int) -> None:
        super().__init__(people)
        self.outages = outages

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        if self.outages > 0:
            self.outages -= 1
            raise PersonIndexUnavailable("the person index did not answer")
        return await super().search(query, limit=limit)


class SlowIndex(MemoryIndex):
    """An index whose searches for one surname run out of time."""

    async def search(self, query: PersonQuery, *, limit: int = 10) -> Sequence[IndexPerson]:
        if query.family_name == "Slowsearch":
            raise IndexSearchTimedOut("person index search did not finish in time")
        return await super().search(query, limit=limit)


async def test_an_outage_is_asked_again_and_a_short_one_is_ridden_out() -> None:
    """Issue 11: an unavailable index is retried (a failover is over in seconds)."""
    index = FlakyIndex(PEOPLE, outages=2)
    _rows, summary = await tracing.trace(index, FILE, retry_delays=(0, 0))
    assert index.outages == 0
    assert summary.counts["certain"] >= 1 and summary.counts["not-searched"] == 0
    with pytest.raises(PersonIndexUnavailable):  # still down after the retries
        await tracing.trace(MemoryIndex(PEOPLE, fail=True), FILE, retry_delays=(0, 0))


async def test_a_search_that_times_out_is_that_record_not_searched_and_never_retried() -> None:
    """Issue 11: slow is not down. The record is not-searched, the rest are decided."""
    records = [
        rec("S1", given_name="Ruby", family_name="Slowsearch", birth_date="2012-11-20"),
        rec("S2", given_name="Ruby", family_name="Penhallow-Trask", birth_date="2012-11-20"),
    ]
    index = SlowIndex(PEOPLE)
    rows, summary = await tracing.trace(index, upload(records), retry_delays=(0, 0))
    assert [(r.plan_id, r.status) for r in rows] == [("S1", "not-searched"), ("S2", "certain")]
    assert rows[0].reasons == ("search-timed-out",) and rows[0].proposed_nhs_number is None
    assert index.searches == 1  # only S2 reached the in-memory search: S1 was not retried
    assert summary.counts["not-searched"] == 1
