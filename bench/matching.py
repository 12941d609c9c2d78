"""Measure NHS number matching: precision and recall of our decisions, beside splink's.

Run by ``bench/matching`` (see bench/README.md, "matching"). One seeded data
set (``dataset`` in bench/synthetic.py): a person index of synthetic
children and LA copies of some of them with recorded errors.

(a) Upload decisions. Each upload record carries the NHS number the LA sent
    (about 5% wrong: a sibling's or a slip that passes the check digit). Our
    decision is the upload path's own (``cpis.services.verification.verify_records``,
    rival searches included) against an in-memory index built on
    ``cpis.matching.blocking``: applied or not. Positive = applied; a wrong
    number applied is a false positive; a right number not applied is a false
    negative.
(b) Tracing. Each trace record has no number (5% are children absent from the
    index), and carries the LA's sex and postcode for the child (the optional
    trace-file columns). It goes through ``cpis.services.tracing.trace`` against
    the same in-memory index; a ``certain`` proposal is a positive, right when
    it is the child's number. Recall is over the traced children who are in
    the index.

splink (v4, DuckDB) sees the same records: m and u trained with EM (u by
random sampling), names with Jaro-Winkler levels (and reversed names), birth
date exact / day-month transposed / one character / year off by one, and
postcode; blocking for tracing mirrors blocking.py. For (a) it scores exactly
the pairs (LA record, index record of the number sent); for (b) the best
candidate per record. Its figures are given at match probability 0.9 and 0.99,
and at the lowest threshold where its precision still reaches 99.9%.

The target: our precision >= 99.9%, and our recall at least splink's at every
threshold where splink's own precision is >= 99.9%; the comparison with
splink at 0.99 is printed whatever its precision.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from synthetic import Child, Dataset, LaRecord, dataset

from cpis.matching import names
from cpis.matching.blocking import MemoryIndex
from cpis.model import PlanFields, PlanType
from cpis.model.persons import IndexPerson
from cpis.model.uploads import RecordAction, RecordResult
from cpis.services.tracing import trace
from cpis.services.verification import verify_records

DEFAULT_SEED = 20260401
DEFAULT_PEOPLE = 20_000
AS_OF = date(2026, 4, 1)
TARGET_PRECISION = 0.999
THRESHOLDS = (0.9, 0.99)


@dataclass
class Tally:
    """Confusion counts for one method on one task."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    fp_kinds: Counter[str] = field(default_factory=Counter)

    def add(self, predicted: bool, right: bool, kind: str = "") -> None:
        if predicted and right:
            self.tp += 1
        elif predicted:
            self.fp += 1
            self.fp_kinds[kind] += 1
        elif right:
            self.fn += 1
        else:
            self.tn += 1

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 0.0


def index_person(child: Child) -> IndexPerson:
    return IndexPerson(
        nhs_number=child.nhs_number,
        family_name=child.family_name,
        given_names=child.given_names,
        birth_date=child.birth_date,
        sex=child.sex,
        postcode=child.postcode,
    )


def kind_of(record: LaRecord) -> str:
    return next((e for e in record.errors if e.startswith("wrong-number")), "right-number")


# --- ours -----------------------------------------------------------------------------------------


def our_uploads(data: Dataset) -> tuple[Tally, Counter[str]]:
    """The upload path's decision per record, and the errors behind each miss."""
    index = MemoryIndex([index_person(c) for c in data.index])
    records = []
    for i, record in enumerate(data.uploads):
        assert record.nhs_number is not None
        fields = PlanFields(
            nhs_number=record.nhs_number,
            plan_type=PlanType.CPP,
            start_date=AS_OF,
            birth_date=record.birth_date,
            family_name=record.family_name or None,
            given_name=record.given_name or None,
        )
        records.append(RecordResult(i + 1, f"U{i}", RecordAction.UPSERT, fields))
    checked = asyncio.run(verify_records(index, records))
    tally, missed = Tally(), Counter[str]()
    for record, result in zip(data.uploads, checked, strict=True):
        applied = result.rejection is None
        tally.add(applied, record.number_is_right, kind_of(record))
        if record.number_is_right and not applied:
            missed.update(record.errors or ("none",))
    return tally, missed


