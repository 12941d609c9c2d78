"""Batch uploads from LA case management systems (SPEC §5).

Parsing a file (:mod:`cpis.uploads.parse`, pure), checking its records against
the person index (:mod:`cpis.uploads.verify`), applying it in one transaction
(:mod:`cpis.uploads.apply`) and its acknowledgement's JSON
(:mod:`cpis.uploads.acknowledgement`); transport is ``cpis.web`` and the MESH
worker. The values (a parsed file, its records' outcomes, the acknowledgement)
are in :mod:`cpis.model.uploads`. The file format is documented in
``schemas/uploads.md``.
"""

from __future__ import annotations

from cpis.uploads.parse import (
    CSV_COLUMNS,
    DEFAULT_MAX_RECORDS,
    PLAN_FIELDS,
    check_plan_fields,
    parse_upload,
    safe_field_name,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_MAX_RECORDS",
    "PLAN_FIELDS",
    "check_plan_fields",
    "parse_upload",
    "safe_field_name",
]
