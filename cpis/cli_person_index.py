"""``cpis person-index load FILE`` and ``cpis trace FILE``: the person index from the
command line (issue 4). Wired into the parser by :mod:`cpis.cli`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpis.app import Runtime


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError as exc:
        print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return None


async def load(rt: Runtime, args: argparse.Namespace) -> int:
    """Load a batch-trace style extract (schemas/person-index.md) into the local index,
    then tell the LAs holding plans on numbers it made inactive."""
    from cpis.adapters.index_check_store import PgIndexCheckStore
    from cpis.adapters.person_index import load_person_index
    from cpis.errors import IndexFileRejected
    from cpis.workers.index_check import notify_inactive

    data = _read(args.file)
    if data is None:
        return 2
    try:
        result = await load_person_index(rt.pool, rt.vault, data, replace=args.replace)
    except IndexFileRejected as exc:
        print(f"error: {args.file.name} was not loaded, nothing changed:", file=sys.stderr)
        for error in exc.errors:
            print(f"  {error}", file=sys.stderr)
        if exc.truncated:
            print("  (more errors not shown)", file=sys.stderr)
        return 1
    queued = await notify_inactive(
        PgIndexCheckStore(rt.pool, rt.vault), result.newly_inactive, now=rt.clock.now()
    )
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
    """Propose NHS numbers for an LA's records and print the match rate."""
    from rich.console import Console
    from rich.progress import Progress

    from cpis.errors import PersonIndexUnavailable, TraceFileError
    from cpis.formats.trace_file import read_trace_file
    from cpis.services.tracing import render_summary, trace_file

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
        total = len(read_trace_file(data, filename=args.file.name).records)
        with Progress(console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task(f"tracing {args.file.name}", total=total)
            summary = await trace_file(
                rt.person_index,
                data,
                review,
                filename=args.file.name,
                progress=lambda n: bar.update(task, completed=n),
            )
    except TraceFileError as exc:
        print(f"error: {args.file.name}: {exc}", file=sys.stderr)
        return 2
    except PersonIndexUnavailable:
        print("error: the person index is unavailable; try again later", file=sys.stderr)
        return 1
    Console().print(render_summary(summary, title=args.file.name))
    print(f"review file: {review}")
    return 0
