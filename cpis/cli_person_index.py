"""``cpis person-index load FILE`` and ``cpis trace FILE``: the person index from the
command line (issue 4). Wired into the parser by :mod:`cpis.cli`; the use cases are
:mod:`cpis.services.person_index` and :mod:`cpis.services.tracing`, and this module
reads the files, writes the review and prints."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cpis.app import Runtime
from cpis.model.tracing import ReviewRow, TraceSummary

if TYPE_CHECKING:
    from rich.table import Table


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


async def load(rt: Runtime, args: argparse.Namespace) -> int:
    """Load a batch-trace style extract (schemas/person-index.md) into the local index,
    then tell the LAs holding plans on numbers it made inactive."""
    import functools

    from cpis.adapters.postgres import load_person_index
    from cpis.errors import IndexFileRejected
    from cpis.services import person_index

    data = _read(args.file)
    if data is None:
        return 2
    load_index = functools.partial(load_person_index, rt.pool, rt.vault, replace=args.replace)
    try:
        result, queued = await person_index.load(load_index, rt.index_check, rt.clock, data)
    except IndexFileRejected as exc:
        print(f"error: {args.file.name} was not loaded, nothing changed:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        if exc.truncated:
            print("  (more errors not shown)", file=sys.stderr)
        return 1
    print(
        f"loaded {result.rows} rows: {result.inserted} new, {result.updated} changed,"
        f" {result.unchanged} unchanged, {result.removed} removed;"
        f" {result.superseded} superseded, {result.inactive} not in use,"
        f" {result.sensitive} sensitive"
    )
    print(
        f"{len(result.newly_inactive)} numbers newly out of use;"
        f" {queued} nhs-number-inactive notifications queued"
    )
    if rt.settings.person_index != "local":
        print(
            "note: CPIS_PERSON_INDEX is not 'local', so uploads do not use this index",
            file=sys.stderr,
        )
    return 0


async def trace(rt: Runtime, args: argparse.Namespace) -> int:
    """Propose NHS numbers for an LA's records, write the review and print the match rate."""
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from cpis.errors import PersonIndexUnavailable, TraceFileError
    from cpis.services import tracing

    if rt.person_index is None:
        print(
            "error: tracing needs a person index: set CPIS_PERSON_INDEX=local"
            " (after cpis person-index load) or CPIS_PERSON_INDEX=pds",
            file=sys.stderr,
        )
        return 2
    data = _read(args.file)
    if data is None:
        return 2
    review: Path = args.review or args.file.with_suffix(".review.csv")
    try:
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task: TaskID | None = None

            def report(done: int, total: int) -> None:
                nonlocal task
                if task is None:
                    task = bar.add_task(f"tracing {args.file.name}", total=total)
                bar.update(task, completed=done)

            rows, summary = await tracing.trace(
                rt.person_index, data, filename=args.file.name, progress=report
            )
    except TraceFileError as exc:
        print(f"error: {args.file.name}: {exc}", file=sys.stderr)
        return 2
    except PersonIndexUnavailable:
        print("error: the person index is unavailable; try again later", file=sys.stderr)
        return 1
    write_review(rows, review)
    Console().print(render_summary(summary, title=args.file.name))
    print(f"review file: {review}")
    return 0


def write_review(rows: Sequence[ReviewRow], path: Path) -> None:
    """Write the review CSV whole or not at all (a temporary file, then a rename)."""
    from cpis.formats.trace_file import write_review as write_csv

    fd, tmp = tempfile.mkstemp(prefix=".trace-", suffix=".csv", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
            write_csv(rows, out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def render_summary(summary: TraceSummary, *, title: str = "trace") -> Table:
    """A table of counts per status and the match rate against the 95% target."""
    from rich.table import Table

    from cpis.model.tracing import GO_LIVE_TARGET, STATUSES

    table = Table(title=title)
    table.add_column("status")
    table.add_column("records", justify="right")
    table.add_column("share", justify="right")
    for status in STATUSES:
        count = summary.counts.get(status, 0)
        share = f"{count / summary.total:.1%}" if summary.total else "-"
        table.add_row(status, str(count), share)
    table.add_section()
    table.add_row("total", str(summary.total), "")
    verdict = "met" if summary.meets_target else "not met"
    table.caption = (
        f"match rate (verified + certain) {summary.match_rate:.1%}; "
        f"go-live target {GO_LIVE_TARGET:.0%}: {verdict}"
    )
    if summary.skipped_deletes:
        table.caption += f"; {summary.skipped_deletes} deletes skipped"
    return table