def trace_upload_file(records: Sequence[LaRecord]) -> bytes:
    """The trace records as an upload-format JSON file with no NHS numbers."""
    doc = {
        "la_ods": "XBM01",
        "sequence": 1,
        "created": f"{AS_OF.isoformat()}T09:00:00Z",
        "records": [
            {
                "action": "upsert",
                "plan_id": f"T{i}",
                "plan_type": "CPP",
                "start_date": AS_OF.isoformat(),
                "birth_date": r.birth_date.isoformat() if r.birth_date else None,
                "family_name": r.family_name or None,
                "given_name": r.given_name or None,
                "sex": r.sex,
                "postcode": r.postcode,
            }
            for i, r in enumerate(records)
        ],
    }
    return json.dumps(doc).encode()


def our_traces(data: Dataset) -> tuple[Tally, Counter[str], Counter[str], float]:
    """``cpis trace`` on the trace records: tally of certain proposals, statuses,
    the errors behind missed children, and the match rate it reports."""
    in_index = {c.nhs_number for c in data.index}
    index = MemoryIndex([index_person(c) for c in data.index])
    review, summary = asyncio.run(trace(index, trace_upload_file(data.traces)))
    rows = {row.plan_id: row for row in review}
    tally, statuses, missed = Tally(), Counter[str](), Counter[str]()
    for i, record in enumerate(data.traces):
        row = rows[f"T{i}"]
        statuses[row.status] += 1
        present = record.child.nhs_number in in_index
        certain = row.status == "certain"
        right = certain and row.proposed_nhs_number == record.child.nhs_number
        if certain:
            tally.add(True, right, "absent" if not present else "other-child")
        else:
            tally.add(False, present)
            if present:
                missed.update(record.errors or ("none",))
    return tally, statuses, missed, summary.match_rate


# --- splink -------------------------------------------------------------------------------------


def _first(given: str | None) -> str | None:
    words = names.tokens(given or "")
    return words[0] if words else None


def _row(
    uid: str, given: str | None, family: str | None, born: date | None, **extra: object
) -> dict[str, object]:
    surnames = names.tokens(family or "")
    return {
        "unique_id": uid,
        "first_name": _first(given),
        "surname": names.key(family or "") or None,
        "surname1": surnames[0] if surnames else None,
        "surname2": surnames[-1] if surnames else None,
        "dob": born.isoformat() if born else None,
        "dob_swapped": (
            f"{born.year:04d}-{born.day:02d}-{born.month:02d}" if born and born.day <= 12 else None
        ),
        "yob": born.year if born else None,
        **extra,
    }


def _splink_frames(data: Dataset) -> tuple[object, object, object]:
    import pandas as pd

    index = pd.DataFrame(
        [
            _row(
                c.nhs_number,
                c.given_names,
                c.family_name,
                c.birth_date,
                postcode=c.postcode,
                nhs=c.nhs_number,
            )
            for c in data.index
        ]
    )
    uploads = pd.DataFrame(
        [
            _row(
                f"U{i}",
                r.given_name,
                r.family_name,
                r.birth_date,
                postcode=r.postcode,
                nhs=r.nhs_number,
            )
            for i, r in enumerate(data.uploads)
        ]
    )
    traces = pd.DataFrame(
        [
            _row(f"T{i}", r.given_name, r.family_name, r.birth_date, postcode=r.postcode, nhs=None)
            for i, r in enumerate(data.traces)
        ]
    )
    for frame in (index, uploads, traces):
        frame["nhs"] = frame["nhs"].astype("string")
        frame["yob"] = frame["yob"].astype("Int64")
    return index, uploads, traces


