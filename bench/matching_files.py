"""Write a synthetic person index extract and a trace file, for timing ``cpis trace``
against the PostgreSQL index by hand (bench/README.md, "matching").

    .venv/bin/python bench/matching_files.py --people 40000 --traces 5000 --out /tmp/m
    export CPIS_DATA_DIR=/tmp/m/data CPIS_PERSON_INDEX=local
    .venv/bin/cpis migrate
    .venv/bin/cpis person-index load /tmp/m/index.csv
    time .venv/bin/cpis trace /tmp/m/trace.json

The trace file is the data set's trace copies (no NHS numbers), with a birth date
taken away from one record in four on top of their own errors (``--no-dob``), as
the file in issue 11 lacked them: the hard case for the index.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date
from pathlib import Path

from synthetic import Child, LaRecord, dataset

AS_OF = date(2026, 4, 1)
INDEX_HEADER = (
    "nhs_number",
    "family_name",
    "given_names",
    "birth_date",
    "sex",
    "postcode",
    "sensitive",
    "superseded_by",
    "active",
)


def index_csv(children: Iterable[Child]) -> bytes:
    """A person index extract (schemas/person-index.md) holding ``children``."""
    rows = [",".join(INDEX_HEADER)]
    for c in children:
        out: list[str] = []
        cells = [c.nhs_number, c.family_name, c.given_names, c.birth_date.isoformat()]
        cells += [c.sex, c.postcode, "N", "", "Y"]
        for cell in cells:
            out.append(f'"{cell}"' if any(ch in cell for ch in ',"') else cell)
        rows.append(",".join(out))
    return ("\n".join(rows) + "\n").encode()


def trace_json(records: Sequence[LaRecord], *, with_numbers: bool = False) -> bytes:
    """The records as a trace file (the upload format, with sex and postcode)."""
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
                **({"nhs_number": r.nhs_number} if with_numbers and r.nhs_number else {}),
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


def without_birth_dates(records: Sequence[LaRecord], share: float, seed: int) -> list[LaRecord]:
    """``records`` with the birth date taken away from ``share`` of them."""
    rng = random.Random(seed)
    return [
        replace(r, birth_date=None, errors=(*r.errors, "missing-birth-date"))
        if r.birth_date is not None and rng.random() < share
        else r
        for r in records
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20260401)
    parser.add_argument("--people", type=int, default=40_000)
    parser.add_argument("--traces", type=int, default=5_000)
    parser.add_argument("--no-dob", type=float, default=0.25, help="share without a birth date")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    data = dataset(args.seed, args.people, as_of=AS_OF, uploads=0, traces=args.traces)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "index.csv").write_bytes(index_csv(data.index))
    traces = without_birth_dates(data.traces, args.no_dob, args.seed)
    (args.out / "trace.json").write_bytes(trace_json(traces))
    with (args.out / "truth.csv").open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(("plan_id", "nhs_number", "in_index", "errors"))
        present = {c.nhs_number for c in data.index}
        for i, r in enumerate(traces):
            n = r.child.nhs_number
            writer.writerow((f"T{i}", n, n in present, " ".join(r.errors)))
    print(f"wrote {args.out}/index.csv ({len(data.index)} people), trace.json ({len(traces)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