def _dob_comparison() -> object:
    import splink.comparison_level_library as cll
    from splink.comparison_library import CustomComparison

    transposed = (
        "substr(dob_l, 1, 4) = substr(dob_r, 1, 4) AND substr(dob_l, 6, 2) = substr(dob_r, 9, 2)"
        " AND substr(dob_l, 9, 2) = substr(dob_r, 6, 2)"
    )
    year_off = (
        "substr(dob_l, 6, 5) = substr(dob_r, 6, 5)"
        " AND abs(CAST(substr(dob_l, 1, 4) AS INTEGER) - CAST(substr(dob_r, 1, 4) AS INTEGER)) = 1"
    )
    return CustomComparison(
        output_column_name="dob",
        comparison_levels=[
            cll.NullLevel("dob"),
            cll.ExactMatchLevel("dob"),
            cll.CustomLevel(transposed, label_for_charts="day and month transposed"),
            cll.LevenshteinLevel("dob", 1),
            cll.CustomLevel(year_off, label_for_charts="year off by one"),
            cll.ElseLevel(),
        ],
    )


TRACE_BLOCKING = (
    "l.dob = r.dob",
    "l.dob_swapped = r.dob",
    "l.surname1 = r.surname1 AND abs(l.yob - r.yob) <= 1",
    "l.surname2 = r.surname2 AND abs(l.yob - r.yob) <= 1",
    "l.surname = r.surname AND l.first_name = r.first_name",
    "l.first_name = r.surname AND l.surname = r.first_name",
)


def run_splink(data: Dataset) -> dict[str, dict[float, Tally]]:
    """Train splink on all LA records against the index, then score both tasks."""
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on
    from splink import comparison_library as cl

    index, uploads, traces = _splink_frames(data)
    import pandas as pd

    everyone = pd.concat([uploads, traces], ignore_index=True)
    settings = SettingsCreator(
        link_type="link_only",
        unique_id_column_name="unique_id",
        probability_two_random_records_match=1 / len(index),
        comparisons=[
            cl.ForenameSurnameComparison("first_name", "surname"),
            _dob_comparison(),
            cl.PostcodeComparison("postcode"),
        ],
        blocking_rules_to_generate_predictions=list(TRACE_BLOCKING),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker(
        [everyone, index], settings, db_api=DuckDBAPI(), input_table_aliases=["la", "ix"]
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=2_000_000, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("dob"))
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("surname", "first_name")
    )
    model = linker.misc.save_model_to_json()

    results: dict[str, dict[float, Tally]] = {"uploads": {}, "traces": {}}
    # (a) exactly the pairs an upload makes: the LA record and the number it sent.
    upload_model = dict(model, blocking_rules_to_generate_predictions=["l.nhs = r.nhs"])
    pairs = Linker(
        [uploads, index], upload_model, db_api=DuckDBAPI(), input_table_aliases=["la", "ix"]
    )
    scored = pairs.inference.predict().as_pandas_dataframe()
    prob = _pair_probabilities(scored)
    upload_scores = [
        (prob.get(f"U{i}", 0.0), record.number_is_right, record.number_is_right, kind_of(record))
        for i, record in enumerate(data.uploads)
    ]
    for t in _thresholds(upload_scores):
        results["uploads"][t] = _tally_at(upload_scores, t)

    # (b) tracing: the best candidate per record, when over the threshold.
    trace_linker = Linker(
        [traces, index], model, db_api=DuckDBAPI(), input_table_aliases=["la", "ix"]
    )
    scored = trace_linker.inference.predict(
        threshold_match_probability=min(THRESHOLDS)
    ).as_pandas_dataframe()
    best = _best_candidates(scored)
    in_index = {c.nhs_number for c in data.index}
    trace_scores = []
    for i, record in enumerate(data.traces):
        present = record.child.nhs_number in in_index
        found = best.get(f"T{i}")
        p, right = (
            (0.0, False) if found is None else (found[1], found[0] == record.child.nhs_number)
        )
        trace_scores.append((p, right, present, "other-child" if present else "absent"))
    for t in _thresholds(trace_scores):
        results["traces"][t] = _tally_at(trace_scores, t)
    return results


Scored = Sequence[tuple[float, bool, bool, str]]
"""Per record: splink's probability, whether its proposal is right, whether
the record has a right answer to find, and the kind of a wrong proposal."""


def _thresholds(scores: Scored) -> tuple[float, ...]:
    at_target = _threshold_for_precision(scores)
    return THRESHOLDS if at_target is None else (*THRESHOLDS, at_target)


def _tally_at(scores: Scored, threshold: float) -> Tally:
    tally = Tally()
    for p, right, findable, kind in scores:
        if p >= threshold:
            tally.add(True, right, kind)
        else:
            tally.add(False, findable)
    return tally


def _threshold_for_precision(scores: Scored) -> float | None:
    """The lowest threshold at which splink's precision is still at the target,
    or None if it never is.

    Chosen with the truth, which no real deployment has: it shows splink's
    recall at our precision in the most favourable light.
    """
    found: float | None = None
    tp = fp = 0
    ranked = sorted((s for s in scores if s[0] > 0.0), key=lambda s: -s[0])
    for n, (p, right, _, _) in enumerate(ranked):
        tp, fp = tp + right, fp + (not right)
        last_of_tie = n + 1 == len(ranked) or ranked[n + 1][0] < p
        if last_of_tie and tp / (tp + fp) >= TARGET_PRECISION:
            found = p
    return found


def _sides(scored: object) -> tuple[str, str]:
    """Which of splink's l/r columns holds the LA record id (it orders by dataset name)."""
    first = scored.iloc[0]  # type: ignore[attr-defined]
    return (
        ("unique_id_l", "unique_id_r")
        if str(first["unique_id_l"])[:1] in "UT"
        else ("unique_id_r", "unique_id_l")
    )


def _pair_probabilities(scored: object) -> dict[str, float]:
    if not len(scored):  # type: ignore[arg-type]
        return {}
    la, _ = _sides(scored)
    return {str(row[la]): float(row["match_probability"]) for _, row in scored.iterrows()}  # type: ignore[attr-defined]


def _best_candidates(scored: object) -> dict[str, tuple[str, float]]:
    if not len(scored):  # type: ignore[arg-type]
        return {}
    la, ix = _sides(scored)
    best: dict[str, tuple[str, float]] = {}
    for la_id, ix_id, p in zip(scored[la], scored[ix], scored["match_probability"], strict=True):  # type: ignore[index]
        held = best.get(str(la_id))
        if held is None or float(p) > held[1]:
            best[str(la_id)] = (str(ix_id), float(p))
    return best


# --- report ---------------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _line(label: str, tally: Tally) -> str:
    return (
        f"  {label:<28} {_pct(tally.precision):>8} {_pct(tally.recall):>8}"
        f" {tally.tp:>7} {tally.fp:>5} {tally.fn:>6} {tally.tn:>6}"
    )


def _splink_label(prefix: str, threshold: float) -> str:
    if threshold in THRESHOLDS:
        return f"{prefix} {threshold}"
    return f"{prefix} {threshold:.4f}*"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--people", type=int, default=DEFAULT_PEOPLE)
    parser.add_argument("--no-splink", action="store_true", help="measure our decisions only")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    started = time.monotonic()
    print(f"seed {args.seed}, {args.people} people in the index, as of {AS_OF}")
    data = dataset(args.seed, args.people, as_of=AS_OF)
    wrong = sum(1 for r in data.uploads if not r.number_is_right)
    absent = len(
        {c.nhs_number for c in (r.child for r in data.traces)} - {c.nhs_number for c in data.index}
    )
    print(
        f"{len(data.uploads)} upload records ({wrong} with a wrong NHS number), "
        f"{len(data.traces)} trace records ({absent} children not in the index)"
    )

    t = time.monotonic()
    uploads, upload_misses = our_uploads(data)
    traces, statuses, trace_misses, rate = our_traces(data)
    ours_seconds = time.monotonic() - t
    splink: dict[str, dict[float, Tally]] = {}
    splink_seconds = 0.0
    if not args.no_splink:
        t = time.monotonic()
        chatter = io.StringIO()  # splink prints its SQL and training progress
        logging.disable(logging.WARNING)
        try:
            with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
                splink = run_splink(data)
        finally:
            logging.disable(logging.NOTSET)
        splink_seconds = time.monotonic() - t

    header = f"  {'':<28} {'precision':>8} {'recall':>8} {'TP':>7} {'FP':>5} {'FN':>6} {'TN':>6}"
    print("\n(a) upload decisions: applied = positive; a wrong NHS number applied = false positive")
    print(header)
    print(_line("cpis (verify_records)", uploads))
    for threshold, tally in splink.get("uploads", {}).items():
        print(_line(_splink_label("splink p >=", threshold), tally))
    print("\n(b) tracing, records without a number: certain = positive")
    print(header)
    print(_line("cpis trace (certain)", traces))
    for threshold, tally in splink.get("traces", {}).items():
        print(_line(_splink_label("splink best p >=", threshold), tally))
    if splink:
        print(
            "  * the lowest threshold where splink's precision is >= 99.9%, chosen with the truth"
        )
    print(
        "\ncpis trace statuses: "
        + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
        + f"; match rate {_pct(rate)}"
    )
    if uploads.fp_kinds or traces.fp_kinds:
        kinds = f"uploads {dict(uploads.fp_kinds)}, traces {dict(traces.fp_kinds)}"
        print(f"false positives by kind: {kinds}")
    print(f"errors on right-number uploads not applied: {dict(upload_misses.most_common(8))}")
    print(f"errors on traced children not certain: {dict(trace_misses.most_common(8))}")

    missed: list[str] = []
    comparisons: list[str] = []
    for task, tally in (("uploads", uploads), ("traces", traces)):
        if tally.precision < TARGET_PRECISION:
            missed.append(f"{task}: precision {_pct(tally.precision)} < {_pct(TARGET_PRECISION)}")
        by = splink.get(task, {})
        for threshold, theirs in by.items():
            label = _splink_label("p >=", threshold).strip()
            if theirs.precision >= TARGET_PRECISION and tally.recall < theirs.recall:
                missed.append(
                    f"{task}: recall {_pct(tally.recall)} < splink's {_pct(theirs.recall)} "
                    f"at {label} (its precision {_pct(theirs.precision)})"
                )
        if by:
            at_target = [t for t, theirs in by.items() if theirs.precision >= TARGET_PRECISION]
            at_99 = by[0.99]
            comparisons.append(
                f"  {task}: ours {_pct(tally.recall)}; splink at 0.99 {_pct(at_99.recall)} "
                f"(precision {_pct(at_99.precision)}); splink at precision >= 99.9%: "
                + (
                    ", ".join(
                        f"{_pct(by[t].recall)} at {_splink_label('p >=', t).strip()}"
                        for t in at_target
                    )
                    or "no threshold gets there"
                )
            )
    if comparisons:
        print("\nrecall beside splink's:")
        print("\n".join(comparisons))
    print(
        f"\ntime: ours {ours_seconds:.1f} s, splink {splink_seconds:.1f} s, "
        f"total {time.monotonic() - started:.1f} s"
    )
    print(
        "targets (precision >= 99.9%, recall >= splink's wherever its precision >= 99.9%): "
        + ("met" if not missed else "MISSED")
    )
    for line in missed:
        print(f"  MISSED {line}")
    if args.json:
        figures = {
            "seed": args.seed,
            "people": args.people,
            "ours": {
                "uploads": vars_of(uploads),
                "traces": vars_of(traces),
                "trace_match_rate": rate,
            },
            "splink": {
                task: {str(t): vars_of(v) for t, v in by.items()} for task, by in splink.items()
            },
            "missed": missed,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 1 if missed and args.strict else 0


def vars_of(tally: Tally) -> dict[str, float]:
    return {
        "precision": tally.precision,
        "recall": tally.recall,
        "tp": tally.tp,
        "fp": tally.fp,
        "fn": tally.fn,
        "tn": tally.tn,
    }


if __name__ == "__main__":
    sys.exit(main())
